"""The silence setting through the extraction job: reachable from `avemo extract`, recorded in the
shard metadata and the done-marker fingerprint, so a changed setting re-extracts and an unchanged
one does not; a muted track gives visual-only clips."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.cli import main as cli_main
from tests.pipelines import media_factory as mf


def rows_by_name(out: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for path in sorted(out.glob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            rows.setdefault(Path(row["source_uri"]).name, []).append(row)
    return rows


def extract(corpus: Path, out: Path, *flags: str) -> dict:
    args = ["extract", str(corpus), str(out), "--window-s", "1", *flags]
    assert cli_main(args) == 0
    return json.loads((out / "_SUCCESS.json").read_text())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("presence")
    mf.talking_head_with_audio(folder / "muted.mp4", "anullsrc=r=48000:cl=stereo")
    # white noise at about -50 dBFS RMS: audio at the default -60 dBFS floor, silence at -40
    mf.talking_head_with_audio(folder / "quiet.mp4", "anoisesrc=a=0.0055:c=white:r=16000")
    return folder


def test_silence_threshold_is_a_setting_that_re_extracts(
    ray_cluster: None, corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = extract(corpus, out)
    assert first["summary"]["files_extracted"] == 2
    rows = rows_by_name(out)
    assert [r["has_audio"] for r in rows["muted.mp4"]] == [False, False]  # a muted track
    assert all(r["has_visual"] and r["audio_active_ratio"] == 0.0 for r in rows["muted.mp4"])
    assert all(r["has_audio"] and r["audio_active_ratio"] > 0.9 for r in rows["quiet.mp4"])
    meta = json.loads(pq.read_schema(next(out.glob("*.parquet"))).metadata[b"avemo.config"])
    assert meta["activity"]["floor_dbfs"] == -60.0
    assert meta["activity"]["min_active_ratio"] == 0.02
    assert first["extractor"]["activity"]["floor_dbfs"] == -60.0

    same = extract(corpus, out, "--silence-dbfs", "-60")
    assert (same["summary"]["files_extracted"], same["summary"]["files_skipped"]) == (0, 2)

    stricter = extract(corpus, out, "--silence-dbfs", "-40")
    assert (stricter["summary"]["files_extracted"], stricter["summary"]["files_skipped"]) == (2, 0)
    rows = rows_by_name(out)
    assert all(not r["has_audio"] and r["audio_active_ratio"] == 0.0 for r in rows["quiet.mp4"])
    meta = json.loads(pq.read_schema(next(out.glob("*.parquet"))).metadata[b"avemo.config"])
    assert meta["activity"]["floor_dbfs"] == -40.0

    ratio = extract(corpus, out, "--silence-dbfs", "-40", "--min-active-ratio", "0.5")
    assert ratio["summary"]["files_extracted"] == 2
    assert ratio["extractor"]["activity"]["min_active_ratio"] == 0.5


def test_bad_silence_settings_give_one_line(
    tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["extract", str(corpus), str(tmp_path / "o"), "--silence-dbfs", "3"]) == 2
    assert "silence_dbfs must be < 0" in capsys.readouterr().err
    assert cli_main(["extract", str(corpus), str(tmp_path / "o"), "--min-active-ratio", "2"]) == 2
    assert "min_active_ratio must be in [0, 1]" in capsys.readouterr().err
