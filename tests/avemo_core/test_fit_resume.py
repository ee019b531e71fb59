"""`fit` from a start epoch: a run stopped after an epoch and resumed with its history and
optimizer ends where the uninterrupted run ends, and keeps its normalisation statistics."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch

from avemo_core.colearning import CoLearningConfig
from avemo_core.model import CrossModalTransformer, ModelConfig
from avemo_core.training import EpochEnd, TrainConfig, fit, make_optimizer, seed_everything
from tests.avemo_core.model_batches import learnable_batch

CPU = torch.device("cpu")
CONFIG = TrainConfig(epochs=3, lr=3e-3, warmup_epochs=1)


class Stop(Exception):
    """Raised by the callback to stop a run after an epoch, as a killed worker would."""


def _model() -> CrossModalTransformer:
    seed_everything(0)
    return CrossModalTransformer(ModelConfig.named("tiny"))


def _data() -> tuple[list, list]:
    return [learnable_batch(0, size=8), learnable_batch(1, size=8)], [learnable_batch(2, size=16)]


@pytest.fixture
def deterministic() -> Iterator[None]:
    torch.use_deterministic_algorithms(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(threads)


def test_a_resumed_fit_ends_where_the_uninterrupted_one_does(deterministic: None) -> None:
    train, valid = _data()
    whole = _model()
    full = fit(whole, train, valid, CoLearningConfig(), CONFIG, CPU)

    saved: dict = {}
    first = _model()
    optimizer = make_optimizer(first, CONFIG)

    def stop_after_first(end: EpochEnd) -> None:
        saved.update(
            model=copy.deepcopy(first.state_dict()),
            optimizer=copy.deepcopy(optimizer.state_dict()),
            history=end.history,
        )
        raise Stop

    with pytest.raises(Stop):
        fit(
            first,
            train,
            valid,
            CoLearningConfig(),
            CONFIG,
            CPU,
            stop_after_first,
            optimizer=optimizer,
        )

    resumed = CrossModalTransformer(ModelConfig.named("tiny"))  # other weights, other statistics
    resumed.load_state_dict(saved["model"])
    restored = make_optimizer(resumed, CONFIG)
    restored.load_state_dict(saved["optimizer"])
    epochs: list[int] = []
    result = fit(
        resumed,
        train,
        valid,
        CoLearningConfig(),
        CONFIG,
        CPU,
        lambda end: epochs.append(end.epoch),
        start_epoch=1,
        history=saved["history"],
        optimizer=restored,
    )
    assert epochs == [1, 2]
    assert [r["epoch"] for r in result.history] == [0.0, 1.0, 2.0]
    for key in ("train/loss", "train/lr", "val_score", "valid/av/auc"):
        assert [r[key] for r in result.history] == pytest.approx([r[key] for r in full.history])
    for name, tensor in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, msg=name)


def test_a_resumed_fit_keeps_its_normalisation_statistics() -> None:
    train, _ = _data()
    model = _model()
    mean = model.audio_front.audio_mean.clone()
    fit(model, train, [], CoLearningConfig(), TrainConfig(epochs=1), CPU, start_epoch=1)
    torch.testing.assert_close(model.audio_front.audio_mean, mean)  # nothing to train, no refit
    fit(model, train, [], CoLearningConfig(), TrainConfig(epochs=0), CPU)
    assert not torch.equal(model.audio_front.audio_mean, mean)  # a fresh run fits them
