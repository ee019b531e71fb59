"""The demo's match score: Jaccard of predicted tags against the truth, per clip or file."""

from __future__ import annotations

import math

import pytest

from jobs.demo_report import jaccard, mean_jaccard


@pytest.mark.parametrize(
    ("predicted", "truth", "expected"),
    [
        (["anger"], ["anger"], 1.0),
        (["anger", "fear"], ["anger"], 0.5),  # one extra tag halves it
        (["anger"], ["anger", "fear"], 0.5),  # one missed tag too
        (["happiness", "anger", "fear"], ["anger", "fear", "surprise"], 0.5),  # 2 of 4
        (["sadness"], ["anger"], 0.0),
        ([], ["anger"], 0.0),
        ([], [], 1.0),  # nothing tagged, nothing there: they agree
        (["anger", "anger"], ["anger"], 1.0),  # sets, not lists
    ],
)
def test_jaccard_is_intersection_over_union(
    predicted: list[str], truth: list[str], expected: float
) -> None:
    assert jaccard(predicted, truth) == pytest.approx(expected)


def test_tagging_every_emotion_scores_low_on_a_one_emotion_truth() -> None:
    every = ["happiness", "sadness", "anger", "fear", "disgust", "surprise"]
    assert jaccard(every, ["anger"]) == pytest.approx(1 / 6)


def test_mean_jaccard_averages_the_pairs_and_is_nan_for_none() -> None:
    pairs = [(["anger"], ["anger"]), (["anger", "fear"], ["anger"]), (["sadness"], ["anger"])]
    assert mean_jaccard(pairs) == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert math.isnan(mean_jaccard([]))
