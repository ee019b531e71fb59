"""Multi-label emotion metrics per emotion and averaged: WA, F1, AUC, micro-F1, Jaccard; thresholds.

Plain vectorised numpy (scikit-learn is only the tests' reference). Arrays are (N, E): N samples,
E emotions in logit order; labels are 0/1. An emotion is decided present when prob >= threshold.

Undefined values are NaN and left out of the macro means (`np.nanmean`), never silently 0 or 1:
- WA is the mean of TPR and TNR (the design's (TP*N/P + TN)/(2N) rewritten); when an emotion has no
  positives (P = 0) or no negatives (N = 0) it is the one rate that is defined (as scikit-learn's
  balanced accuracy), NaN when both are undefined (no samples).
- F1 is NaN when an emotion has no positives and none are predicted (nothing to get right or wrong).
- AUC is NaN when an emotion has only one label value.
- Micro-F1 is NaN when no positive exists and none is predicted anywhere.
- Jaccard counts a sample with no true and no predicted emotion as 1 (both empty: a perfect match).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from avemo_core.labels import EMOTIONS

# Threshold for an emotion with no positive in the validation data: nothing to tune on.
FALLBACK_THRESHOLD = 0.5


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 probabilities and 0/1 labels of one (N, E) shape."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != labels.shape:
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} must both be (N, E)")
    if not np.isfinite(probs).all():
        raise ValueError("probs contain NaN or infinity")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("labels must be 0/1 (drop unlabelled samples first)")
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


def tune_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, E) probabilities and 0/1 labels -> (E,) per-emotion thresholds chosen on validation data.

    Every distinct probability is a candidate cut (exact, O(N log N): one sort per column); the
    cut with the highest F1 wins, ties going to the higher threshold. The threshold sits halfway
    to the next lower score, so a small shift on new data does not flip the boundary sample; the
    decisions on these data are exactly those of the chosen cut. No positives: FALLBACK_THRESHOLD.
    """
    probs, labels = _check(probs, labels)
    n = probs.shape[0]
    if n == 0:
        return np.full(probs.shape[1], FALLBACK_THRESHOLD)
    scores, ys, group_start = _sorted_desc(probs, labels)
    group_end = np.ones_like(group_start)  # (N, E): a valid cut keeps whole tie groups together
    group_end[:-1] = group_start[1:]
    positives = ys.sum(axis=0)  # (E,)
    tp = np.cumsum(ys, axis=0)  # (N, E): true positives when the top k+1 are predicted
    predicted = np.arange(1, n + 1, dtype=np.float64)[:, None]  # (N, 1)
    f1 = np.where(group_end, 2.0 * tp / (predicted + positives), -1.0)  # (N, E)
    best = np.argmax(f1, axis=0)  # (E,) first maximum = highest threshold
    cols = np.arange(probs.shape[1])
    cut = scores[best, cols]
    below = scores[np.minimum(best + 1, n - 1), cols]
    middle = (cut + below) / 2.0
    thresholds = np.where((best < n - 1) & (middle > below), middle, cut)
    return np.where(positives > 0, thresholds, FALLBACK_THRESHOLD)


def roc_auc(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(E,) ROC AUC per emotion by the rank-sum (Mann-Whitney) formula, ties counted half.

    NaN for an emotion with only one label value: its AUC is undefined.
    """
    probs, labels = _check(probs, labels)
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
    truth = labels.astype(bool)  # (N, E)
    pred = decide(probs, thresholds)  # (N, E)
    tp = (pred & truth).sum(axis=0).astype(np.float64)  # (E,)
    fp = (pred & ~truth).sum(axis=0).astype(np.float64)
    fn = (~pred & truth).sum(axis=0).astype(np.float64)
    tn = (~pred & ~truth).sum(axis=0).astype(np.float64)
    rates = np.stack([_ratio(tp, tp + fn), _ratio(tn, tn + fp)])  # (2, E): TPR, TNR
    defined = np.isfinite(rates).sum(axis=0)  # (E,)
    wa = _ratio(np.nansum(rates, axis=0), defined.astype(np.float64))
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
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
