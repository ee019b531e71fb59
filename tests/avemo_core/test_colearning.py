"""Co-learning loss: the terms of the design, their sample selection, switches, and its cost."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.flop_counter import FlopCounterMode

from avemo_core.colearning import (
    MODES,
    CoLearningConfig,
    colearning_loss,
    conditions_for_mode,
    masked_bce,
    soft_target_kd,
)
from avemo_core.config import ConfigError
from avemo_core.model import CrossModalTransformer, ModelConfig
from tests.avemo_core.model_batches import random_batch

T = 2.0


@pytest.fixture()
def model() -> CrossModalTransformer:
    torch.manual_seed(0)
    return CrossModalTransformer(ModelConfig.named("tiny")).train()  # tiny has dropout 0


def bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, labels)


def binary_kl(student: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """Reference KL(p || q) written out, p teacher, q student, both softened by T; times T^2."""
    p, q = teacher_probs, torch.sigmoid(student / T)
    kl = p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))
    return kl.mean() * T * T


def test_colearn_loss_matches_the_design_formula(model: CrossModalTransformer) -> None:
    # Sample 1 lacks visual, sample 2 lacks audio, sample 3 is unlabelled.
    batch = random_batch(0, audio_frames=(30, 25, 0, 33, 40), visual_frames=(8, 0, 6, 9, 5))
    batch.label_known[3] = False
    config = CoLearningConfig(transfer_to_single=0.7, transfer_to_av=0.3, temperature=T)
    out = colearning_loss(model, batch, config)
    av, a, v = (out.logits[c].detach() for c in ("av", "a", "v"))
    y = batch.labels
    both, has_a, has_v = [0, 4], [0, 1, 4], [0, 2, 4]
    expected = {
        "bce_av": bce(av[both], y[both]),
        "bce_a": bce(a[has_a], y[has_a]),
        "bce_v": bce(v[has_v], y[has_v]),
        "kd_to_single": binary_kl(a[both], torch.sigmoid(av[both] / T))
        + binary_kl(v[both], torch.sigmoid(av[both] / T)),
        "kd_to_av": binary_kl(
            av[both], (torch.sigmoid(a[both] / T) + torch.sigmoid(v[both] / T)) / 2
        ),
    }
    for name, value in expected.items():
        assert out.parts[name] == pytest.approx(float(value), rel=1e-4, abs=1e-6), name
    total = (
        expected["bce_av"]
        + expected["bce_a"]
        + expected["bce_v"]
        + 0.7 * expected["kd_to_single"]
        + 0.3 * expected["kd_to_av"]
    )
    assert out.loss.item() == pytest.approx(float(total), rel=1e-4)
    assert out.parts["loss"] == pytest.approx(float(total), rel=1e-4)


def test_zero_weights_switch_transfer_terms_off(model: CrossModalTransformer) -> None:
    batch = random_batch(1)
    on = colearning_loss(model, batch, CoLearningConfig())
    off = colearning_loss(
        model, batch, CoLearningConfig(transfer_to_single=0.0, transfer_to_av=0.0)
    )
    assert set(off.parts) == {"bce_av", "bce_a", "bce_v", "loss"}
    assert off.loss.item() == pytest.approx(
        off.parts["bce_av"] + off.parts["bce_a"] + off.parts["bce_v"]
    )
    assert on.parts["kd_to_single"] > 0 and on.parts["kd_to_av"] > 0
    assert on.loss.item() > off.loss.item()
    only_av = colearning_loss(model, batch, CoLearningConfig(transfer_to_single=0.0))
    assert "kd_to_single" not in only_av.parts and "kd_to_av" in only_av.parts


def test_kd_is_zero_for_a_matching_student_and_positive_otherwise() -> None:
    logits = torch.randn(5, 6) * 3
    select = torch.ones(5, dtype=torch.bool)
    same = soft_target_kd(logits, torch.sigmoid(logits / T), T, select)
    assert abs(float(same)) < 1e-5
    other = soft_target_kd(logits + 1.0, torch.sigmoid(logits / T), T, select)
    assert float(other) > 1e-3


def test_unlabelled_samples_do_not_move_the_loss(model: CrossModalTransformer) -> None:
    batch = random_batch(2, audio_frames=(30, 25, 20), visual_frames=(8, 4, 6))
    batch.label_known[1] = False
    first = colearning_loss(model, batch, CoLearningConfig())
    flipped = dataclasses.replace(batch, labels=batch.labels.clone())
    flipped.labels[1] = 1.0 - flipped.labels[1]
    second = colearning_loss(model, flipped, CoLearningConfig())
    assert second.parts == pytest.approx(first.parts, rel=1e-6)


def test_empty_selections_add_zero_not_nan(model: CrossModalTransformer) -> None:
    audio_only = random_batch(3, audio_frames=(30, 25), visual_frames=(0, 0))
    out = colearning_loss(model, audio_only, CoLearningConfig())
    assert out.parts["bce_v"] == 0.0 and out.parts["bce_av"] == 0.0
    assert out.parts["kd_to_single"] == 0.0 and out.parts["kd_to_av"] == 0.0
    assert out.parts["bce_a"] > 0.0
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_gradients_reach_both_encoders_under_colearning(model: CrossModalTransformer) -> None:
    colearning_loss(model, random_batch(4), CoLearningConfig()).loss.backward()
    for prefix in (
        "audio_front.",
        "audio_encoder.",
        "frame_cnn.",
        "visual_encoder.",
        "audio_cross.",
        "visual_cross.",
    ):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert grads and all(g is not None for g in grads), prefix
        assert sum(float(g.abs().sum()) for g in grads) > 0.0, prefix


@pytest.mark.parametrize(
    ("mode", "parts", "audio_runs", "visual_runs"),
    [
        ("colearn", {"bce_av", "bce_a", "bce_v", "kd_to_single", "kd_to_av"}, 1, 1),
        ("av", {"bce_av"}, 1, 1),
        ("audio", {"bce_a"}, 1, 0),
        ("visual", {"bce_v"}, 0, 1),
    ],
)
def test_each_encoder_runs_at_most_once_per_batch(
    model: CrossModalTransformer, mode: str, parts: set[str], audio_runs: int, visual_runs: int
) -> None:
    calls = {"audio": 0, "visual": 0}
    model.audio_front.register_forward_hook(
        lambda *_: calls.__setitem__("audio", calls["audio"] + 1)
    )
    model.frame_cnn.register_forward_hook(
        lambda *_: calls.__setitem__("visual", calls["visual"] + 1)
    )
    out = colearning_loss(model, random_batch(5), CoLearningConfig(mode=mode))
    assert set(out.parts) == parts | {"loss"}
    assert calls == {"audio": audio_runs, "visual": visual_runs}
    assert (
        set(out.logits)
        == {"colearn": {"av", "a", "v"}, "av": {"av"}, "audio": {"a"}, "visual": {"v"}}[mode]
    )


def test_colearning_costs_well_under_three_passes() -> None:
    """Counted FLOPs of a training step (forward + backward) at a realistic 10 s clip length."""
    torch.manual_seed(0)
    model = CrossModalTransformer(ModelConfig.named("tiny"))
    batch = random_batch(6, audio_frames=(1000, 1000), visual_frames=(50, 50))
    flops = {}
    for mode in ("colearn", "av"):
        with FlopCounterMode(display=False) as counter:
            colearning_loss(model, batch, CoLearningConfig(mode=mode)).loss.backward()
        flops[mode] = counter.get_total_flops()
    assert flops["colearn"] < 2.0 * flops["av"]


def test_modality_dropout_feeds_single_modal_input_in_av_mode(model: CrossModalTransformer) -> None:
    torch.manual_seed(1)
    batch = random_batch(7, audio_frames=(20,) * 12, visual_frames=(5,) * 12)
    out = colearning_loss(model, batch, CoLearningConfig(mode="av", modality_dropout=1.0))
    with torch.no_grad():
        audio_only, visual_only = model(batch, "a"), model(batch, "v")
    logits = out.logits["av"].detach()
    is_a = torch.isclose(logits, audio_only, atol=1e-5).all(dim=1)
    is_v = torch.isclose(logits, visual_only, atol=1e-5).all(dim=1)
    assert bool((is_a ^ is_v).all())  # every sample lost exactly one modality
    assert is_a.any() and is_v.any()  # both kinds of drop happen
    # Dropped samples still train the av head: they count as av samples.
    assert out.parts["bce_av"] == pytest.approx(float(bce(logits, batch.labels)), rel=1e-5)
    # Off in eval mode.
    model.eval()
    evaluated = colearning_loss(model, batch, CoLearningConfig(mode="av", modality_dropout=1.0))
    torch.testing.assert_close(evaluated.logits["av"], model(batch, "av"))


def test_config_validation_and_conditions() -> None:
    with pytest.raises(ConfigError):
        CoLearningConfig(mode="both")
    with pytest.raises(ConfigError):
        CoLearningConfig(transfer_to_av=-1.0)
    with pytest.raises(ConfigError):
        CoLearningConfig(temperature=0.0)
    with pytest.raises(ConfigError):
        CoLearningConfig(mode="colearn", modality_dropout=0.5)
    assert CoLearningConfig.from_dict(CoLearningConfig(mode="av").to_dict()).mode == "av"
    assert {m: conditions_for_mode(m) for m in MODES} == {
        "colearn": ("av", "a", "v"),
        "av": ("av", "a", "v"),
        "audio": ("a",),
        "visual": ("v",),
    }
    with pytest.raises(ValueError):
        conditions_for_mode("both")


def test_colearning_through_a_distributed_data_parallel_wrapper(tmp_path: Path) -> None:
    """Ray Train wraps the model in DDP, which only hooks `forward`: the loss must go through it."""
    torch.manual_seed(0)
    plain = CrossModalTransformer(ModelConfig.named("tiny")).train()
    twin = copy.deepcopy(plain)
    batch = random_batch(9)
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        wrapped = DistributedDataParallel(twin)
        via_ddp = colearning_loss(wrapped, batch, CoLearningConfig())
        via_ddp.loss.backward()
    finally:
        dist.destroy_process_group()
    direct = colearning_loss(plain, batch, CoLearningConfig())
    direct.loss.backward()
    assert via_ddp.parts == pytest.approx(direct.parts, rel=1e-6)
    for (name, p), q in zip(plain.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_unlabelled_emotions_add_no_loss() -> None:
    """An emotion a clip leaves unlabelled (label_mask False) neither teaches nor is taught: the
    BCE equals the mean over the labelled entries only, whatever the label tensor holds there."""
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    select = torch.tensor([True, True])
    loss = masked_bce(logits, labels, select, mask)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[0, :2], labels[0, :2])
    assert loss.item() == pytest.approx(expected.item())
    flipped = labels.clone()
    flipped[0, 2] = 0.0
    assert masked_bce(logits, flipped, select, mask).item() == pytest.approx(loss.item())
