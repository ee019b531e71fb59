"""Interactive co-learning: each batch trains the av, a and v views with two-way knowledge transfer.

The audio and visual encoders run once per batch; their outputs feed all three views, so co-learning
costs the two encoders plus three (cheap) fusions rather than three full forward passes.

    loss = BCE(av) + BCE(a) + BCE(v)
         + transfer_to_single * [KD(a <- av) + KD(v <- av)]
         + transfer_to_av * KD(av <- mean of a, v)

KD is the binary KL divergence between temperature-softened sigmoid probabilities of a detached
teacher and the student, times T^2 (so its gradient scale does not shrink with T). Each term uses
only the labelled samples that can form every view it involves; an empty selection adds 0.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from avemo_core.config import FrozenConfig, require
from avemo_core.data import Batch
from avemo_core.labels import CONDITIONS

MODES = ("colearn", "av", "audio", "visual")

# The conditions a model trained in each mode can be evaluated on. A conventional `av` model is run
# on a and v input by the same weights: that is the comparison the paper makes.
_MODE_CONDITIONS: dict[str, tuple[str, ...]] = {
    "colearn": CONDITIONS,
    "av": CONDITIONS,
    "audio": ("a",),
    "visual": ("v",),
}


@dataclasses.dataclass(frozen=True)
class CoLearningConfig(FrozenConfig):
    mode: str = "colearn"  # colearn | av (conventional) | audio | visual (single-modal baselines)
    transfer_to_single: float = 1.0  # weight of KD av -> a and av -> v (0 turns it off)
    transfer_to_av: float = 0.5  # weight of KD a,v -> av (0 turns it off)
    temperature: float = 2.0  # soft-target temperature of the transfer terms
    modality_dropout: float = (
        0.0  # `av` mode ablation: probability of dropping one modality per sample
    )

    def validate(self) -> None:
        require(self.mode in MODES, f"mode must be one of {MODES}, got {self.mode!r}")
        require(self.transfer_to_single >= 0.0, "transfer_to_single must be >= 0")
        require(self.transfer_to_av >= 0.0, "transfer_to_av must be >= 0")
        require(self.temperature > 0.0, "temperature must be > 0")
        require(0.0 <= self.modality_dropout <= 1.0, "modality_dropout must be in [0, 1]")
        require(
            self.modality_dropout == 0.0 or self.mode == "av",
            "modality_dropout applies to mode 'av' only",
        )


@dataclasses.dataclass
class LossOutput:
    loss: torch.Tensor  # scalar to backpropagate
    parts: dict[str, float]  # e.g. bce_av, bce_a, bce_v, kd_to_single, kd_to_av
    logits: dict[str, torch.Tensor]  # condition -> (B, E) logits of the views that ran


def conditions_for_mode(mode: str) -> tuple[str, ...]:
    """Input conditions (av, a, v) a model trained in `mode` can be evaluated on."""
    if mode not in _MODE_CONDITIONS:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    return _MODE_CONDITIONS[mode]


def _select_mean(per_sample: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """Mean of (B,) values over the selected samples; 0 (with zero gradient) when none is."""
    total = torch.where(select, per_sample, torch.zeros_like(per_sample)).sum()
    return total / select.sum().clamp(min=1).to(per_sample.dtype)


def masked_bce(
    logits: torch.Tensor,
    labels: torch.Tensor,
    select: torch.Tensor,
    label_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-label BCE averaged over the labelled emotions (label_mask, (B, E)) of each selected
    sample, then over the selected samples."""
    per_entry = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")
    if label_mask is None:
        return _select_mean(per_entry.mean(1), select)
    weight = label_mask.to(per_entry.dtype)  # (B, E)
    per_sample = (per_entry * weight).sum(1) / weight.sum(1).clamp(min=1)  # (B,)
    return _select_mean(per_sample, select & label_mask.any(1))


def soft_target_kd(
    student: torch.Tensor, teacher_probs: torch.Tensor, temperature: float, select: torch.Tensor
) -> torch.Tensor:
    """Binary KL(teacher || student) of softened probabilities, times T^2, over selected samples.

    `teacher_probs` are sigmoid(teacher_logits / T), already detached. 0 when they match.
    """
    target = teacher_probs.float()
    cross = F.binary_cross_entropy_with_logits(
        student.float() / temperature, target, reduction="none"
    )
    entropy = -(torch.special.xlogy(target, target) + torch.special.xlogy(1 - target, 1 - target))
    per_sample = (cross - entropy).mean(1) * temperature**2  # (B,)
    return _select_mean(per_sample, select)


def _softened(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Detached teacher probabilities at temperature T."""
    return torch.sigmoid(logits.detach().float() / temperature)


def _drop_modalities(batch: Batch, probability: float) -> Batch:
    """The batch with one modality (audio or visual, even odds) masked for a share of av samples."""
    both = batch.has_audio & batch.has_visual  # (B,)
    draw = torch.rand(2, len(batch), device=batch.audio_mask.device)  # (2, B)
    drop = both & (draw[0] < probability)
    drop_audio = drop & (draw[1] < 0.5)
    drop_visual = drop & ~drop_audio
    return dataclasses.replace(
        batch,
        audio_mask=batch.audio_mask & ~drop_audio[:, None],
        visual_mask=batch.visual_mask & ~drop_visual[:, None],
    )


def _finish(
    terms: dict[str, torch.Tensor], weights: dict[str, float], logits: dict[str, torch.Tensor]
) -> LossOutput:
    """Weighted sum of the terms; parts are the unweighted terms and the total, read in one sync."""
    loss = sum(weights[name] * value for name, value in terms.items())
    names = [*terms, "loss"]
    values = torch.stack([*terms.values(), loss]).detach().float().tolist()
    return LossOutput(loss=loss, parts=dict(zip(names, values, strict=True)), logits=logits)


# The views each mode trains.
_MODE_VIEWS: dict[str, tuple[str, ...]] = {
    "colearn": ("av", "a", "v"),
    "av": ("av",),
    "audio": ("a",),
    "visual": ("v",),
}


def colearning_loss(model: nn.Module, batch: Batch, config: CoLearningConfig) -> LossOutput:
    """The training loss of one batch under `config.mode`; terms with weight 0 are not computed.

    Only `model(...)` is called, so `model` may be a DistributedDataParallel wrapper of one. An
    ensemble's members (logits (K, B, E)) are each scored on their own and their terms averaged;
    member k leaves out the rows it holds out (`Batch.holdout == k`, a cross-fit's valid fold).
    """
    # Selection by what the data holds: a dropped modality still counts as an av sample.
    selection = _Selection.of(batch)
    if config.mode == "av" and model.training and config.modality_dropout > 0.0:
        batch = _drop_modalities(batch, config.modality_dropout)
    logits = model(batch, views=_MODE_VIEWS[config.mode])  # one encoding per modality for all
    first = next(iter(logits.values()))
    if first.dim() == 2:
        terms, weights = _terms(logits, batch, selection, config)
    else:
        members = [{c: out[k] for c, out in logits.items()} for k in range(first.shape[0])]
        scored = [
            _terms(member, batch, selection.without(batch.holdout == k), config)
            for k, member in enumerate(members)
        ]
        weights = scored[0][1]
        terms = {name: torch.stack([t[name] for t, _ in scored]).mean() for name in weights}
    return _finish(terms, weights, logits)


@dataclasses.dataclass(frozen=True)
class _Selection:
    """(B,) bool: the labelled samples that can form each view."""

    a: torch.Tensor
    v: torch.Tensor
    av: torch.Tensor

    @classmethod
    def of(cls, batch: Batch) -> _Selection:
        known = batch.label_known
        return cls(
            a=batch.has_audio & known,
            v=batch.has_visual & known,
            av=batch.has_audio & batch.has_visual & known,
        )

    def without(self, rows: torch.Tensor) -> _Selection:
        """The selection less `rows` ((B,) bool), e.g. those a member holds out."""
        return _Selection(a=self.a & ~rows, v=self.v & ~rows, av=self.av & ~rows)


def _terms(
    logits: dict[str, torch.Tensor], batch: Batch, selection: _Selection, config: CoLearningConfig
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Loss terms and their weights from one network's (B, E) logits of the mode's views."""
    terms = {
        f"bce_{c}": masked_bce(logits[c], batch.labels, getattr(selection, c), batch.label_mask)
        for c in logits
    }
    weights = dict.fromkeys(terms, 1.0)
    if config.mode != "colearn":
        return terms, weights
    both = selection.av
    t = config.temperature
    if config.transfer_to_single > 0.0:
        teacher = _softened(logits["av"], t)
        terms["kd_to_single"] = soft_target_kd(logits["a"], teacher, t, both) + soft_target_kd(
            logits["v"], teacher, t, both
        )
        weights["kd_to_single"] = config.transfer_to_single
    if config.transfer_to_av > 0.0:
        teacher = (_softened(logits["a"], t) + _softened(logits["v"], t)) / 2.0
        terms["kd_to_av"] = soft_target_kd(logits["av"], teacher, t, both)
        weights["kd_to_av"] = config.transfer_to_av
    return terms, weights
