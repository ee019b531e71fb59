"""`avemo synth` through the real command line: a corpus on success, one clear line on bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.cli import main


def _avemo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args], capture_output=True, text=True, timeout=300
    )


def test_synth_writes_a_corpus_and_reports_it(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    result = _avemo("synth", str(out), "--clips", "7", "--seed", "5")
    assert result.returncode == 0, result.stderr
    assert "wrote 7 clips" in result.stdout
    assert "media files" in result.stderr  # progress lines go to stderr
    with (out / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7
    assert all((out / row["uri"]).is_file() for row in rows)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--clips", "0"], "--clips must be >= 1"),
        (["--clips", "-3"], "--clips must be >= 1"),
        (["--seed", "-1"], "--seed must be >= 0"),
    ],
)
def test_bad_numbers_fail_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    assert main(["synth", str(tmp_path / "corpus"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avemo synth: error: ") and needle in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "corpus").exists()


def test_out_dir_must_be_a_local_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    assert main(["synth", str(a_file)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["synth", "s3://bucket/corpus"]) == 2
    assert "local folder" in capsys.readouterr().err


def test_non_integer_clips_is_a_usage_error(tmp_path: Path) -> None:
    result = _avemo("synth", str(tmp_path), "--clips", "many")
    assert result.returncode == 2
    assert "invalid int value" in result.stderr
    assert "Traceback" not in result.stderr


def test_share_flags_reach_the_corpus(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    assert (
        main(
            [
                "synth",
                str(out),
                "--clips",
                "24",
                "--seed",
                "2",
                "--secondary-share",
                "0",
                "--valid-share",
                "0.34",
                "--test-share",
                "0.33",
            ]
        )  # fmt: skip
        == 0
    )
    config = json.loads((out / "corpus.json").read_text())["config"]
    assert config["secondary_share"] == 0.0
    assert (config["valid_share"], config["test_share"]) == (0.34, 0.33)
    with (out / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    # No secondary emotions: every labelled clip has at most one emotion present.
    emotions = [k for k in rows[0] if k not in ("uri", "start_s", "end_s", "split")]
    assert all(sum(float(row[e]) > 0 for e in emotions) <= 1 for row in rows)
    assert {row["split"] for row in rows} == {"train", "valid", "test"}


def test_share_flags_out_of_range_fail_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["synth", str(tmp_path / "corpus"), "--valid-share", "0.6", "--test-share", "0.5"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "valid_share + test_share must be < 1" in err and len(err.strip().splitlines()) == 1
