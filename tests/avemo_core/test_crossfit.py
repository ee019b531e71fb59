"""Cross-fitted ensembles: speaker folds, members blind to the rows they hold out, out-of-fold
validation from the member that held each clip out."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from avemo_core import inference, training
from avemo_core.colearning import CoLearningConfig, colearning_loss
from avemo_core.config import ConfigError
from avemo_core.crossfit import Folds, clip_fold, out_of_fold_probabilities
from avemo_core.data import NO_HOLDOUT, Batch
from avemo_core.ensemble import TransformerEnsemble, build_model
from avemo_core.labels import CONDITIONS
from avemo_core.model import ModelConfig
from tests.avemo_core.model_batches import learnable_batch, random_batch

CPU = torch.device("cpu")


def _ensemble(members: int) -> TransformerEnsemble:
    torch.manual_seed(0)
    model = build_model(ModelConfig.named("tiny", members=members))
    assert isinstance(model, TransformerEnsemble)
    return model


def _held_out(batch: Batch, holdout: list[int]) -> Batch:
    return dataclasses.replace(batch, holdout=torch.tensor(holdout))


def test_folds_go_round_robin_over_the_sorted_speakers_whatever_their_order() -> None:
    speakers = ["s3", "s1", None, "s0", "s2", "s1", "s4"]
    folds = Folds.of(speakers, 3)
    assert folds.speakers == {"s0": 0, "s1": 1, "s2": 2, "s3": 0, "s4": 1}
    assert Folds.of(reversed(speakers), 3) == folds
    assert folds.held_out() == [["s0", "s3"], ["s1", "s4"], ["s2"]]
    assert Folds.from_dict(folds.to_dict()) == folds


def test_holdout_is_speaker_disjoint_train_rows_are_none_and_unnamed_clips_hash() -> None:
    folds = Folds.of(["a", "b", "c", "d"], 2)
    splits = ["valid", "valid", "train", "valid", "valid", "valid", "valid"]
    speakers = ["a", "b", "a", None, "a", "c", None]
    clip_ids = [f"clip-{i}" for i in range(len(splits))]
    holdout = folds.holdout(splits, speakers, clip_ids)
    assert holdout[2] == NO_HOLDOUT  # a train row: every member trains on it
    assert holdout[0] == holdout[4] == 0 and holdout[1] == 1 and holdout[5] == 0
    for i in (3, 6):  # no speaker: the clip's own stable hash
        expected = int.from_bytes(hashlib.sha256(clip_ids[i].encode()).digest()[:8], "big") % 2
        assert holdout[i] == clip_fold(clip_ids[i], 2) == expected
    assert {clip_fold(f"clip-{i}", 2) for i in range(20)} == {0, 1}  # both folds get some
    np.testing.assert_array_equal(folds.holdout(splits, speakers, clip_ids), holdout)
    with pytest.raises(ValueError, match="'z' is not in the cross-fit folds"):
        folds.holdout(["valid"], ["z"], ["clip-z"])


def test_cross_fit_needs_an_ensemble() -> None:
    with pytest.raises(ConfigError, match="members must be >= 2, got 1"):
        Folds.of(["a", "b"], 1)
    torch.manual_seed(0)
    single = build_model(ModelConfig.named("tiny"))
    config = training.TrainConfig(epochs=1, cross_fit=True)
    batches = [learnable_batch(0, size=4)]
    with pytest.raises(ConfigError, match="cross_fit needs an ensemble"):
        training.fit(single, batches, batches, CoLearningConfig(), config, CPU)


def test_a_member_gets_no_gradient_from_the_rows_it_holds_out() -> None:
    model = _ensemble(2).eval()  # eval: no dropout, so the passes below repeat exactly
    batch = random_batch(1)
    held = _held_out(batch, [0] * len(batch))  # every row in fold 0
    out = colearning_loss(model, held, CoLearningConfig())
    assert all(np.isfinite(value) for value in out.parts.values())
    out.loss.backward()
    first, second = model.members
    assert all(p.grad is None or not p.grad.any() for p in first.parameters())
    assert any(p.grad is not None and p.grad.any() for p in second.parameters())
    # member 1 learns from those rows exactly as it would alone (its loss is half the mean)
    got = second.head[1].weight.grad.clone()
    model.zero_grad()
    (colearning_loss(second, batch, CoLearningConfig()).loss / 2).backward()
    torch.testing.assert_close(got, second.head[1].weight.grad)


def test_out_of_fold_rows_come_from_the_member_that_held_them_out() -> None:
    model = _ensemble(3).eval()
    batch = _held_out(learnable_batch(2, size=5), [2, 0, 1, NO_HOLDOUT, 0])
    assert torch.equal(batch.to(CPU).holdout, batch.holdout)  # carried with the batch
    out = out_of_fold_probabilities(model, batch, CONDITIONS)
    alone = [inference.probabilities(m, batch, CONDITIONS) for m in model.members]
    ensemble = inference.probabilities(model, batch, CONDITIONS)
    for condition in CONDITIONS:
        for row, member in enumerate([2, 0, 1, None, 0]):
            expected = ensemble if member is None else alone[member]
            np.testing.assert_allclose(out[condition][row], expected[condition][row], atol=1e-5)
        assert not np.allclose(out[condition][:3], ensemble[condition][:3], atol=1e-4)
    predicted = training.predict(model, [batch], ["av"], CPU, out_of_fold=True)["av"][0]
    np.testing.assert_allclose(predicted, out["av"], atol=1e-6)


def test_fit_selects_and_tunes_on_out_of_fold_probabilities() -> None:
    model = _ensemble(2)
    train = [learnable_batch(seed, size=8) for seed in range(2)]
    valid = [_held_out(learnable_batch(10 + seed, size=8), [0, 1] * 4) for seed in range(2)]
    config = training.TrainConfig(epochs=1, batch_size=8, cross_fit=True)
    result = training.fit(model, [*train, *valid], valid, CoLearningConfig(), config, CPU)
    oof_metrics, oof_thresholds = training.validate(model, valid, CONDITIONS, CPU, out_of_fold=True)
    record = result.history[-1]
    assert record["train/samples"] == 32.0  # the train rows and the valid rows
    for name, value in oof_metrics.items():
        if np.isfinite(value):
            assert record[f"valid/{name}"] == pytest.approx(value)
    for condition, thresholds in oof_thresholds.items():
        np.testing.assert_array_equal(result.thresholds[condition], thresholds)
    mean_metrics, _ = training.validate(model, valid, CONDITIONS, CPU)
    assert mean_metrics != oof_metrics  # the ensemble mean is not what was scored
