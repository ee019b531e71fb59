"""`avemo prepare` through the real command line, and its manifest through `avemo extract`'s
planning and a real extraction on the session's Ray cluster (unlabelled stays null in shards)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from avemo_core.labels import EMOTIONS
from jobs.cli import main
from pipelines.extract.run import ExtractConfig, plan_extract, run_extract
from tests.avemo_core import corpus_layouts
from tests.avemo_core.corpus_layouts import Copier


def _avemo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def emodb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("emodb")
    corpus_layouts.emodb(root, Copier(tmp_path_factory.mktemp("cache")))
    (root / "wav" / "notes.wav").write_bytes(b"")  # a name that does not parse
    return root


def test_prepare_writes_the_manifest_and_reports_it(emodb: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "out" / "emodb.csv"
    result = _avemo("prepare", "emodb", str(emodb), str(manifest))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(
        r"emodb: 70 files in \d+\.\d s: 42 train \(6 speakers\), 14 valid \(2 speakers\), "
        r"14 test \(2 speakers\)",
        lines[0],
    ), lines[0]
    assert lines[1] == "skipped 1 unparsed, e.g. wav/notes.wav"
    assert lines[2:] == [f"manifest: {manifest}", f"metadata: {tmp_path / 'out/emodb.meta.json'}"]
    assert "read the length of 70/70 files" in result.stderr
    assert len(manifest.read_text().splitlines()) == 71


@pytest.mark.parametrize("inside", [True, False])
def test_extract_finds_every_file_of_the_manifest(
    emodb: Path, tmp_path: Path, inside: bool
) -> None:
    manifest = (emodb if inside else tmp_path) / f"m{inside}.csv"
    assert main(["prepare", "emodb", str(emodb), str(manifest)]) == 0
    config = ExtractConfig(
        input_uri=str(emodb), output_uri=str(tmp_path / "shards"), manifest_uri=str(manifest)
    )
    plan = plan_extract(config, {})
    assert (len(plan.files), plan.missing, plan.not_in_manifest) == (
        70,
        [],
        1,
    )  # notes.wav: media, not in the manifest


def test_extracted_shards_keep_unlabelled_as_null(ray_cluster: None, tmp_path: Path) -> None:
    corpus = tmp_path / "cremad"
    corpus_layouts.cremad(corpus, Copier(tmp_path / "cache"), speakers=range(1001, 1004))
    manifest = corpus / "manifest.csv"
    assert main(["prepare", "cremad", str(corpus), str(manifest)]) == 0
    out = tmp_path / "shards"
    summary = run_extract(
        ExtractConfig(input_uri=str(corpus), output_uri=str(out), manifest_uri=str(manifest))
    )["summary"]
    assert (summary["files_extracted"], summary["files_failed"]) == (20, 0)
    rows = [r for p in sorted(out.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert len(rows) == 20 and {r["split"] for r in rows} == {"train", "valid", "test"}
    assert all(r["surprise"] is None for r in rows)
    angry = [r for r in rows if r["source_uri"].endswith("_ANG_XX.wav")]
    assert len(angry) == 3
    assert all([r[e] for e in EMOTIONS] == [0, 0, 1, 0, 0, None] for r in angry)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["ravdess", "{corpus}", "{out}/m.csv"],
            "no RAVDESS files (MM-VV-EE-II-SS-RR-AA.wav) found",
        ),
        (["meld", "{corpus}", "{out}/m.csv"], "no MELD label files"),
        (["emodb", "{out}/nowhere", "{out}/m.csv"], "corpus folder not found"),
        (
            ["ravdess", "{corpus}", "{out}/m.csv", "--test-fraction", "0.2"],
            "ravdess has a fixed split",
        ),
        (
            [
                "cremad",
                "{corpus}",
                "{out}/m.csv",
                "--valid-fraction",
                "0.6",
                "--test-fraction",
                "0.5",
            ],
            "< 1",
        ),
        (["emodb", "{corpus}", "s3://bucket/m.csv"], "must be local paths"),
        (["emodb", "{corpus}", "{out}"], "is a folder"),
        (["emodb", "{corpus}", "{out}/m.csv", "--workers", "0"], "workers must be >= 1"),
    ],
)
def test_bad_input_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    corpus = tmp_path / "corpus"
    corpus_layouts.tone_wav(corpus / "speech" / "hello.wav")
    argv = [a.format(corpus=corpus, out=tmp_path) for a in args]
    assert main(["prepare", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avemo prepare: error: ") and needle in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.csv").exists()


def test_unknown_corpus_is_a_usage_error_and_help_shows_defaults(tmp_path: Path) -> None:
    result = _avemo("prepare", "timit", str(tmp_path), str(tmp_path / "m.csv"))
    assert result.returncode == 2 and "invalid choice: 'timit'" in result.stderr
    assert "Traceback" not in result.stderr
    help_text = " ".join(_avemo("prepare", "--help").stdout.split())
    assert "(default: 4)" in help_text and "cremad 0.1, emodb 0.2" in help_text
    assert "avemo prepare ravdess" in help_text  # the docstring's example
