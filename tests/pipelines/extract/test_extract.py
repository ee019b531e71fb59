"""The extraction job on a real local Ray cluster with real ffmpeg: a local corpus with odd, bad and
hostile-named files, reruns, manifests, and files that vanish between listing and decoding."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from avemo_core.schema import META_CONFIG, clip_schema, media_id_for
from jobs.cli import main as cli_main
from pipelines.extract.media import MediaTask, group_tasks
from pipelines.extract.run import ExtractConfig, execute_plan, plan_extract, run_extract
from pipelines.storage import storage_options_from_env
from tests.pipelines import media_factory as mf

HOSTILE = ["-x.mp4", "$(touch pwned).mp4", "sp ace ünï 名.mp4"]
# file -> clips expected with 1 s windows
GOOD = {
    "talk.mp4": 3,  # 2.5 s: windows 0-1, 1-2, 2-2.5
    "face.mp4": 2,  # talking head made from a real photograph
    "phone.mp4": 2,  # the same, stored sideways with a display matrix (as phones record)
    "voice.wav": 2,
    "sub/silent-film.mp4": 2,
    **{name: 1 for name in HOSTILE},
}
BAD = {
    "bad/empty.mp4": ("probe", "empty_file"),
    "bad/notes.mp4": ("probe", "invalid_media"),
    "bad/noise.mkv": ("probe", "invalid_media"),
    "bad/truncated.mp4": ("decode", "truncated"),
}
# bad files that still give the clips before the point where decoding stopped: file -> clips
# (4 s cut at half its bytes: the window 0-1 s is whole, 1-2 s is not as the audio stops at 1.92 s)
PARTIAL = {"bad/truncated.mp4": 1}


def make_corpus(folder: Path) -> Path:
    (folder / "sub").mkdir(parents=True)
    mf.mp4(folder / "talk.mp4", 2.5)
    mf.talking_head_mp4(folder / "face.mp4", 2.0)
    mf.talking_head_mp4(folder / "phone.mp4", 2.0, sideways=True)
    mf.wav(folder / "voice.wav", (np.sin(np.arange(32000) / 5.0) * 8000).astype(np.int16))
    mf.talking_head_mp4(folder / "sub/silent-film.mp4", 2.0, audio=False)
    for name in HOSTILE:
        mf.mp4(folder / name, 1.0)
    mf.bad_files(folder / "bad")
    mf.mp4(folder / ".hidden.mp4", 1.0)  # hidden: not listed
    (folder / "README.txt").write_text("not media")  # not a media extension: not listed
    return folder


def shard_files(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*.parquet"))


def read_rows(out: Path) -> list[dict]:
    rows: list[dict] = []
    for path in shard_files(out):
        rows += pq.read_table(path).to_pylist()
    return rows


def config(corpus: Path, out: Path, **changes: object) -> ExtractConfig:
    base = ExtractConfig(
        input_uri=str(corpus), output_uri=str(out), window_s=1.0, rows_per_shard=2, files_per_task=4
    )
    return base.replace(**changes)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def first_run(ray_cluster: None, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("out") / "shards"
    cwd = os.getcwd()
    os.chdir(corpus)  # a shell expanding `$(touch pwned)` would create `pwned` here
    try:
        success = run_extract(config(corpus, out))
    finally:
        os.chdir(cwd)
    return {"out": out, "success": success}


def test_every_good_file_extracted_and_every_bad_one_recorded(
    first_run: dict, corpus: Path
) -> None:
    out, summary = first_run["out"], first_run["success"]["summary"]
    assert summary["files"] == len(GOOD) + len(BAD)
    assert (summary["files_extracted"], summary["files_failed"]) == (
        len(GOOD) + len(PARTIAL),
        len(BAD),
    )
    assert summary["files_partial"] == len(PARTIAL)
    assert summary["clips"] == sum(GOOD.values()) + sum(PARTIAL.values())
    rows = read_rows(out)
    per_file: dict[str, int] = {}
    for row in rows:
        per_file[row["source_uri"]] = per_file.get(row["source_uri"], 0) + 1
    assert per_file == {str(corpus / name): count for name, count in {**GOOD, **PARTIAL}.items()}
    assert len({r["clip_id"] for r in rows}) == len(rows)
    assert not (corpus / "pwned").exists() and not Path("pwned").exists()
    by_uri = {r["source_uri"]: r for r in rows}
    assert not by_uri[str(corpus / "sub/silent-film.mp4")]["has_audio"]
    assert not by_uri[str(corpus / "voice.wav")]["has_visual"]
    for name in ("face.mp4", "phone.mp4"):  # faces found with the job's detector settings
        assert all(r["face_ratio"] >= 0.9 for r in rows if r["source_uri"] == str(corpus / name))
    talk = by_uri[str(corpus / "talk.mp4")]  # a test pattern has no face: no visual input
    assert talk["face_ratio"] == 0.0 and not talk["has_visual"] and talk["visual_frames"] > 0
    assert by_uri[str(corpus / "sub/silent-film.mp4")]["has_visual"]
    errors = {
        json.loads(p.read_text())["uri"]: json.loads(p.read_text())
        for p in (out / "_errors").glob("*.json")
    }
    assert set(errors) == {str(corpus / name) for name in BAD}
    for name, (stage, kind) in BAD.items():
        record = errors[str(corpus / name)]
        assert (record["stage"], record["kind"]) == (stage, kind) and record["message"]
        assert record["media_id"] == media_id_for(str(corpus / name))
        if name in PARTIAL:  # the record names where decoding stopped, the marker too
            assert 1.5 <= record["stopped_at_s"] <= 2.5
            assert f"stopped at {record['stopped_at_s']:.2f} s" in record["message"]
            entry = next(
                m
                for path in (out / "_tasks").glob("*.json")
                for m in json.loads(path.read_text())["media"]
                if m["uri"] == record["uri"]
            )
            assert entry["status"] == "partial"
            assert entry["stopped_at_s"] == record["stopped_at_s"]
            assert entry["clips"] == PARTIAL[name]
        else:
            assert "stopped_at_s" not in record


def test_shards_follow_the_contract(first_run: dict, corpus: Path) -> None:
    out = first_run["out"]
    files = shard_files(out)
    markers = [json.loads(p.read_text()) for p in (out / "_tasks").glob("*.json")]
    # 12 listed files, about 4 per task; each task's rows (2 per file at most) span its media
    listing = [MediaTask(str(corpus / name), None) for name in sorted([*GOOD, *BAD])]
    tasks = group_tasks(sorted(listing, key=lambda m: m.uri), 4)
    assert len(markers) == len(tasks) == first_run["success"]["summary"]["tasks"]
    assert {m["task_id"] for m in markers} == {t.task_id for t in tasks}
    assert sorted(name for m in markers for name in m["parts"]) == [p.name for p in files]
    assert sum(len(m["media"]) for m in markers) == len(GOOD) + len(BAD)
    for marker in markers:
        kept = [m for m in marker["media"] if m["status"] in ("done", "partial")]
        clips = sum(m["clips"] for m in kept)
        assert len(marker["parts"]) == -(-clips // 2)  # rolled at rows_per_shard=2
        assert all(n.startswith(f"part-{marker['task_id']}-00-") for n in marker["parts"])
        sources = {
            r["source_uri"] for n in marker["parts"] for r in pq.read_table(out / n).to_pylist()
        }
        assert sources == {m["uri"] for m in kept}
    assert len(files) <= len(tasks) + sum(GOOD.values()) // 2
    expected = clip_schema()
    for path in files:
        schema = pq.read_schema(path)
        assert schema.remove_metadata().equals(expected.remove_metadata())
        stored = json.loads(schema.metadata[META_CONFIG])
        assert stored["clip"]["window_s"] == 1.0 and stored["visual"]["fps"] == 5.0
        assert pq.read_metadata(path).num_rows <= 2
    success = json.loads((out / "_SUCCESS.json").read_text())
    assert success["summary"]["clips"] == len(read_rows(out))
    assert success["extractor"]["clip"]["window_s"] == 1.0 and success["wall_s"] > 0
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_rerun_adds_nothing_and_retries_only_failures(first_run: dict, corpus: Path) -> None:
    out = first_run["out"]
    before = {p.name: p.stat().st_mtime_ns for p in shard_files(out)}
    rows_before = sorted(r["clip_id"] for r in read_rows(out))
    summary = run_extract(config(corpus, out))["summary"]
    # failed files are retried; a partial file's clips are in its task's files: it is kept
    assert (summary["files_extracted"], summary["files_skipped"]) == (0, len(GOOD) + len(PARTIAL))
    assert summary["files_failed"] == len(BAD)  # retried (or kept, partial), and still bad
    after = {p.name: p.stat().st_mtime_ns for p in shard_files(out)}
    assert after == before
    assert sorted(r["clip_id"] for r in read_rows(out)) == rows_before


def test_rerun_after_a_fix_extracts_just_that_file(
    ray_cluster: None, tmp_path: Path, corpus: Path
) -> None:
    own = tmp_path / "corpus"
    shutil.copytree(corpus, own)
    out = tmp_path / "out"
    run_extract(config(own, out))
    mf.mp4(own / "bad/notes.mp4", 1.0)  # the text file is replaced by a real video
    summary = run_extract(config(own, out))["summary"]
    assert (summary["files_extracted"], summary["files_failed"]) == (1, len(BAD) - 1)
    assert not (out / "_errors" / f"{media_id_for(str(own / 'bad/notes.mp4'))}.json").exists()
    assert sum(1 for r in read_rows(out) if r["source_uri"] == str(own / "bad/notes.mp4")) == 1


def test_manifest_segments_labels_speakers_and_missing_media(
    ray_cluster: None, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "clips").mkdir(parents=True)
    mf.mp4(corpus / "clips/a.mp4", 3.0)
    mf.mp4(corpus / "clips/unlabelled.mp4", 1.0)
    (corpus / "manifest.csv").write_text(
        "uri,start_s,end_s,split,happiness,sadness,anger,fear,disgust,surprise,speaker\n"
        "clips/a.mp4,0,1.5,train,1,0,0,0,0,0,ann\n"
        "clips/a.mp4,1.5,3,valid,0,0,2,0,0,0,\n"
        "clips/gone.mp4,0,1,test,0,0,0,0,0,0,bob\n"
    )
    out = tmp_path / "out"
    summary = run_extract(
        config(corpus, out, manifest_uri=str(corpus / "manifest.csv"), window_s=10.0)
    )["summary"]
    assert summary["files_extracted"] == 1 and summary["files_not_in_manifest"] == 1
    assert [(e["uri"], e["kind"]) for e in summary["errors"]] == [
        (str(corpus / "clips/gone.mp4"), "not_found")
    ]
    rows = sorted(read_rows(out), key=lambda r: r["start_s"])
    assert [
        (r["start_s"], r["end_s"], r["split"], r["happiness"], r["anger"], r["speaker"])
        for r in rows
    ] == [(0.0, 1.5, "train", 1.0, 0.0, "ann"), (1.5, 3.0, "valid", 0.0, 2.0, None)]
    assert (out / "_errors" / f"{media_id_for(str(corpus / 'clips/gone.mp4'))}.json").exists()


def test_file_vanishing_after_listing_is_an_error_record(ray_cluster: None, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    mf.mp4(corpus / "stays.mp4", 1.0)
    mf.mp4(corpus / "goes.mp4", 1.0)
    job = config(corpus, tmp_path / "out")
    options = storage_options_from_env()
    plan = plan_extract(job, options)
    (corpus / "goes.mp4").unlink()  # between listing and decoding
    summary = execute_plan(job, plan, options)["summary"]
    assert summary["files_extracted"] == 1
    assert [(e["uri"], e["stage"], e["kind"]) for e in summary["errors"]] == [
        (str(corpus / "goes.mp4"), "read", "not_found")
    ]


def test_cli_bad_arguments_give_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["extract", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"avemo extract: error: input not found: {tmp_path / 'nowhere'}"
    )
    (tmp_path / "m.csv").write_text("uri,start\n")
    (tmp_path / "media").mkdir()
    assert (
        cli_main(
            [
                "extract",
                str(tmp_path / "media"),
                str(tmp_path / "o"),
                "--manifest",
                str(tmp_path / "m.csv"),
            ]
        )
        == 2
    )
    assert "manifest lacks column(s)" in capsys.readouterr().err
    assert cli_main(["extract", str(tmp_path), str(tmp_path / "o"), "--fps", "0"]) == 2
    assert "fps must be > 0" in capsys.readouterr().err
    mf.mp4(tmp_path / "media/a.mp4", 0.5)
    (tmp_path / "a-file").write_text("")
    assert cli_main(["extract", str(tmp_path / "media"), str(tmp_path / "a-file/out")]) == 2
    assert f"cannot write to {tmp_path / 'a-file/out'}" in capsys.readouterr().err
