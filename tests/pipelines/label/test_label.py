"""`pipelines.label.run` on the shared Ray cluster: clip shards and real media (ffmpeg) in, label
shards and per-media tags out; incremental reruns; a checkpoint or registry version pinned per
run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from avemo_core.checkpoint import load_checkpoint
from avemo_core.data import batch_from_columns
from avemo_core.labels import CONDITION_MODALITIES, EMOTIONS
from avemo_core.model import ModelConfig
from avemo_core.schema import label_schema, media_id_for
from avemo_core.synth.shards import ShardSpec, make_rows, write_clip_shards
from pipelines.label.run import LabelConfig, LabelError, run_label
from pipelines.label.store import LabelStore
from pipelines.train import datasets
from tests.pipelines import media_factory
from tests.pipelines.label.helpers import check_label_rows, probs, write_checkpoint

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("model") / "checkpoint")


def _config(
    source: Path | str, out: Path | str, model: Path | str, **changes: object
) -> LabelConfig:
    return LabelConfig(input_uri=str(source), output_uri=str(out), model_uri=str(model), **changes)


def _direct_probabilities(model: torch.nn.Module, row: dict, condition: str) -> np.ndarray:
    """The model run on this one clip alone: what the pipeline must reproduce."""
    batch = batch_from_columns({key: [value] for key, value in row.items()})
    with torch.inference_mode():
        return torch.sigmoid(model(batch, condition))[0].numpy()


def test_shards_get_every_condition_their_clips_support(tmp_path: Path, checkpoint: Path) -> None:
    spec = ShardSpec(clips=20, files=2, audio_only_share=0.25, visual_only_share=0.25)
    write_clip_shards(tmp_path / "shards", spec)
    lines: list[str] = []
    success = run_label(
        _config(tmp_path / "shards", tmp_path / "out", checkpoint, media_per_part=6), lines.append
    )

    store = LabelStore(str(tmp_path / "out"))
    labels = store.read_labels()
    rows = {row["clip_id"]: row for row in make_rows(spec)}
    assert sorted(labels.column("clip_id").to_pylist()) == sorted(rows)
    assert labels.schema.equals(label_schema(), check_metadata=False)
    check_label_rows(labels)
    for i, clip_id in enumerate(labels.column("clip_id").to_pylist()):
        row = rows[clip_id]
        expected = {(True, True): "audio+visual", (True, False): "audio", (False, True): "visual"}
        assert (
            labels.column("modalities")[i].as_py()
            == expected[(row["has_audio"], row["has_visual"])]
        )
    # Batching, padding and the shared encoder pass change nothing: each clip alone gives the same.
    model = load_checkpoint(checkpoint).model
    for i, clip_id in enumerate(labels.column("clip_id").to_pylist()[:8]):
        row = rows[clip_id]
        for condition, (needs_audio, needs_visual) in CONDITION_MODALITIES.items():
            if (row["has_audio"] or not needs_audio) and (row["has_visual"] or not needs_visual):
                got = probs(labels.slice(i, 1), condition)[0]
                np.testing.assert_allclose(
                    got, _direct_probabilities(model, row, condition), atol=1e-5
                )

    version = success["model"]["model_version"]
    assert version.startswith("sha256:") and set(labels.column("model_version").to_pylist()) == {
        version
    }
    assert success["media_labelled"] == 20 and success["clips_labelled"] == 20
    assert success["parts"] >= 2, "media_per_part=6 must commit in several parts"
    assert len(list((tmp_path / "out" / "labels").glob("part-*.parquet"))) == success["parts"]
    assert (
        json.loads((tmp_path / "out" / "_SUCCESS.json").read_text())["run_id"] == success["run_id"]
    )
    media = store.read_media()
    assert sorted(media.column("media_id").to_pylist()) == sorted(
        {r["media_id"] for r in rows.values()}
    )
    assert any("committed part" in line for line in lines)


def test_rerun_labels_only_new_media_and_other_models_when_asked(
    tmp_path: Path, checkpoint: Path
) -> None:
    source, out = tmp_path / "shards", tmp_path / "out"
    write_clip_shards(source, ShardSpec(clips=10, seed=1))
    assert run_label(_config(source, out, checkpoint))["media_labelled"] == 10
    parts = sorted(p.name for p in (out / "labels").iterdir())

    again = run_label(_config(source, out, checkpoint))
    assert (again["media_labelled"], again["media_skipped"]) == (0, 10)
    assert sorted(p.name for p in (out / "labels").iterdir()) == parts

    write_clip_shards(source / "arrived-later", ShardSpec(clips=6, seed=2))
    more = run_label(_config(source, out, checkpoint))
    assert (more["media_labelled"], more["media_skipped"]) == (6, 10)
    store = LabelStore(str(out))
    ids = store.read_labels(latest=False).column("clip_id").to_pylist()
    assert len(ids) == len(set(ids)) == 16

    other = write_checkpoint(tmp_path / "other", seed=1)
    kept = run_label(_config(source, out, other))
    assert (kept["media_labelled"], kept["media_skipped"]) == (0, 16)
    relabelled = run_label(_config(source, out, other, relabel_older=True))
    assert relabelled["media_labelled"] == 16
    latest = store.read_labels()
    assert latest.num_rows == 16
    assert set(latest.column("model_version").to_pylist()) == {relabelled["model"]["model_version"]}
    assert store.read_labels(latest=False).num_rows == 32  # history stays, newest wins
    assert store.read_media().num_rows == 16


def _register(client, name: str, checkpoint: Path) -> str:  # noqa: ANN001 (MlflowClient)
    """Log a checkpoint into a new run and register it as the next version of `name`."""
    import mlflow

    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(checkpoint), artifact_path="checkpoint")
    version = client.create_model_version(
        name, source=f"{run.info.artifact_uri}/checkpoint", run_id=run.info.run_id
    )
    return str(version.version)


def test_registry_alias_pins_one_version_and_older_labels_are_replaced(
    tmp_path: Path, checkpoint: Path, mlflow_uri: str
) -> None:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(mlflow_uri)
    client = MlflowClient(mlflow_uri)
    name = "avemo-label-test"
    client.create_registered_model(name)
    first = _register(client, name, checkpoint)
    second = _register(client, name, write_checkpoint(tmp_path / "second", seed=3))
    source, out = tmp_path / "shards", tmp_path / "out"
    write_clip_shards(source, ShardSpec(clips=8, seed=4))
    champion = f"models:/{name}@champion"

    client.set_registered_model_alias(name, "champion", first)
    run1 = run_label(_config(source, out, champion, mlflow_uri=mlflow_uri))
    assert run1["model"]["model_version"] == first and run1["model"]["model_run_id"]
    client.set_registered_model_alias(name, "champion", second)
    assert run_label(_config(source, out, champion, mlflow_uri=mlflow_uri))["media_labelled"] == 0
    run3 = run_label(_config(source, out, champion, mlflow_uri=mlflow_uri, relabel_older=True))
    assert (run3["media_labelled"], run3["model"]["model_version"]) == (8, second)
    # Going back to an older version never overwrites newer labels.
    old = run_label(
        _config(source, out, f"models:/{name}/{first}", mlflow_uri=mlflow_uri, relabel_older=True)
    )
    assert old["media_labelled"] == 0
    labels = LabelStore(str(out)).read_labels()
    assert set(labels.column("model_version").to_pylist()) == {second}
    assert set(labels.column("model_name").to_pylist()) == {name}


def test_media_input_extracts_in_the_same_job(tmp_path: Path, checkpoint: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    # a video is visual input only where it shows a face: talking heads, not test patterns
    media_factory.talking_head_mp4(media / "both.mp4", 2.6)
    media_factory.mp4(media / "voice.mp4", 2.0, video=False)
    media_factory.talking_head_mp4(media / "face.mp4", 3.0, audio=False)
    (media / "broken.mp4").write_bytes(b"\x00not a media file" * 64)
    out = tmp_path / "out"
    success = run_label(_config(media, out, checkpoint, media_per_part=1))

    assert success["input_kind"] == "media"
    assert (success["media"], success["media_labelled"], success["media_failed"]) == (4, 3, 1)
    error = json.loads(
        (out / "_errors" / f"{media_id_for(str(media / 'broken.mp4'))}.json").read_text()
    )
    assert error["stage"] == "probe" and error["uri"].endswith("broken.mp4")
    store = LabelStore(str(out))
    labels = store.read_labels()
    check_label_rows(labels)
    by_file: dict[str, list[int]] = {}
    for i, uri in enumerate(labels.column("source_uri").to_pylist()):
        by_file.setdefault(Path(uri).name, []).append(i)
    assert {name: len(rows) for name, rows in by_file.items()} == {
        "both.mp4": 3,
        "voice.mp4": 2,
        "face.mp4": 3,
    }
    expected = {"both.mp4": "audio+visual", "voice.mp4": "audio", "face.mp4": "visual"}
    for name, rows in by_file.items():
        assert {labels.column("modalities")[i].as_py() for i in rows} == {expected[name]}

    summary = store.read_media()
    assert summary.num_rows == 3
    for row in summary.to_pylist():
        rows = by_file[Path(row["source_uri"]).name]
        clip_tags = [labels.column("tags")[i].as_py() for i in rows]
        assert row["modalities"] == expected[Path(row["source_uri"]).name]
        assert row["clips"] == len(rows)
        assert row["tags"] == [e for e in EMOTIONS if any(e in tags for tags in clip_tags)]
        condition = labels.column("tags_condition")[rows[0]].as_py()
        fullest = probs(labels.take(pa.array(rows)), condition)  # (clips, E)
        np.testing.assert_allclose(
            [row[f"max_prob_{e}"] for e in EMOTIONS], fullest.max(axis=0), rtol=1e-6
        )

    media_factory.mp4(media / "new.mp4", 1.5)
    rerun = run_label(_config(media, out, checkpoint))
    assert (rerun["media_labelled"], rerun["media_skipped"], rerun["media_failed"]) == (1, 3, 1)


def test_nothing_to_label_is_a_clear_error(tmp_path: Path, checkpoint: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(LabelError, match="no media files or clip shards"):
        run_label(_config(tmp_path / "empty", tmp_path / "out", checkpoint))
    with pytest.raises(LabelError, match="not a directory"):
        run_label(_config(tmp_path / "empty", tmp_path / "out", tmp_path / "no-such-model"))


def test_cli_reports_a_bad_model_in_one_line(tmp_path: Path) -> None:
    argv = ["label", str(tmp_path), str(tmp_path / "out"), "--model", "models:/x"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs",
            *argv,
            "--mlflow-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        "avemo label: error: models:/x: expected models:/NAME@ALIAS, models:/NAME/VERSION or "
        "runs:/RUN/PATH"
    ]


def test_shards_that_name_speakers_are_labelled_with_their_statistics(tmp_path: Path) -> None:
    config = ModelConfig.named("tiny", utterance_functionals=True, functionals_norm="speaker")
    model_dir = write_checkpoint(tmp_path / "speaker-model", config=config)
    spec = ShardSpec(clips=18, files=2, speakers=3, audio_only_share=0.0, visual_only_share=0.0)
    write_clip_shards(tmp_path / "shards", spec)
    lines: list[str] = []
    run_label(_config(tmp_path / "shards", tmp_path / "out", model_dir), lines.append)
    assert "label: standardised per speaker (3 speakers)" in lines
    labels = LabelStore(str(tmp_path / "out")).read_labels()
    table = datasets.speaker_table(datasets.inspect_shards(str(tmp_path / "shards")), None)
    assert table is not None
    model = load_checkpoint(model_dir).model
    rows = {row["clip_id"]: row for row in make_rows(spec)}
    for i, clip_id in enumerate(labels.column("clip_id").to_pylist()[:6]):
        row = rows[clip_id]
        batch = batch_from_columns({key: [value] for key, value in row.items()})
        with torch.inference_mode():
            anonymous = torch.sigmoid(model(batch, "a"))[0].numpy()
            own = torch.sigmoid(model(table.attach(batch, [row["speaker"]]), "a"))[0].numpy()
        got = probs(labels.slice(i, 1), "a")[0]
        np.testing.assert_allclose(got, own, atol=1e-5)  # its speaker's statistics, not none
        assert not np.allclose(got, anonymous, atol=1e-4)
