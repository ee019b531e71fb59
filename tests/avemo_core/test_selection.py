"""The selection score: the mean validation macro-F1 over the trained conditions the data score."""

from __future__ import annotations

import math

import pytest

from avemo_core.selection import Selection, selection_score


def test_selection_score_averages_the_trained_conditions_it_can_score() -> None:
    metrics = {"av/f1": 0.9, "a/f1": 0.6, "v/f1": float("nan")}
    colearn = selection_score("colearn", metrics)
    assert colearn.score == pytest.approx(0.75) and colearn.conditions == ("av", "a")
    assert selection_score("av", metrics) == Selection(pytest.approx(0.9), ("av",))
    assert selection_score("audio", metrics).score == pytest.approx(0.6)
    # An audio-only validation split forms only `a`: colearn is scored on it alone, not a / 3.
    audio_only = {"a/f1": 0.45, "a/samples": 20.0}
    assert selection_score("colearn", audio_only) == Selection(pytest.approx(0.45), ("a",))
    nothing = selection_score("visual", audio_only)
    assert math.isnan(nothing.score) and nothing.conditions == ()
