"""One model of the experiment grid through the real path: a Ray Train run tracked in a real
`mlflow server`, tagged with the experiment, then evaluated on the test split (never trained on)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avemo_core import metrics
from avemo_core.checkpoint import Checkpoint, load_checkpoint
from avemo_core.labels import EMOTIONS
from avemo_core.model import CrossModalTransformer, ModelConfig
from avemo_core.synth.shards import ShardSpec, make_rows, write_clip_shards
from bench.common import experiment
from pipelines import tracking
from pipelines.train.datasets import LocalBatches, inspect_shards
from tests.avemo_core.model_batches import learnable_batch, random_batch

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


def test_zero_fill_replaces_the_missing_modality_with_zeros_marked_present() -> None:
    batch = random_batch(3, audio_frames=(37, 22, 0, 41), visual_frames=(9, 0, 7, 10))
    audio_only = experiment.zero_filled(batch, "a", audio_hop_s=0.01, visual_fps=5.0)
    # Rows with audio: their video is zeros over the clip's length (ceil(frames * 0.01 * 5)).
    assert audio_only.visual_mask.sum(dim=1).tolist() == [2, 2, 7, 3]
    for row in (0, 1, 3):
        assert torch.count_nonzero(audio_only.visual[row]) == 0
    # A row without audio cannot form `a`: it keeps its own video; audio is untouched everywhere.
    assert torch.equal(audio_only.visual[2, :3], batch.visual[2, :3])
    assert torch.equal(audio_only.audio, batch.audio)
    assert audio_only.has_audio.tolist() == batch.has_audio.tolist()

    visual_only = experiment.zero_filled(batch, "v", audio_hop_s=0.01, visual_fps=5.0)
    # Rows with video get 9 / 5 s, 7 / 5 s and 10 / 5 s of zero log-mel frames at 10 ms.
    assert visual_only.audio_mask.sum(dim=1).tolist() == [180, 22, 140, 200]
    for row in (0, 2, 3):
        assert torch.count_nonzero(visual_only.audio[row]) == 0
    assert torch.equal(visual_only.audio[1, :22], batch.audio[1, :22])
    assert torch.equal(visual_only.visual, batch.visual)
    with pytest.raises(ValueError, match="condition 'a' or 'v'"):
        experiment.zero_filled(batch, "av", audio_hop_s=0.01, visual_fps=5.0)


def test_zero_fill_scores_run_the_audio_visual_path_on_filled_single_modal_clips() -> None:
    torch.manual_seed(0)
    config = ModelConfig.named("tiny")
    model = CrossModalTransformer(config).eval()
    half = [0.5] * len(EMOTIONS)
    checkpoint = Checkpoint(
        model=model,
        model_config=config,
        thresholds={"av": [0.4] * len(EMOTIONS), "a": half, "v": half},
        labels=list(EMOTIONS),
        feature_config={},
        metadata={},
    )
    batches = [learnable_batch(seed) for seed in range(3)]
    for batch in batches:  # make a few rows single-modal
        batch.visual_mask[:3] = False
        batch.audio_mask[3:5] = False
    scores = experiment.zero_fill_scores(checkpoint, batches, batches)
    for condition, keep in (("a", "has_audio"), ("v", "has_visual")):
        expected_rows = sum(int(getattr(b, keep).sum()) for b in batches)
        assert scores["test_zerofill"][condition]["samples"] == expected_rows
        # By hand: the av path on the filled batch, decided with the av thresholds.
        with torch.no_grad():
            filled = [experiment.zero_filled(b, condition, 0.01, 5.0) for b in batches]
            probs = np.concatenate(
                [
                    torch.sigmoid(model(f, "av"))[getattr(b, keep)].numpy()
                    for f, b in zip(filled, batches, strict=True)
                ]
            )
        labels = np.concatenate([b.labels[getattr(b, keep)].numpy() for b in batches])
        by_hand = metrics.emotion_metrics(probs, labels, np.asarray([0.4] * len(EMOTIONS)))
        fixed = scores["test_zerofill_av_thresholds"][condition]
        assert fixed["f1"] == pytest.approx(by_hand["f1"], abs=1e-6)
        assert fixed["auc"] == pytest.approx(by_hand["auc"], abs=1e-6)
        # The skip path (the model's own `a`/`v`) gives other probabilities than zero fill.
        skip = torch.sigmoid(model(batches[0], condition))[getattr(batches[0], keep)]
        assert not torch.allclose(
            skip, torch.sigmoid(model(filled[0], "av"))[getattr(batches[0], keep)]
        )


def test_zero_fill_rows_follow_the_av_records_and_keep_its_audio_visual_cell() -> None:
    rows = experiment.variant_rows(CONFIG)
    names = [r["name"] for r in rows]
    assert names[names.index("av") + 1] == experiment.ZERO_FILL
    assert rows[names.index(experiment.ZERO_FILL)]["evaluates"] == "av"
    record = {
        "variant": "av",
        "seed": 1,
        "mode": "av",
        "test": {"av": {"f1": 0.7}, "a": {"f1": 0.6}, "v": {"f1": 0.5}},
        "test_av_thresholds": {"av": {"f1": 0.7}, "a": {"f1": 0.4}, "v": {"f1": 0.3}},
        "test_zerofill": {"a": {"f1": 0.2}, "v": {"f1": 0.1}},
        "test_zerofill_av_thresholds": {"a": {"f1": 0.15}, "v": {"f1": 0.05}},
    }
    other = {**record, "variant": "av-dropout"}
    (derived,) = experiment.evaluated_runs([record, other])
    assert derived["variant"] == experiment.ZERO_FILL and derived["seed"] == 1
    assert derived["test"] == {"av": {"f1": 0.7}, "a": {"f1": 0.2}, "v": {"f1": 0.1}}
    assert derived["test_av_thresholds"]["a"] == {"f1": 0.15}
