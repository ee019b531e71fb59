"""Multi-label emotion metrics per emotion and averaged: WA, F1, AUC, micro-F1, Jaccard; thresholds.

Plain vectorised numpy (scikit-learn is only the tests' reference). Arrays are (N, E): N samples,
E emotions in logit order; labels are 0/1, or NaN where an emotion is unlabelled (a corpus that
does not annotate it): such entries count nowhere, neither as positives nor as negatives. An
emotion is decided present when prob >= threshold.

Undefined values are NaN and left out of the macro means (`np.nanmean`), never silently 0 or 1:
- An emotion without positives or without negatives in the data has no WA, F1 or AUC there: all
  three are NaN. (A corpus that lacks an emotion would otherwise score WA 1.0 on it and lift the
  mean.) WA is the mean of TPR and TNR, the design's (TP*N/P + TN)/(2N) rewritten.
- Micro-F1 (pooled over all emotions) is NaN when no positive exists and none is predicted anywhere.
- Jaccard counts a sample with no true and no predicted emotion as 1 (both empty: a perfect match).

Thresholds (`tune_thresholds`) are chosen so that they hold on new data, not to maximise F1 on a
small validation split; see its docstring.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np

from avemo_core.config import FrozenConfig, require
from avemo_core.labels import EMOTIONS

# Threshold for an emotion the validation data cannot tune (too few positives or negatives).
FALLBACK_THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True)
class ThresholdConfig(FrozenConfig):
    """How decision thresholds are tuned on validation data (see `tune_thresholds`)."""

    min_positives: int = 10  # fewer positives (or negatives) than this: fallback, no tuning
    grid_step: float = 0.05  # spacing of the candidate thresholds
    lowest: float = 0.1  # candidates and results stay in [lowest, highest]
    highest: float = 0.9
    smooth_points: int = 3  # odd width of the moving average over the F1 curve (1 = none)
    beta: float = 1.0  # F-beta: > 1 favours recall, < 1 precision
    fallback: float = FALLBACK_THRESHOLD  # used when an emotion cannot be tuned

    def validate(self) -> None:
        require(self.min_positives >= 1, "min_positives must be >= 1")
        require(0.0 < self.grid_step <= 0.5, "grid_step must be in (0, 0.5]")
        require(0.0 < self.lowest <= self.highest < 1.0, "need 0 < lowest <= highest < 1")
        require(self.smooth_points >= 1 and self.smooth_points % 2 == 1, "smooth_points: odd >= 1")
        require(self.beta > 0.0, "beta must be > 0")
        require(
            self.lowest <= self.fallback <= self.highest, "fallback must be in [lowest, highest]"
        )

    def grid(self) -> np.ndarray:
        """(G,) candidate thresholds from `lowest` to `highest`."""
        steps = int(np.floor((self.highest - self.lowest) / self.grid_step + 1e-9))
        return np.round(self.lowest + self.grid_step * np.arange(steps + 1), 10)


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 probabilities and 0/1/NaN (unlabelled) labels of one (N, E) shape."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != labels.shape:
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} must both be (N, E)")
    if not np.isfinite(probs).all():
        raise ValueError("probs contain NaN or infinity")
    if not (np.isin(labels, (0.0, 1.0)) | np.isnan(labels)).all():
        raise ValueError("labels must be 0/1, or NaN where unlabelled")
    return probs, labels


def _sorted_desc(
    probs: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns sorted by descending probability: scores, labels, True where a tie group starts."""
    order = np.argsort(-probs, axis=0, kind="stable")  # (N, E)
    scores = np.take_along_axis(probs, order, axis=0)  # (N, E)
    ys = np.take_along_axis(labels, order, axis=0)  # (N, E)
    group_start = np.ones_like(scores, dtype=bool)  # (N, E)
    group_start[1:] = scores[1:] != scores[:-1]
    return scores, ys, group_start


def decide(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(N, E) bool decisions: emotion e is present when prob >= thresholds[e] (the one rule)."""
    return np.asarray(probs) >= np.asarray(thresholds, dtype=np.float64)[None, :]


def tune_thresholds(
    probs: np.ndarray, labels: np.ndarray, config: ThresholdConfig | None = None
) -> np.ndarray:
    """(N, E) probabilities and 0/1 labels -> (E,) per-emotion thresholds chosen on validation data.

    The exact F1-optimal cut over every distinct score overfits a small split: with a handful of
    positives it lands on the lowest positive's score (0.05 on 130 clips). Instead, per emotion:
    F-beta is computed at a coarse grid of candidates in [lowest, highest], smoothed by a moving
    average along the grid, and the best smoothed candidate wins (ties: the one nearest the
    fallback). An emotion with fewer than `min_positives` positives or negatives keeps the
    documented fallback (0.5): there is too little to tune on.
    """
    config = config or ThresholdConfig()
    probs, labels = _check(probs, labels)
    grid = config.grid()  # (G,)
    labelled = ~np.isnan(labels)[None]  # (1, N, E)
    truth = (labels == 1.0)[None]  # (1, N, E)
    pred = probs[None] >= grid[:, None, None]  # (G, N, E)
    tp = (pred & truth).sum(axis=1).astype(np.float64)  # (G, E)
    fp = (pred & ~truth & labelled).sum(axis=1).astype(np.float64)
    fn = (~pred & truth).sum(axis=1).astype(np.float64)
    b2 = config.beta**2
    denominator = (1 + b2) * tp + b2 * fn + fp
    score = np.where(denominator > 0, (1 + b2) * tp / np.maximum(denominator, 1), 0.0)  # (G, E)
    smooth = _moving_average(score, config.smooth_points)  # (G, E)
    # Among (near-)equal best candidates, the one nearest the fallback.
    best = smooth >= smooth.max(axis=0, keepdims=True) - 1e-12  # (G, E)
    distance = np.where(best, np.abs(grid - config.fallback)[:, None], np.inf)  # (G, E)
    chosen = grid[np.argmin(distance, axis=0)]  # (E,)
    positives = truth[0].sum(axis=0)  # (E,)
    negatives = labelled[0].sum(axis=0) - positives
    enough = (positives >= config.min_positives) & (negatives >= config.min_positives)
    return np.where(enough, chosen, config.fallback)


def _moving_average(values: np.ndarray, points: int) -> np.ndarray:
    """(G, E) centred moving average along axis 0 over `points` rows, shrinking at the ends."""
    half = points // 2
    padded = np.pad(values, ((half, half), (0, 0)))  # (G + 2h, E)
    ones = np.pad(np.ones(len(values)), (half, half))  # (G + 2h,)
    window = np.ones(points)
    sums = np.stack(
        [np.convolve(padded[:, e], window, mode="valid") for e in range(values.shape[1])], axis=1
    )  # (G, E)
    counts = np.convolve(ones, window, mode="valid")[:, None]  # (G, 1)
    return sums / counts


def roc_auc(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(E,) ROC AUC per emotion by the rank-sum (Mann-Whitney) formula, ties counted half.

    NaN for an emotion with only one label value: its AUC is undefined.
    """
    probs, labels = _check(probs, labels)
    if np.isnan(labels).any():  # per emotion over its labelled samples
        out = np.full(labels.shape[1], np.nan)
        for j in range(labels.shape[1]):
            rows = ~np.isnan(labels[:, j])
            if rows.any():
                out[j] = roc_auc(probs[rows, j : j + 1], labels[rows, j : j + 1])[0]
        return out
    n, e = probs.shape
    scores, ys, group_start = _sorted_desc(probs, labels)
    # Tie groups numbered across all columns (column-major) so one bincount averages every group.
    group = np.cumsum(group_start.T.ravel()) - 1  # (E * N,)
    ascending_rank = np.broadcast_to(
        np.arange(n, 0, -1, dtype=np.float64)[:, None], (n, e)
    )  # (N, E)
    mean_rank = np.bincount(group, ascending_rank.T.ravel()) / np.bincount(group)
    ranks = mean_rank[group].reshape(e, n).T  # (N, E) average ascending rank of each sorted score
    positives = ys.sum(axis=0)  # (E,)
    negatives = n - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * ys).sum(axis=0) - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), auc, np.nan)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan
        )


def _nanmean(values: np.ndarray) -> float:
    """Mean over the defined values; NaN (without a warning) when none is defined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)) if np.size(values) else float("nan")


def emotion_metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray,
    names: Sequence[str] = EMOTIONS,
) -> dict[str, float]:
    """Flat dict: `wa/<emotion>`, `f1/<emotion>`, `auc/<emotion>`, macro `wa`, `f1`, `auc`,
    `micro_f1` and `jaccard`. Names default to the six emotions in logit order."""
    probs, labels = _check(probs, labels)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.shape != (probs.shape[1],) or len(names) != probs.shape[1]:
        raise ValueError(
            f"{probs.shape[1]} emotions but {thresholds.shape} thresholds and {len(names)} names"
        )
    labelled = ~np.isnan(labels)  # (N, E)
    truth = labels == 1.0  # (N, E)
    pred = decide(probs, thresholds) & labelled  # (N, E): unlabelled entries decide nothing
    tp = (pred & truth).sum(axis=0).astype(np.float64)  # (E,)
    fp = (pred & ~truth).sum(axis=0).astype(np.float64)
    fn = (~pred & truth).sum(axis=0).astype(np.float64)
    tn = (~pred & ~truth & labelled).sum(axis=0).astype(np.float64)
    both = (tp + fn > 0) & (tn + fp > 0)  # (E,): positives and negatives present
    wa = np.where(both, (_ratio(tp, tp + fn) + _ratio(tn, tn + fp)) / 2.0, np.nan)
    f1 = np.where(both, _ratio(2 * tp, 2 * tp + fp + fn), np.nan)
    auc = roc_auc(probs, labels)
    union = (pred | truth).sum(axis=1)  # (N,)
    jaccard = np.where(union > 0, (pred & truth).sum(axis=1) / np.maximum(union, 1), 1.0)  # (N,)
    out: dict[str, float] = {}
    for i, name in enumerate(names):
        out[f"wa/{name}"] = float(wa[i])
        out[f"f1/{name}"] = float(f1[i])
        out[f"auc/{name}"] = float(auc[i])
    out["wa"] = _nanmean(wa)
    out["f1"] = _nanmean(f1)
    out["auc"] = _nanmean(auc)
    out["micro_f1"] = float(_ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum()))
    out["jaccard"] = float(jaccard.mean()) if jaccard.size else float("nan")
    return out
