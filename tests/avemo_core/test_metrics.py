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

from avemo_core.config import ConfigError
from avemo_core.labels import EMOTIONS
from avemo_core.metrics import (
    FALLBACK_THRESHOLD,
    ThresholdConfig,
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


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_single_class_emotions_are_undefined_and_left_out_of_every_macro_mean(seed: int) -> None:
    probs, labels = random_case(seed, n=50)
    labels[:, 0] = 0.0  # no positives: the corpus lacks it
    labels[:, 1] = 1.0  # no negatives
    thresholds = np.full(len(EMOTIONS), 0.5)
    got = emotion_metrics(probs, labels, thresholds)
    for name in EMOTIONS[:2]:
        for metric in ("wa", "f1", "auc"):
            assert math.isnan(got[f"{metric}/{name}"]), (metric, name)
    # The rest match scikit-learn, and each macro mean is theirs alone.
    pred = probs >= 0.5
    rest = range(2, len(EMOTIONS))
    wa = [balanced_accuracy_score(labels[:, e], pred[:, e]) for e in rest]
    f1 = [f1_score(labels[:, e], pred[:, e], zero_division=np.nan) for e in rest]
    auc = [roc_auc_score(labels[:, e], probs[:, e]) for e in rest]
    for e, w, f, a in zip(rest, wa, f1, auc, strict=True):
        name = EMOTIONS[e]
        assert (got[f"wa/{name}"], got[f"f1/{name}"]) == pytest.approx((w, f), abs=1e-12)
        assert got[f"auc/{name}"] == pytest.approx(a, abs=1e-12)
    assert got["wa"] == pytest.approx(np.mean(wa), abs=1e-12)
    assert got["f1"] == pytest.approx(np.mean(f1), abs=1e-12)
    assert got["auc"] == pytest.approx(np.mean(auc), abs=1e-12)


def test_an_absent_emotion_does_not_lift_the_mean_wa() -> None:
    # The case: an emotion with no positives used to score WA 1.0 (every clip rejected).
    labels = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    probs = np.array([[0.9, 0.1], [0.6, 0.2], [0.4, 0.1], [0.2, 0.3]])
    got = emotion_metrics(probs, labels, np.array([0.5, 0.5]), names=["a", "b"])
    assert math.isnan(got["wa/b"]) and math.isnan(got["f1/b"])
    assert got["wa"] == got["wa/a"] == pytest.approx(0.5)
    assert got["f1"] == got["f1/a"] == pytest.approx(0.5)
    # Its false alarms still count in the pooled micro-F1: they are real predictions.
    got = emotion_metrics(probs, labels, np.array([0.5, 0.15]), names=["a", "b"])
    assert math.isnan(got["f1/b"])
    assert got["micro_f1"] == pytest.approx(f1_score(labels, probs >= [0.5, 0.15], average="micro"))


def test_emotion_without_positives_is_undefined_whatever_is_predicted() -> None:
    labels = np.array([[0.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    probs = np.array([[0.1, 0.9], [0.2, 0.1], [0.3, 0.8]])
    for cut in (0.5, 0.25):  # nothing predicted, or one false alarm: undefined either way
        got = emotion_metrics(probs, labels, np.array([cut, 0.5]), names=["a", "b"])
        assert math.isnan(got["f1/a"]) and math.isnan(got["wa/a"]) and math.isnan(got["auc/a"])
        assert got["f1/b"] == 1.0 and got["wa/b"] == 1.0
        assert got["f1"] == 1.0 and got["wa"] == 1.0  # left out, not counted as 0 or 1


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


def overfit_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The old rule, as a reference: the exact F1-optimal cut over every distinct score."""
    out = []
    for e in range(probs.shape[1]):
        cuts = np.unique(probs[:, e])
        f1 = [f1_score(labels[:, e], probs[:, e] >= t, zero_division=0.0) for t in cuts]
        out.append(cuts[int(np.argmax(f1))])
    return np.array(out)


def sample_scores(rng: np.random.Generator, n: int, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1) labels at `rate` and scores of a mediocre model: positives ~0.55, negatives ~0.3."""
    labels = (rng.random((n, 1)) < rate).astype(np.float64)
    probs = np.clip(rng.normal(0.3 + 0.25 * labels, 0.15), 0.001, 0.999)
    return probs, labels


def test_few_positives_keep_the_fallback_where_the_old_rule_overfit() -> None:
    # 130 validation clips, 4 positives scored low by chance: the exact optimum sits on them.
    rng = np.random.default_rng(3)
    probs, labels = sample_scores(rng, 130, 0.0)
    labels[:4] = 1.0
    probs[:4, 0] = [0.06, 0.08, 0.11, 0.07]
    probs[4:, 0] = np.clip(probs[4:, 0], 0.12, None)
    assert overfit_thresholds(probs, labels)[0] <= 0.06  # the old rule: 0.06, tags nearly all
    assert tune_thresholds(probs, labels)[0] == FALLBACK_THRESHOLD
    config = ThresholdConfig(min_positives=3)
    assert tune_thresholds(probs, labels, config)[0] >= config.lowest  # clamped even if tuned


def test_tuned_thresholds_hold_up_on_new_data_better_than_the_exact_optimum() -> None:
    # Many small validation splits from one model; each threshold judged on a large test set.
    rng = np.random.default_rng(0)
    test_probs, test_labels = sample_scores(rng, 20000, 0.15)
    old, new = [], []
    for _ in range(60):
        probs, labels = sample_scores(rng, 130, 0.15)
        for rule, out in ((overfit_thresholds, old), (tune_thresholds, new)):
            threshold = rule(probs, labels)[0]
            out.append(f1_score(test_labels[:, 0], test_probs[:, 0] >= threshold))
    assert np.mean(new) > np.mean(old)
    assert np.std(new) < np.std(old)  # and it depends less on which clips the split drew


def test_threshold_is_the_best_smoothed_grid_point() -> None:
    rng = np.random.default_rng(5)
    probs, labels = sample_scores(rng, 4000, 0.3)
    config = ThresholdConfig(smooth_points=1)  # no smoothing: the best grid point itself
    threshold = tune_thresholds(probs, labels, config)[0]
    grid = config.grid()
    f1 = [f1_score(labels[:, 0], probs[:, 0] >= t) for t in grid]
    assert threshold == pytest.approx(grid[int(np.argmax(f1))])
    assert config.lowest <= tune_thresholds(probs, labels)[0] <= config.highest
    # F-beta with beta > 1 favours recall: a lower threshold.
    assert tune_thresholds(probs, labels, ThresholdConfig(beta=3.0))[0] < threshold


def test_tuned_thresholds_beat_one_half_on_a_skewed_case() -> None:
    # A model whose scores are informative but all below 0.5: at 0.5 it predicts nothing.
    rng = np.random.default_rng(5)
    labels = (rng.random((400, 3)) < 0.1).astype(np.float64)
    probs = 0.05 + 0.3 * labels * rng.random(labels.shape) + 0.1 * rng.random(labels.shape)
    thresholds = tune_thresholds(probs, labels)
    tuned = emotion_metrics(probs, labels, thresholds, names=["a", "b", "c"])
    fixed = emotion_metrics(probs, labels, np.full(3, 0.5), names=["a", "b", "c"])
    assert (thresholds < 0.5).all()
    assert tuned["micro_f1"] > 0.5 and fixed["micro_f1"] == 0.0
    assert tuned["wa"] > fixed["wa"] + 0.2


def test_threshold_falls_back_without_enough_positives_or_negatives() -> None:
    probs, labels = random_case(3, n=60)
    labels[:, 2] = 0.0
    labels[:, 3] = 1.0
    labels[:9, 4], labels[9:, 4] = 1.0, 0.0  # 9 positives: one short of the default 10
    thresholds = tune_thresholds(probs, labels)
    assert (thresholds[2:5] == FALLBACK_THRESHOLD).all()
    assert np.isfinite(thresholds).all()
    assert (tune_thresholds(np.zeros((0, 6)), np.zeros((0, 6))) == FALLBACK_THRESHOLD).all()


def test_threshold_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="fallback"):
        ThresholdConfig(fallback=0.95)
    with pytest.raises(ConfigError, match="odd"):
        ThresholdConfig(smooth_points=2)
    assert ThresholdConfig.from_dict(ThresholdConfig().to_dict()) == ThresholdConfig()


@pytest.mark.parametrize(
    ("probs", "labels", "message"),
    [
        (np.zeros((3, 2)), np.zeros((3, 3)), "must both be"),
        (np.full((2, 1), np.nan), np.zeros((2, 1)), "NaN"),
        (np.zeros((2, 1)), np.full((2, 1), 0.5), "0/1"),
        (np.zeros((2, 1)), np.full((2, 1), 2.0), "0/1"),
    ],
)
def test_bad_inputs_are_refused(probs: np.ndarray, labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tune_thresholds(probs, labels)


def test_wrong_threshold_count_is_refused() -> None:
    probs, labels = random_case(0, n=10)
    with pytest.raises(ValueError, match="thresholds"):
        emotion_metrics(probs, labels, np.full(5, 0.5))


def test_unlabelled_entries_count_nowhere() -> None:
    """NaN labels (an emotion a corpus does not annotate) are left out per emotion: the metrics
    equal those computed on each emotion's labelled rows alone."""
    rng = np.random.default_rng(3)
    probs = rng.random((80, 3))
    labels = (rng.random((80, 3)) < 0.4).astype(np.float64)
    partial = labels.copy()
    partial[:30, 1] = np.nan  # emotion 1 unlabelled on the first 30 clips
    partial[:, 2] = np.nan  # emotion 2 never labelled (as surprise in CREMA-D)
    thresholds = np.full(3, 0.5)
    out = emotion_metrics(probs, partial, thresholds, names=("x", "y", "z"))
    alone = emotion_metrics(probs[30:, 1:2], labels[30:, 1:2], thresholds[:1], names=("y",))
    full = emotion_metrics(probs[:, :1], labels[:, :1], thresholds[:1], names=("x",))
    for metric in ("wa", "f1", "auc"):
        assert out[f"{metric}/y"] == pytest.approx(alone[f"{metric}/y"])
        assert out[f"{metric}/x"] == pytest.approx(full[f"{metric}/x"])
        assert np.isnan(out[f"{metric}/z"])
        assert out[metric] == pytest.approx((full[f"{metric}/x"] + alone[f"{metric}/y"]) / 2)
    tuned = tune_thresholds(probs, partial, ThresholdConfig(min_positives=5))
    assert (
        tuned[1]
        == tune_thresholds(probs[30:, 1:2], labels[30:, 1:2], ThresholdConfig(min_positives=5))[0]
    )
    assert tuned[2] == ThresholdConfig().fallback
