"""The plain training loop on the tiny model: it learns, repeats the stored loss, fit reports."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from avemo_core.colearning import CoLearningConfig
from avemo_core.config import ConfigError
from avemo_core.data import Batch
from avemo_core.model import CrossModalTransformer, ModelConfig
from avemo_core.training import (
    EpochEnd,
    TrainConfig,
    fit,
    make_optimizer,
    predict,
    seed_everything,
    train_epoch,
)
from tests.avemo_core.model_batches import learnable_batch, random_batch

CPU = torch.device("cpu")

# Losses of the two steps (the second after one AdamW update) of the stored-value test,
# computed once with this code on CPU (torch 2.13, one thread, deterministic algorithms), with the
# recipe's defaults: statistics pooling, corpus normalisation (identity before fitting).
STORED_STEP_LOSSES = (2.092591, 1.974905)


@pytest.fixture()
def deterministic() -> Iterator[None]:
    """One thread and deterministic kernels, so the same seed gives the same float results."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)


def tiny_model(seed: int = 0) -> CrossModalTransformer:
    seed_everything(seed)
    return CrossModalTransformer(ModelConfig.named("tiny"))


def test_loss_falls_on_a_learnable_batch(deterministic: None) -> None:
    model = tiny_model()
    config = TrainConfig(lr=3e-3)
    optimizer = make_optimizer(model, config)
    batches = [learnable_batch(0), learnable_batch(1)]
    losses = [
        train_epoch(model, batches, optimizer, CoLearningConfig(), config, CPU)["loss"]
        for _ in range(15)  # 30 steps
    ]
    assert losses[-1] < 0.5 * losses[0]
    assert losses[-1] < min(losses[:5])


def test_two_step_loss_matches_stored_value(deterministic: None) -> None:
    model = tiny_model(seed=123)
    config = TrainConfig(lr=1e-3)
    optimizer = make_optimizer(model, config)
    batch = [learnable_batch(5, size=8)]
    losses = tuple(
        train_epoch(model, batch, optimizer, CoLearningConfig(), config, CPU)["loss"]
        for _ in range(2)
    )
    assert losses == pytest.approx(STORED_STEP_LOSSES, abs=1e-4)
    assert losses[1] < losses[0]


def test_train_epoch_reports_mean_parts_and_samples() -> None:
    model = tiny_model()
    config = TrainConfig()
    stats = train_epoch(
        model,
        [random_batch(0), random_batch(1, audio_frames=(12, 9), visual_frames=(3, 4))],
        make_optimizer(model, config),
        CoLearningConfig(mode="av"),
        config,
        CPU,
    )
    assert set(stats) == {"bce_av", "loss", "samples"}
    assert stats["samples"] == 6.0
    assert stats["loss"] == pytest.approx(stats["bce_av"])


def test_optimizer_decays_weight_matrices_only() -> None:
    model = tiny_model()
    optimizer = make_optimizer(model, TrainConfig(weight_decay=0.05))
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.05 and plain["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decayed["params"]) and all(p.ndim < 2 for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_predict_keeps_labelled_samples_that_can_form_the_condition() -> None:
    model = tiny_model()
    batch = random_batch(2, audio_frames=(30, 25, 0, 33), visual_frames=(8, 0, 6, 9))
    batch.label_known[3] = False
    expected_rows = {"av": [0], "a": [0, 1], "v": [0, 2]}
    predicted = predict(model, [batch], list(expected_rows), CPU)  # one pass, every condition
    assert list(predicted) == list(expected_rows)
    for condition, rows in expected_rows.items():
        probs, labels = predicted[condition]
        assert probs.shape == (len(rows), 6) and ((probs > 0) & (probs < 1)).all()
        np.testing.assert_array_equal(labels, batch.labels[rows].numpy())
        with torch.no_grad():
            direct = torch.sigmoid(model(batch, condition)[rows]).numpy()
        np.testing.assert_allclose(probs, direct, atol=1e-6)
    empty = random_batch(3, audio_frames=(10,), visual_frames=(0,))
    probs, labels = predict(model, [empty], ["v"], CPU)["v"]
    assert probs.shape == (0, 6) and labels.shape == (0, 6)


def test_fit_validates_every_condition_each_epoch() -> None:
    model = tiny_model()
    seen: list[EpochEnd] = []
    result = fit(
        model,
        [learnable_batch(0), learnable_batch(1)],
        [learnable_batch(2, size=32)],
        CoLearningConfig(),
        TrainConfig(epochs=6, lr=3e-3),
        CPU,
        on_epoch_end=seen.append,
    )
    assert [s.epoch for s in seen] == list(range(6)) and len(result.history) == 6
    train_stats, valid, thresholds = (
        seen[-1].train_stats,
        seen[-1].valid_metrics,
        seen[-1].thresholds,
    )
    assert seen[-1].history == result.history  # the callback sees the record fit returns
    assert set(thresholds) == {"av", "a", "v"} and all(t.shape == (6,) for t in thresholds.values())
    assert all(f"{c}/auc" in valid and f"{c}/wa" in valid for c in ("av", "a", "v"))
    assert valid["av/samples"] == 32.0 and train_stats["samples"] == 32.0
    assert result.history[-1]["valid/av/auc"] == valid["av/auc"]
    assert result.history[-1]["train/loss"] < result.history[0]["train/loss"]
    # Held-out data with the same rule: the model learnt something that transfers.
    assert valid["av/auc"] > 0.7


def test_fit_of_a_single_modal_model_validates_its_condition_only() -> None:
    seen: list[dict[str, float]] = []
    fit(
        tiny_model(),
        [learnable_batch(0, size=8)],
        [learnable_batch(1, size=8)],
        CoLearningConfig(mode="audio"),
        TrainConfig(epochs=1),
        CPU,
        on_epoch_end=lambda end: seen.append(end.valid_metrics),
    )
    assert seen and all(key.startswith("a/") for key in seen[0])


def test_fit_refuses_a_one_shot_iterator() -> None:
    one_shot = (b for b in [learnable_batch(0, size=4)])
    with pytest.raises(TypeError, match="re-iterable"):
        fit(tiny_model(), one_shot, [], CoLearningConfig(), TrainConfig(epochs=1), CPU)


def test_train_config_validation() -> None:
    with pytest.raises(ConfigError):
        TrainConfig(lr=0.0)
    with pytest.raises(ConfigError):
        TrainConfig(batch_size=0)
    config = TrainConfig(mixed_precision=True)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_mixed_precision_is_a_no_op_on_cpu(deterministic: None) -> None:
    """bf16 autocast applies to CUDA only; on CPU the flag must leave the numbers unchanged."""
    batch: list[Batch] = [learnable_batch(3, size=8)]
    results = []
    for flag in (False, True):
        model = tiny_model(seed=7)
        config = TrainConfig(mixed_precision=flag)
        results.append(
            train_epoch(
                model, batch, make_optimizer(model, config), CoLearningConfig(), config, CPU
            )
        )
    assert results[0] == results[1]
