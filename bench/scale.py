"""How the driver and the shard layout scale with the corpus. Goals (issue 12): planning time
ratio <= 1.1x the size ratio, driver memory ratio <= 1.5x, Parquet files written <= 1 per 64 clips
plus 1 per task, first training batch within 10 s at both sizes.

    .venv/bin/python -m bench.scale                      # 2,000 and 20,000 simulated files
    .venv/bin/python -m bench.scale --sizes 200 2000     # quicker

Each size runs in a fresh process. The listing is simulated (no media are decoded: extraction's
cost per file is bench/extract.py's subject); what is real is everything the driver does around
it and what the workers write: grouping into tasks, one real task marker per task read back as a
rerun reads them, per-task totals summed into the summary, and each task's rows (one 1 s
audio-only clip per file, as short utterances give) written through the real `ShardWriter` into
bounded Parquet files. Then a local Ray cluster streams the train split from those files and the
time to the first batch is taken (Ray's start-up excluded). Peak driver memory is the planning
process's high-water mark above its resident size before planning. One run on a shared machine:
timings are noisy.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FILES_PER_TASK = 16
AUDIO_FRAMES = 100  # 1 s at a 10 ms hop


def _row(uri: str, split: str) -> dict[str, Any]:
    from avemo_core.labels import EMOTIONS
    from avemo_core.schema import CLIP_SCHEMA_VERSION, clip_id_for, media_id_for

    return {
        "clip_id": clip_id_for(uri, 0.0, 1.0), "media_id": media_id_for(uri), "source_uri": uri,
        "start_s": 0.0, "end_s": 1.0, "split": split, "has_audio": True, "has_visual": False,
        "audio_features": bytes(2 * 80 * AUDIO_FRAMES), "audio_frames": AUDIO_FRAMES,
        "audio_dims": 80, "visual_features": b"", "visual_frames": 0, "visual_height": 64,
        "visual_width": 64, "visual_face_flags": b"", "face_ratio": 0.0,
        "audio_active_ratio": 1.0, **{e: 0.0 for e in EMOTIONS},
        "schema_version": CLIP_SCHEMA_VERSION,
    }  # fmt: skip


def write_tasks(files: int, out: str) -> None:
    """(child) What the workers of a first run leave: each task's Parquet files and marker."""
    from avemo_core.schema import clip_schema
    from pipelines.extract.media import MediaTask, group_tasks
    from pipelines.extract.run import ExtractConfig
    from pipelines.extract.shards import ShardStore, ShardWriter, task_prefix

    config = ExtractConfig(input_uri="-", output_uri=out)
    extractor = config.extractor_config()
    schema = clip_schema(extractor)
    store = ShardStore(out)
    store.prepare()
    listing = [MediaTask(f"/corpus/spk{i // 50:05d}/utt{i:07d}.wav", None) for i in range(files)]
    for task in group_tasks(listing, FILES_PER_TASK):
        writer = ShardWriter(
            store, task_prefix(task.task_id, 0), schema, config.rows_per_shard,
            config.max_shard_mb << 20,
        )  # fmt: skip
        media = []
        for k, f in enumerate(task.files):
            writer.add(_row(f.uri, "train" if k % 5 else "valid"))
            media.append({
                "uri": f.uri, "media_id": f.media_id, "status": "done", "stage": "", "kind": "",
                "message": "", "attempt": 0, "clips": 1, "empty_clips": 0, "duration_s": 1.0,
                "face_frames": 0, "visual_frames": 0, "has_audio": True, "has_visual": False,
            })  # fmt: skip
        parts = writer.close()
        store.write_task_marker(
            task.task_id,
            {"task_id": task.task_id, "fingerprint": task.fingerprint(extractor), "attempt": 0,
             "parts": parts, "bytes_written": writer.bytes_written, "media": media},
        )  # fmt: skip
    print(json.dumps({"written": files}))


def plan(files: int, out: str) -> None:
    """(child) The driver's side of a rerun: list, group, read every marker, sum the totals."""
    from pipelines.extract.media import MediaTask, group_tasks
    from pipelines.extract.run import ExtractConfig, Totals, task_state
    from pipelines.extract.shards import ShardStore

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    config = ExtractConfig(input_uri="-", output_uri=out)
    listing = [MediaTask(f"/corpus/spk{i // 50:05d}/utt{i:07d}.wav", None) for i in range(files)]
    tasks = group_tasks(listing, FILES_PER_TASK)
    store = ShardStore(out)
    state = task_state(tasks, config.extractor_config(), store)
    totals = Totals()
    for finished in state.finished:
        totals.add(finished)
    summary = totals.summary(len(tasks), len(state.pending), [], 0, 1.0)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert summary["files_skipped"] == files and not state.pending, summary
    print(json.dumps({"plan_s": elapsed, "driver_peak_bytes": peak - before, "tasks": len(tasks)}))


def first_batch(out: str) -> None:
    """(child) Seconds from listing the shards to the first streamed training batch."""
    import ray

    from pipelines.ray_session import ensure_ray
    from pipelines.train import datasets

    ensure_ray(None, 2, SystemExit, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    started = time.perf_counter()
    info = datasets.inspect_shards(out)
    inspected = time.perf_counter()
    train = datasets.training_datasets(info, "audio", shuffle_seed=0)["train"]
    next(iter(train.iter_batches(batch_size=32, batch_format="numpy")))
    done = time.perf_counter()
    print(json.dumps({"first_batch_s": done - started, "inspect_s": inspected - started}))
    ray.shutdown()


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", __spec__.name, *args], capture_output=True, text=True, check=True
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])  # Ray may print after the result


def measure(files: int) -> dict[str, Any]:
    out = tempfile.mkdtemp(prefix="avemo-bench-scale-")
    try:
        _child("--write-tasks", str(files), out)
        parquet = list(Path(out).glob("*.parquet"))
        result = {
            "files": files,
            "parquet_files": len(parquet),
            "parquet_bytes": sum(p.stat().st_size for p in parquet),
            "markers": len(list(Path(out, "_tasks").glob("*.json"))),
            **_child("--plan", str(files), out),
            **_child("--first-batch", out),
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)
    result["files_goal"] = files // 64 + result["tasks"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[2000, 20000])
    parser.add_argument("--write-tasks", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--plan", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--first-batch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_tasks:
        write_tasks(int(args.write_tasks[0]), args.write_tasks[1])
        return
    if args.plan:
        plan(int(args.plan[0]), args.plan[1])
        return
    if args.first_batch:
        first_batch(args.first_batch)
        return
    small, large = (measure(n) for n in args.sizes)
    for r in (small, large):
        print(
            f"{r['files']:>7} files: {r['tasks']} tasks, {r['parquet_files']} Parquet files "
            f"({r['parquet_bytes'] / 1e6:.1f} MB; goal <= {r['files_goal']}), planning "
            f"{r['plan_s']:.3f} s, driver peak +{r['driver_peak_bytes'] / 1e6:.1f} MB, "
            f"first batch {r['first_batch_s']:.2f} s (listing and counting {r['inspect_s']:.2f} s)"
        )
    size_ratio = large["files"] / small["files"]
    time_ratio = large["plan_s"] / small["plan_s"]
    memory_ratio = large["driver_peak_bytes"] / max(small["driver_peak_bytes"], 1)
    print(
        f"ratios at {size_ratio:.0f}x the files: planning time {time_ratio:.2f}x "
        f"({time_ratio / size_ratio:.2f}x the size ratio; goal <= 1.1), driver memory "
        f"{memory_ratio:.2f}x ({memory_ratio / size_ratio:.2f}x the size ratio; goal <= 1.5)"
    )
    print(json.dumps({"small": small, "large": large}))


if __name__ == "__main__":
    main()
