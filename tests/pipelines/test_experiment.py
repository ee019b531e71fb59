"""One model of the experiment grid through the real path: a Ray Train run tracked in a real
`mlflow server`, tagged with the experiment, then evaluated on the test split (never trained on)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from avemo_core.checkpoint import load_checkpoint
from avemo_core.labels import EMOTIONS
from avemo_core.synth.shards import ShardSpec, make_rows, write_clip_shards
from pipelines import experiment, tracking
from pipelines.datasets import LocalBatches, inspect_shards

SPEC = ShardSpec(clips=60, audio_frames=(16, 40), visual_frames=(2, 5), seed=5)
CONFIG = experiment.ExperimentConfig(name="test-experiment", clips=60, seeds=(7,), epochs=1)


def test_grid_has_the_four_modes_and_both_ablations_with_one_setting_each() -> None:
    variants = {v.name: v for v in CONFIG.variants()}
    assert list(variants) == [
        "audio",
        "visual",
        "av",
        "av-dropout",
        "colearn",
        "colearn-views-only",
    ]
    assert variants["audio"].conditions == ("a",) and variants["visual"].conditions == ("v",)
    assert variants["av-dropout"].colearning.modality_dropout == CONFIG.modality_dropout
    views = variants["colearn-views-only"].colearning
    assert views.transfer_to_single == views.transfer_to_av == 0.0
    assert variants["colearn"].colearning.transfer_to_single == CONFIG.transfer_to_single > 0


def test_run_one_trains_tags_and_evaluates_on_test(
    ray_cluster: None, mlflow_uri: str, tmp_path: Path
) -> None:
    shards = tmp_path / "shards"
    write_clip_shards(shards, SPEC)
    test = LocalBatches(inspect_shards(str(shards)), "test", batch_size=16)
    variant = next(v for v in CONFIG.variants() if v.name == "colearn")
    record = experiment.run_one(CONFIG, variant, 7, str(shards), tmp_path, mlflow_uri, test)

    saved = json.loads(experiment.run_path(tmp_path, "colearn", 7).read_text())
    assert saved == json.loads(json.dumps(record))
    assert set(record["test"]) == {"av", "a", "v"}
    # Each condition scores the labelled test clips that hold its modalities, no more.
    rows = [r for r in make_rows(SPEC) if r["split"] == "test"]
    expected = {
        "av": sum(r["has_audio"] and r["has_visual"] for r in rows),
        "a": sum(r["has_audio"] for r in rows),
        "v": sum(r["has_visual"] for r in rows),
    }
    assert {c: int(s["samples"]) for c, s in record["test"].items()} == expected
    for scores in record["test"].values():
        assert all(
            0.0 <= scores[m] <= 1.0 for m in ("f1", "wa", "auc") if not math.isnan(scores[m])
        )
    # The thresholds are the checkpoint's (tuned on validation), not re-tuned on test.
    checkpoint = load_checkpoint(record["checkpoint"])
    assert set(checkpoint.thresholds) == {"av", "a", "v"}
    assert checkpoint.metadata["data_fingerprint"] == inspect_shards(str(shards)).fingerprint

    run = tracking.client(mlflow_uri).get_run(record["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["avemo.experiment"] == "test-experiment"
    assert run.data.tags["avemo.variant"] == "colearn"
    assert run.data.tags["avemo.seed"] == "7"
    assert run.data.params["colearning.mode"] == "colearn"
    assert run.data.params["train.seed"] == "7"


def test_config_rejects_repeated_seeds() -> None:
    with pytest.raises(ValueError, match="seeds"):
        experiment.ExperimentConfig(seeds=(1, 1))


def test_compact_shards_keeps_rows_schema_metadata_and_fingerprint(tmp_path: Path) -> None:
    source = tmp_path / "shards"
    write_clip_shards(source, ShardSpec(clips=30, files=6, seed=2))
    target = experiment.compact_shards(source, tmp_path / "compact", rows_per_file=12)
    before, after = inspect_shards(str(source)), inspect_shards(str(target))
    assert len(after.files) == 3 and after.counts == before.counts
    assert after.fingerprint == before.fingerprint
    assert after.feature_config == before.feature_config
    assert (target / "_SUCCESS.json").read_text() == (source / "_SUCCESS.json").read_text()


def test_a_run_is_claimed_once_and_a_dead_claim_is_taken_over(tmp_path: Path) -> None:
    record = experiment.run_path(tmp_path, "colearn", 0)
    assert experiment._claim(record) is True
    assert experiment._claim(record) is False  # held by this (live) process
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    record.with_suffix(".claim").write_text(dead)
    assert experiment._claim(record) is True


def test_all_present_f1_is_the_f1_of_predicting_every_emotion(tmp_path: Path) -> None:
    write_clip_shards(tmp_path, SPEC)
    floor = experiment.all_present_f1(str(tmp_path))
    rows = [r for r in make_rows(SPEC) if r["split"] == "test" and r["has_audio"]]
    rates = [sum(r[e] > 0 for r in rows) / len(rows) for e in EMOTIONS]
    assert floor["a"] == pytest.approx(sum(2 * p / (1 + p) for p in rates) / len(rates))
    assert set(floor) == {"av", "a", "v"}
