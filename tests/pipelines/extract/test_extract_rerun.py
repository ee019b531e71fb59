"""A job killed half-way (the whole process group, Ray included) and rerun ends with exactly the
rows of an uninterrupted run: no duplicates, no half-written shard, nothing lost. Tasks of two
files each, about: the kill lands right after the first task's marker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from avemo_core.synth.shards import rows_by_clip
from bench.common.procs import processes
from pipelines.extract.media import MediaTask, group_tasks
from pipelines.extract.run import ExtractConfig, run_extract
from tests.pipelines import media_factory as mf

FILES = 16  # about 8 tasks: the kill after the first marker lands before the last
FILES_PER_TASK = 2


def wait_for_done_markers(out: Path, proc: subprocess.Popen, timeout_s: float = 240.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the job ended before it could be killed"
        done = len(list((out / "_tasks").glob("*.json"))) if (out / "_tasks").is_dir() else 0
        if done:
            return done
        time.sleep(0.05)
    raise TimeoutError("no file finished in time")


def session_members(sid: int) -> list[int]:
    """Processes of a session: the job, Ray's processes and workers, and their ffmpeg children."""
    return [p.pid for p in processes() if p.session == sid and p.alive]


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the job's process group; everything it started must be gone soon after."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60
    while session_members(proc.pid):  # Ray's workers exit once their raylet is gone
        assert time.monotonic() < deadline, f"still alive: {session_members(proc.pid)}"
        time.sleep(0.2)


def test_killed_then_rerun_equals_uninterrupted(ray_cluster: None, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(FILES):
        mf.mp4(corpus / f"clip{i}.mp4", 3.0)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    args = ["--window-s", "1", "--rows-per-shard", "4", "--num-cpus", "1"]
    args += ["--files-per-task", str(FILES_PER_TASK)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs", "extract", str(corpus), str(killed), *args],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_done_markers(killed, proc)
    finally:
        kill_group(proc)
    markers = [json.loads(p.read_text()) for p in (killed / "_tasks").glob("*.json")]
    done_at_kill = sum(len(m["media"]) for m in markers)
    listing = [MediaTask(str(p), None) for p in sorted(corpus.glob("*.mp4"))]
    tasks = group_tasks(listing, FILES_PER_TASK)  # at least 2: no task holds over 4 files
    assert 1 <= len(markers) < len(tasks), "the kill must land half-way"
    assert not (killed / "_SUCCESS.json").exists()

    job = ExtractConfig(
        input_uri=str(corpus),
        output_uri=str(killed),
        window_s=1.0,
        rows_per_shard=4,
        files_per_task=FILES_PER_TASK,
    )
    resumed = run_extract(job)["summary"]
    assert resumed["files_skipped"] == done_at_kill
    assert resumed["files_extracted"] == FILES - done_at_kill
    run_extract(job.replace(output_uri=str(clean)))

    after_rerun, uninterrupted = rows_by_clip(killed), rows_by_clip(clean)
    assert len(uninterrupted) == FILES * 3
    assert after_rerun.keys() == uninterrupted.keys()
    for clip_id, row in uninterrupted.items():
        assert after_rerun[clip_id] == row  # same features, bit for bit
    names = sorted(p.name for p in killed.glob("*.parquet"))
    assert names == sorted(p.name for p in clean.glob("*.parquet"))
    assert not [p for p in killed.rglob("*") if ".tmp-" in p.name]


def test_rerun_clears_orphan_shards_of_unfinished_tasks(ray_cluster: None, tmp_path: Path) -> None:
    """Files left by a killed run for a task without a marker are replaced, not duplicated."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    mf.mp4(corpus / "a.mp4", 2.0)
    mf.mp4(corpus / "b.mp4", 2.0)
    out = tmp_path / "out"
    job = ExtractConfig(
        input_uri=str(corpus), output_uri=str(out), window_s=1.0, rows_per_shard=1, files_per_task=2
    )
    run_extract(job)
    first = rows_by_clip(out)
    names = sorted(p.name for p in out.glob("*.parquet"))
    assert len(names) == 4  # 4 clips, 1 row per file
    (out / names[-1]).unlink()  # as if killed while committing the tasks' files...
    for marker in (out / "_tasks").glob("*.json"):
        marker.unlink()  # ...before their markers
    (out / "_SUCCESS.json").unlink()
    summary = run_extract(job)["summary"]
    assert summary["files_extracted"] == 2 and summary["tasks_run"] == summary["tasks"]
    assert rows_by_clip(out) == first
    assert sorted(p.name for p in out.glob("*.parquet")) == names
