"""The plain training loop: one process, no Ray. Ray Train (pipelines/) wraps `fit` itself.

`train_epoch`, `predict` and `validate` are stateless epoch-level steps (model, optimizer and data
come in, numbers go out); `fit` runs them epoch by epoch from any start epoch and hands each epoch
to a callback, where a Ray Train worker reports and checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from avemo_core import crossfit, inference, metrics
from avemo_core.augment import augment_batch
from avemo_core.colearning import CoLearningConfig, colearning_loss, conditions_for_mode
from avemo_core.config import FrozenConfig, require
from avemo_core.data import Batch
from avemo_core.ensemble import Model, networks
from avemo_core.model import CORPUS_STATISTICS_NORMS, CrossModalTransformer
from avemo_core.selection import SCORE_KEY, Selection, selection_score

LR_SCHEDULES = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class TrainConfig(FrozenConfig):
    epochs: int = 40  # passes over the training split (the best epoch by valid is kept)
    batch_size: int = 16  # clips per step per worker
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 0.01  # AdamW weight decay (weight matrices only, not biases or norms)
    warmup_epochs: int = 1  # epochs of linear warm-up to `lr` (per-epoch steps)
    lr_schedule: str = "cosine"  # cosine: decay to 0 after warm-up; constant: stay at `lr`
    # SpecAugment is off by default: on RAVDESS speech with the `small` model it lowered valid
    # macro-F1 (0.54 -> 0.47 with 2+2 masks, 0.52 with 1+1); larger models/corpora may gain.
    time_masks: int = 0  # SpecAugment time spans masked per training clip (0 = off)
    time_mask_frames: int = 40  # longest time span, in audio frames
    freq_masks: int = 0  # SpecAugment mel bands masked per training clip (0 = off)
    freq_mask_bins: int = 10  # widest band, in mel bins
    mel_shift_bins: int = 0  # each training clip moves up to this many mel bins up or down
    time_stretch: float = 0.0  # each training clip's time axis is resampled by 1 +- up to this
    grad_clip: float = 1.0  # max global grad norm (0 = off)
    seed: int = 0  # seeds torch/numpy for the run
    max_audio_frames: int = 1000  # clips are cut to this many audio frames (10 s at 10 ms)
    max_visual_frames: int = 50  # and this many sampled video frames
    mixed_precision: bool = False  # bf16 autocast for forward and loss when training on CUDA
    # an ensemble also trains on the valid split, each member less one fold of its speakers, and
    # is validated out-of-fold (avemo_core/crossfit.py); needs members >= 2
    cross_fit: bool = False

    def validate(self) -> None:
        require(self.epochs >= 0, "epochs must be >= 0")
        require(self.batch_size > 0, "batch_size must be > 0")
        require(self.lr > 0.0, "lr must be > 0")
        require(self.weight_decay >= 0.0, "weight_decay must be >= 0")
        require(self.warmup_epochs >= 0, "warmup_epochs must be >= 0")
        require(self.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {LR_SCHEDULES}")
        require(
            min(self.time_masks, self.time_mask_frames, self.freq_masks, self.freq_mask_bins) >= 0,
            "SpecAugment counts and widths must be >= 0",
        )
        require(self.mel_shift_bins >= 0, "mel_shift_bins must be >= 0")
        require(0.0 <= self.time_stretch < 1.0, "time_stretch must be in [0, 1)")
        require(self.grad_clip >= 0.0, "grad_clip must be >= 0")
        require(self.max_audio_frames > 0, "max_audio_frames must be > 0")
        require(self.max_visual_frames > 0, "max_visual_frames must be > 0")


@dataclasses.dataclass(frozen=True)
class EpochEnd:
    """What `fit` hands its epoch callback once an epoch is trained and validated."""

    epoch: int
    train_stats: dict[str, float]  # mean loss parts and `samples` of this process's share
    valid_metrics: dict[str, float]  # "<condition>/<metric>" (empty where nothing is validated)
    thresholds: dict[str, np.ndarray]  # condition -> (E,) thresholds tuned on this validation
    selection: Selection  # this epoch's val_score and the conditions it averages
    seconds: float  # wall time of the epoch: training and validation
    history: list[dict[str, float]]  # every epoch so far, this one last (its record)


EpochCallback = Callable[[EpochEnd], None]
# Batches of one epoch, given the epoch: a new shuffle per epoch without a re-iterable.
EpochBatches = Callable[[int], Iterable[Batch]]


@dataclasses.dataclass
class FitResult:
    # per epoch: "epoch", "train/lr", "train/samples_per_s", "train/<part>", "val_score",
    # "valid/<condition>/<metric>"; undefined (NaN) values left out
    history: list[dict[str, float]]
    thresholds: dict[str, np.ndarray]  # condition -> (E,) thresholds tuned on the last validation


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) so a run repeats."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: Model, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on weight matrices and kernels only (decaying norms and biases hurts)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr)


def lr_factor(epoch: int, config: TrainConfig) -> float:
    """Share of `config.lr` for `epoch`: linear warm-up, then cosine decay (or constant).

    Warm-up epochs run at (e + 1) / (warmup + 1); the cosine then falls from 1 at the first epoch
    after warm-up towards 0 at the last. A function of the epoch alone, so a resumed run needs no
    scheduler state.
    """
    if epoch < config.warmup_epochs:
        return (epoch + 1) / (config.warmup_epochs + 1)
    if config.lr_schedule == "constant":
        return 1.0
    decay_epochs = config.epochs - config.warmup_epochs  # epochs from the peak to the end
    progress = (epoch - config.warmup_epochs) / max(decay_epochs, 1)  # 0 at the peak
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def set_epoch_lr(optimizer: torch.optim.Optimizer, epoch: int, config: TrainConfig) -> float:
    """Set every parameter group's learning rate for `epoch`; returns it."""
    lr = config.lr * lr_factor(epoch, config)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def _mean_std(rows: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(F,) mean and standard deviation over every row of a stream of (N, F) tensors; None when
    there is no row. Sums are float64, so a long corpus loses nothing."""
    total = squares = None
    count = 0
    for values in rows:
        if values.shape[0] == 0:
            continue
        values = values.double()
        total = values.sum(dim=0) if total is None else total + values.sum(dim=0)
        squares = (values**2).sum(dim=0) if squares is None else squares + (values**2).sum(dim=0)
        count += values.shape[0]
    if total is None or squares is None:
        return None
    mean = total / count  # (F,)
    var = (squares / count - mean**2).clamp(min=0.0)  # (F,)
    return mean.float(), var.sqrt().float()


def feature_statistics(batches: Iterable[Batch]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(F,) mean and standard deviation of the audio features over every real frame of `batches`.

    None when no batch holds an audio frame.
    """
    return _mean_std(batch.audio[batch.audio_mask] for batch in batches)  # (N real frames, F)


@torch.no_grad()
def functionals_statistics(
    model: CrossModalTransformer, batches: Iterable[Batch]
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(K,) mean and standard deviation of the utterance functionals of every clip with audio in
    `batches`, as `model` computes them (`audio_functionals`: after its corpus statistics)."""
    device = next(model.parameters()).device

    def functionals() -> Iterator[torch.Tensor]:
        for batch in batches:
            has_audio = batch.audio_mask.any(dim=1)  # (B,)
            if not has_audio.any():
                continue
            audio, mask = batch.audio[has_audio].to(device), batch.audio_mask[has_audio].to(device)
            yield model.audio_functionals(audio, mask)  # (B', K)

    return _mean_std(functionals())


def fit_normalisation(model: Model, batches: Iterable[Batch]) -> bool:
    """Give a model (every network of an ensemble alike) the feature statistics of `batches` (the
    training split, re-iterable): the corpus normalisation, then (a second pass) the
    standardisation of its utterance functionals.

    Returns whether it set any: not for an utterance-normalised model without functionals, nor
    for audio-less data.
    """
    members = networks(model)
    first = members[0]
    fitted = False
    if first.config.audio_norm in CORPUS_STATISTICS_NORMS:
        stats = feature_statistics(batches)
        if stats is None:
            return False
        for member in members:
            member.audio_front.set_normalisation(*stats)
        fitted = True
    if first.functionals_head is not None:
        stats = functionals_statistics(first, batches)
        if stats is None:
            return False
        for member in members:
            member.functionals_head.set_statistics(*stats)
        fitted = True
    return fitted


def _autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    if config.mixed_precision and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_epoch(
    model: Model,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    colearning: CoLearningConfig,
    config: TrainConfig,
    device: torch.device,
) -> dict[str, float]:
    """One pass at the optimizer's current learning rate, the audio augmented as `config` says.

    Returns mean loss parts and `samples`.
    """
    model.train()
    sums: dict[str, float] = {}
    steps = samples = 0
    for batch in batches:
        batch = batch.to(device, non_blocking=True)
        batch = augment_batch(
            batch,
            config.time_masks,
            config.time_mask_frames,
            config.freq_masks,
            config.freq_mask_bins,
            mel_shift_bins=config.mel_shift_bins,
            time_stretch_max=config.time_stretch,
        )
        with _autocast(config, device):
            out = colearning_loss(model, batch, colearning)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if config.grad_clip > 0.0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        for name, value in out.parts.items():
            sums[name] = sums.get(name, 0.0) + value
        steps += 1
        samples += len(batch)
    stats = {name: total / max(steps, 1) for name, total in sums.items()}
    stats["samples"] = float(samples)
    return stats


def predict(
    model: Model,
    batches: Iterable[Batch],
    conditions: Sequence[str],
    device: torch.device,
    out_of_fold: bool = False,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """condition -> (N, E) probabilities and (N, E) labels of the labelled samples that can form it
    (labels NaN where an emotion is unlabelled).

    One pass over the data for all conditions, through the shared inference core; `out_of_fold`:
    each row's probabilities from the member that held it out (a cross-fitted ensemble).
    """
    probabilities = crossfit.out_of_fold_probabilities if out_of_fold else inference.probabilities
    model.eval()
    probs: dict[str, list[np.ndarray]] = {c: [] for c in conditions}
    labels: dict[str, list[np.ndarray]] = {c: [] for c in conditions}
    for batch in batches:
        labelled = batch.label_mask.cpu().numpy()  # (B, E)
        known = batch.label_known.cpu().numpy() & labelled.any(axis=1)  # (B,)
        if not known.any():
            continue
        out = probabilities(model, batch.to(device), conditions)
        truth = np.where(labelled, batch.labels.cpu().numpy(), np.nan)  # (B, E)
        has_audio, has_visual = batch.has_audio.cpu().numpy(), batch.has_visual.cpu().numpy()
        for condition in conditions:
            keep = known & inference.can_form(has_audio, has_visual, condition)
            probs[condition].append(out[condition][keep])
            labels[condition].append(truth[keep])
    num_labels = model.config.num_labels
    empty = np.zeros((0, num_labels), np.float32)
    return {
        c: (np.concatenate([empty, *probs[c]]), np.concatenate([empty, *labels[c]]))
        for c in conditions
    }


def validate(
    model: Model,
    batches: Iterable[Batch],
    conditions: Iterable[str],
    device: torch.device,
    threshold_config: metrics.ThresholdConfig | None = None,
    out_of_fold: bool = False,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics `<condition>/<metric>` and thresholds tuned per condition on these (validation) data
    (`out_of_fold`: from a cross-fitted ensemble's out-of-fold probabilities, see `predict`).

    A condition no labelled sample can form is left out of both.
    """
    results: dict[str, float] = {}
    thresholds: dict[str, np.ndarray] = {}
    predictions = predict(model, batches, list(conditions), device, out_of_fold)
    for condition, (probs, labels) in predictions.items():
        if len(probs) == 0:
            continue
        thresholds[condition] = metrics.tune_thresholds(probs, labels, threshold_config)
        scores = metrics.emotion_metrics(probs, labels, thresholds[condition])
        results.update({f"{condition}/{name}": value for name, value in scores.items()})
        results[f"{condition}/samples"] = float(len(probs))
    return results, thresholds


def _data_parallel_size() -> int:
    """Processes sharing each epoch (torch.distributed's world; 1 without a process group)."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_world_size() if distributed else 1


def _epoch_record(
    epoch: int,
    lr: float,
    train_stats: dict[str, float],
    train_seconds: float,
    valid_metrics: dict[str, float],
    selection: Selection,
) -> dict[str, float]:
    """One history row; an undefined value (NaN: e.g. F1 with no positives) is left out."""
    samples_per_s = train_stats["samples"] * _data_parallel_size() / max(train_seconds, 1e-9)
    record = {"epoch": float(epoch), "train/lr": lr, "train/samples_per_s": samples_per_s}
    record.update({f"train/{k}": v for k, v in train_stats.items()})
    record.update({f"valid/{k}": v for k, v in valid_metrics.items()})
    record[SCORE_KEY] = selection.score
    return {k: v for k, v in record.items() if not math.isnan(v)}


def fit(
    model: torch.nn.Module,
    train_batches: Iterable[Batch] | EpochBatches,
    valid_batches: Iterable[Batch],
    colearning: CoLearningConfig,
    config: TrainConfig,
    device: torch.device,
    on_epoch_end: EpochCallback | None = None,
    *,
    start_epoch: int = 0,
    history: Sequence[dict[str, float]] = (),
    optimizer: torch.optim.Optimizer | None = None,
    threshold_config: metrics.ThresholdConfig | None = None,
) -> FitResult:
    """Train epochs `start_epoch`..`config.epochs - 1`, validating on every condition the mode
    serves after each; `on_epoch_end` sees each epoch's numbers (to report, log, checkpoint).

    `model` is a Model (one network or an ensemble) or a DistributedDataParallel wrapper of one:
    training goes through the wrapper (so gradients are averaged), normalisation and validation
    through its `.module`. `train_batches` is re-iterable (a list, a DataLoader) or a function of
    the epoch; `valid_batches` is re-iterable (empty where this process does not validate). A
    resumed run (`start_epoch` > 0, with its `history` and restored `optimizer`) keeps the
    normalisation statistics it was trained with. Seeding is the caller's job (`seed_everything`
    before building the model), so a resumed run is not reseeded.

    With `config.cross_fit` (an ensemble whose batches carry `Batch.holdout`: the train rows and
    the valid rows with their folds) validation scores each valid row by the member that held it
    out, so the selection and the thresholds come from predictions on unseen speakers.
    """
    for name, source in (("train_batches", train_batches), ("valid_batches", valid_batches)):
        if isinstance(source, Iterator):
            raise TypeError(f"{name} is a one-shot iterator; pass a re-iterable (list, DataLoader)")
    batches_for = train_batches if callable(train_batches) else lambda _epoch: train_batches
    core: Model = getattr(model, "module", model)
    if config.cross_fit:
        crossfit.require_ensemble(len(networks(core)))
    if start_epoch == 0:
        fit_normalisation(core, batches_for(0))
    model.to(device)
    optimizer = optimizer or make_optimizer(core, config)
    conditions = conditions_for_mode(colearning.mode)
    records = list(history)
    thresholds: dict[str, np.ndarray] = {}
    for epoch in range(start_epoch, config.epochs):
        lr = set_epoch_lr(optimizer, epoch, config)
        began = time.perf_counter()
        train_stats = train_epoch(model, batches_for(epoch), optimizer, colearning, config, device)
        train_seconds = time.perf_counter() - began
        valid_metrics, thresholds = validate(
            core, valid_batches, conditions, device, threshold_config, config.cross_fit
        )
        selection = selection_score(colearning.mode, valid_metrics)
        records.append(
            _epoch_record(epoch, lr, train_stats, train_seconds, valid_metrics, selection)
        )
        if on_epoch_end is not None:
            end = EpochEnd(
                epoch=epoch,
                train_stats=train_stats,
                valid_metrics=valid_metrics,
                thresholds=thresholds,
                selection=selection,
                seconds=time.perf_counter() - began,
                history=list(records),
            )
            on_epoch_end(end)
    return FitResult(history=records, thresholds=thresholds)
