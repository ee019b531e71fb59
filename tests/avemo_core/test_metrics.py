"""Metrics against scikit-learn (the independent reference) on random, imbalanced, tied data."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    balanced_accuracy_score,
    f1_score,
    jaccard_score,
    roc_auc_score,
)

from avemo_core.labels import EMOTIONS
from avemo_core.metrics import (
    FALLBACK_THRESHOLD,
    decide,
    emotion_metrics,
    roc_auc,
    tune_thresholds,
)

# Positive rates per emotion, from rare to common, so every test sees strong imbalance both ways.
RATES = np.array([0.03, 0.1, 0.3, 0.5, 0.8, 0.97])


def random_case(seed: int, n: int = 300, decimals: int | None = 2) -> tuple[np.ndarray, np.ndarray]:
    """Labels at RATES and probabilities that carry some signal; rounded so that ties occur."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, len(RATES))) < RATES).astype(np.float64)  # (N, E)
    probs = np.clip(0.35 * labels + 0.65 * rng.random(labels.shape), 0.0, 1.0)  # (N, E)
    if decimals is not None:
        probs = np.round(probs, decimals)
    return probs, labels


def sklearn_quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_per_emotion_metrics_match_sklearn(seed: int) -> None:
    probs, labels = random_case(seed)
    thresholds = np.random.default_rng(100 + seed).uniform(0.2, 0.8, size=len(EMOTIONS))
    got = emotion_metrics(probs, labels, thresholds)
    pred = probs >= thresholds
    for e, name in enumerate(EMOTIONS):
        y, p = labels[:, e], pred[:, e]
        assert got[f"f1/{name}"] == pytest.approx(
            sklearn_quiet(f1_score, y, p, zero_division=np.nan), abs=1e-12
        )
        assert got[f"wa/{name}"] == pytest.approx(
            sklearn_quiet(balanced_accuracy_score, y, p), abs=1e-12
        )
        assert got[f"auc/{name}"] == pytest.approx(roc_auc_score(y, probs[:, e]), abs=1e-12)
    assert got["f1"] == pytest.approx(np.mean([got[f"f1/{n}"] for n in EMOTIONS]))
    assert got["wa"] == pytest.approx(np.mean([got[f"wa/{n}"] for n in EMOTIONS]))
    assert got["auc"] == pytest.approx(
        sklearn_quiet(roc_auc_score, labels, probs, average="macro"), abs=1e-12
    )
    assert got["micro_f1"] == pytest.approx(f1_score(labels, pred, average="micro"), abs=1e-12)
    assert got["jaccard"] == pytest.approx(
        jaccard_score(labels, pred, average="samples", zero_division=1.0), abs=1e-12
    )


def test_wa_is_the_design_formula() -> None:
    # One emotion: P = 4 positives, N = 6 negatives; TP = 3, TN = 4.
    labels = np.array([[1], [1], [1], [1], [0], [0], [0], [0], [0], [0]], np.float64)
    probs = np.array([[0.9], [0.8], [0.7], [0.1], [0.2], [0.3], [0.4], [0.1], [0.6], [0.7]])
    got = emotion_metrics(probs, labels, np.array([0.5]), names=["x"])
    tp, tn, p, n = 3, 4, 4, 6
    assert got["wa/x"] == pytest.approx((tp * n / p + tn) / (2 * n))
    assert got["f1/x"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))


def test_auc_matches_sklearn_on_continuous_scores() -> None:
    probs, labels = random_case(7, n=1000, decimals=None)
    expected = [roc_auc_score(labels[:, e], probs[:, e]) for e in range(len(EMOTIONS))]
    np.testing.assert_allclose(roc_auc(probs, labels), expected, atol=1e-12)


def test_auc_counts_ties_half() -> None:
    labels = np.array([[1.0], [0.0], [1.0], [0.0]])
    probs = np.array([[0.5], [0.5], [0.9], [0.1]])
    # Pairs (pos, neg): (0.5, 0.5) tie = 0.5, (0.5, 0.1) = 1, (0.9, *) = 1 + 1 -> 3.5 / 4.
    assert roc_auc(probs, labels)[0] == pytest.approx(3.5 / 4)


def test_single_class_emotions_are_nan_and_left_out_of_the_means() -> None:
    probs, labels = random_case(11, n=50)
    labels[:, 0] = 0.0  # no positives
    labels[:, 1] = 1.0  # no negatives
    thresholds = np.full(len(EMOTIONS), 0.5)
    got = emotion_metrics(probs, labels, thresholds)
    assert math.isnan(got["auc/happiness"]) and math.isnan(got["auc/sadness"])
    assert got["auc"] == pytest.approx(np.mean([got[f"auc/{n}"] for n in EMOTIONS[2:]]))
    pred = probs >= 0.5
    # No positives: WA is the TNR; no negatives: WA is the TPR (scikit-learn's balanced accuracy).
    assert got["wa/happiness"] == pytest.approx(np.mean(~pred[:, 0]))
    assert got["wa/sadness"] == pytest.approx(np.mean(pred[:, 1]))
    for e, name in enumerate(EMOTIONS[:2]):
        expected = sklearn_quiet(balanced_accuracy_score, labels[:, e], pred[:, e])
        assert got[f"wa/{name}"] == pytest.approx(expected)


def test_f1_without_positives_or_predictions_is_nan_not_zero() -> None:
    labels = np.array([[0.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    probs = np.array([[0.1, 0.9], [0.2, 0.1], [0.3, 0.8]])
    got = emotion_metrics(probs, labels, np.array([0.5, 0.5]), names=["a", "b"])
    assert math.isnan(got["f1/a"])
    assert got["f1/b"] == 1.0
    assert got["f1"] == 1.0  # the undefined emotion is left out, not counted as 0
    assert got["wa/a"] == 1.0  # every negative correctly rejected
    # The same emotion with one false alarm has a defined F1 of 0.
    got = emotion_metrics(probs, labels, np.array([0.25, 0.5]), names=["a", "b"])
    assert got["f1/a"] == 0.0


def test_all_nan_macro_is_nan_without_warnings() -> None:
    labels = np.zeros((4, 2))
    probs = np.full((4, 2), 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = emotion_metrics(probs, labels, np.array([0.5, 0.5]), names=["a", "b"])
    assert math.isnan(got["auc"]) and math.isnan(got["f1"]) and math.isnan(got["micro_f1"])
    assert got["jaccard"] == 1.0  # empty truth and empty prediction on every sample


def test_jaccard_per_sample() -> None:
    labels = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]], np.float64)
    pred = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 0, 0]], np.float64)
    got = emotion_metrics(pred, labels, np.full(3, 0.5), names=["a", "b", "c"])
    assert got["jaccard"] == pytest.approx((1 / 3 + 1.0 + 0.0 + 0.0) / 4)


def test_decisions_are_prob_at_least_threshold() -> None:
    probs = np.array([[0.5, 0.49999, 0.7]])
    assert decide(probs, np.array([0.5, 0.5, 0.8])).tolist() == [[True, False, False]]


def best_f1_by_brute_force(probs: np.ndarray, labels: np.ndarray) -> float:
    """Highest F1 over every distinct cut, computed by scikit-learn."""
    return max(f1_score(labels, probs >= t, zero_division=0.0) for t in np.unique(probs))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tuned_thresholds_give_the_best_f1_they_claim(seed: int) -> None:
    probs, labels = random_case(seed, n=200)
    thresholds = tune_thresholds(probs, labels)
    got = emotion_metrics(probs, labels, thresholds)
    for e, name in enumerate(EMOTIONS):
        expected = best_f1_by_brute_force(probs[:, e], labels[:, e])
        assert got[f"f1/{name}"] == pytest.approx(expected, abs=1e-12)
        assert f1_score(labels[:, e], probs[:, e] >= thresholds[e]) == pytest.approx(expected)


def test_tuned_thresholds_beat_one_half_on_a_skewed_case() -> None:
    # A model whose scores are informative but all below 0.5: at 0.5 it predicts nothing.
    rng = np.random.default_rng(5)
    labels = (rng.random((400, 3)) < 0.1).astype(np.float64)
    probs = 0.05 + 0.3 * labels * rng.random(labels.shape) + 0.1 * rng.random(labels.shape)
    thresholds = tune_thresholds(probs, labels)
    tuned = emotion_metrics(probs, labels, thresholds, names=["a", "b", "c"])
    fixed = emotion_metrics(probs, labels, np.full(3, 0.5), names=["a", "b", "c"])
    assert (thresholds < 0.5).all()
    assert tuned["micro_f1"] > 0.6 and fixed["micro_f1"] == 0.0
    assert tuned["wa"] > fixed["wa"] + 0.2


def test_threshold_sits_between_scores_and_keeps_ties_together() -> None:
    labels = np.array([[1.0], [1.0], [0.0], [0.0], [1.0]])
    probs = np.array([[0.9], [0.6], [0.6], [0.2], [0.1]])
    # Cuts: {0.9}: F1 2/4; {0.9, 0.6, 0.6}: 4/6; all: 6/8 (best). The tie at 0.6 is never split.
    assert tune_thresholds(probs, labels)[0] == pytest.approx(0.1)
    labels = np.array([[1.0], [1.0], [0.0], [0.0], [0.0]])
    threshold = tune_thresholds(probs, labels)[0]
    assert threshold == pytest.approx(0.4)  # halfway between the cut (0.6) and the next score (0.2)


def test_threshold_falls_back_without_positives() -> None:
    probs, labels = random_case(3, n=60)
    labels[:, 2] = 0.0
    thresholds = tune_thresholds(probs, labels)
    assert thresholds[2] == FALLBACK_THRESHOLD
    assert np.isfinite(thresholds).all()
    assert (tune_thresholds(np.zeros((0, 6)), np.zeros((0, 6))) == FALLBACK_THRESHOLD).all()


@pytest.mark.parametrize(
    ("probs", "labels", "message"),
    [
        (np.zeros((3, 2)), np.zeros((3, 3)), "must both be"),
        (np.full((2, 1), np.nan), np.zeros((2, 1)), "NaN"),
        (np.zeros((2, 1)), np.full((2, 1), 0.5), "0/1"),
        (np.zeros((2, 1)), np.full((2, 1), np.nan), "0/1"),
    ],
)
def test_bad_inputs_are_refused(probs: np.ndarray, labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tune_thresholds(probs, labels)


def test_wrong_threshold_count_is_refused() -> None:
    probs, labels = random_case(0, n=10)
    with pytest.raises(ValueError, match="thresholds"):
        emotion_metrics(probs, labels, np.full(5, 0.5))
