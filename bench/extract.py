"""Extraction speed, memory and scaling. Goals: media-seconds extracted per wall-second >= 0.7x a
bare `ffmpeg -i FILE -f null -` decode of the same files on the same cores; peak memory for a
10-minute 720p file <= 1.5x that for a 10-second one; 2 CPUs >= 1.8x as fast as 1 CPU.

    .venv/bin/python -m bench.extract            # 4 x 60 s 720p files; 10-min vs 10-s memory
    .venv/bin/python -m bench.extract --quick    # 2 x 20 s files; 2-min vs 10-s memory

All numbers come from one run on the same generated files: 720p25 H.264 + AAC tone, a real face
(scikit-image's astronaut) drifting over the testsrc2 pattern, as talking-head footage, encoded
twice: x264's ultrafast preset (no B-frames, no CABAC, no deblocking: the cheapest H.264 to
decode, where the goals are judged) and its default preset (High profile, B-frames, as cameras,
phones and broadcasters encode), whose throughput is measured too.
Throughput: each side is pinned to the same 1 or 2 cores (CPU affinity, inherited by ffmpeg and
Ray's workers); the extraction is the real Ray Data job (`pipelines.extract.run.run_extract`) on a
local cluster of that many CPUs, timed after a warm-up that starts its workers; bare ffmpeg decodes
the files one after another with its default threading; the two sides alternate `--repeat` times
and the fastest run of each counts (the machine may be shared). Memory: peak resident memory of
the whole process tree (the high-water marks of Python and its live ffmpeg children, sampled every
20 ms) while one Ray task's work (`pipelines.extract.media.extract_task`) extracts one file in a
fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common.procs import processes

REPO = Path(__file__).resolve().parents[1]

FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


def head_png(folder: Path) -> Path:
    """The astronaut's head from scikit-image's photograph, 560 px, as the bench's speaker: its
    face is about a third of the 720p frame's height, as in talking-head footage."""
    path = folder / "head-560.png"
    if not path.exists():
        import cv2
        from skimage import data

        head = data.astronaut()[0:260, 100:360]  # (260, 260, 3) RGB around the face
        cv2.imwrite(str(path), cv2.cvtColor(cv2.resize(head, (560, 560)), cv2.COLOR_RGB2BGR))
    return path


def make_video(path: Path, seconds: float, preset: str = "ultrafast") -> Path:
    """720p25 H.264 + AAC: a real face (the astronaut) drifting over the testsrc2 pattern, with a
    tone (x264 `preset`), as ordinary talking-head footage; reused when present."""
    if not path.exists():
        partial = path.with_name(f".{path.name}.partial.mp4")
        head = head_png(path.parent)
        drift = "overlay=x='360+200*sin(t/3)':y='80+40*cos(t/2)':shortest=1"
        subprocess.run(
            [*FFMPEG, "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={seconds}",
             "-loop", "1", "-framerate", "25", "-i", str(head),
             "-f", "lavfi", "-i", f"sine=frequency=330:duration={seconds}:sample_rate=44100",
             "-filter_complex", f"[0:v][1:v]{drift},format=yuv420p[v]", "-map", "[v]",
             "-map", "2:a", "-c:v", "libx264", "-preset", preset, "-c:a", "aac",
             "-t", str(seconds), str(partial)],
            check=True,
        )  # fmt: skip
        partial.rename(path)
    return path


def pinned(cores: list[int]):  # noqa: ANN201 - preexec_fn
    return lambda: os.sched_setaffinity(0, cores)


def bare_decode_seconds(files: list[Path], cores: list[int]) -> float:
    """Wall seconds for `ffmpeg -i FILE -f null -` over the files, one after another, on `cores`."""
    start = time.monotonic()
    for path in files:
        subprocess.run(
            [*FFMPEG, "-i", str(path), "-f", "null", "-"], check=True, preexec_fn=pinned(cores)
        )
    return time.monotonic() - start


def extract_seconds(folder: Path, warmup: Path, cores: list[int], work: Path) -> dict:
    """Run `--measure-extract` in a fresh process pinned to `cores`; returns its JSON."""
    cmd = [
        sys.executable,
        "-m",
        __spec__.name,
        "--measure-extract",
        str(folder),
        str(warmup),
        str(work),
    ]
    out = subprocess.run(
        [*cmd, str(len(cores))],
        check=True, capture_output=True, text=True, preexec_fn=pinned(cores),
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_extract(folder: str, warmup: str, work: str, cpus: int) -> None:
    """(child) Start Ray with `cpus` CPUs, warm its workers up, then time the extraction job
    with the job's default settings (the bench's files are large enough for a task each)."""
    import logging

    import ray

    from pipelines.extract.run import ExtractConfig, run_extract
    from pipelines.ray_session import ensure_ray

    ensure_ray(None, cpus, SystemExit, logging_level=logging.WARNING, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    quiet = lambda line: None  # noqa: E731
    # one task per warm-up file, so every CPU's worker has started before the timed run
    warm = ExtractConfig(input_uri=warmup, output_uri=f"{work}/warm-{cpus}", files_per_task=1)
    run_extract(warm, log=quiet)
    start = time.monotonic()
    success = run_extract(
        ExtractConfig(input_uri=folder, output_uri=f"{work}/out-{cpus}"), log=quiet
    )
    wall_s = time.monotonic() - start
    summary = success["summary"]
    assert summary["files_failed"] == 0, summary["errors"]
    print(
        json.dumps(
            {"wall_s": wall_s, "media_s": summary["media_hours"] * 3600, "clips": summary["clips"]}
        )
    )


def decode_only(files: list[Path], cores: list[int]) -> dict[str, float]:
    """The streaming decode alone (pipes, windows; no features) on `cores`: wall seconds, the
    part of them spent probing, and the CPU seconds of the process and its ffmpeg children."""
    cmd = [sys.executable, "-m", __spec__.name, "--measure-decode", *map(str, files)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, preexec_fn=pinned(cores))
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_decode(files: list[str]) -> None:
    """(child) Decode the files window by window as the extraction does, without features."""
    import resource

    from avemo_core.media.decode import Span
    from avemo_core.media.probe import probe
    from pipelines.extract.media import build_extractor
    from pipelines.extract.run import ExtractConfig

    def cpu_s() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    decoder = build_extractor(
        ExtractConfig(input_uri=".", output_uri=".").extractor_config()
    ).decoder
    start, cpu_start, probe_s = time.monotonic(), cpu_s(), 0.0
    for path in files:
        probed = time.monotonic()
        info = probe(path)
        probe_s += time.monotonic() - probed
        spans = [
            Span(s, min(s + 10.0, info.duration_s)) for s in range(0, int(info.duration_s), 10)
        ]
        for _ in decoder.decode(path, info, spans):
            pass
    wall_s = time.monotonic() - start
    print(json.dumps({"wall_s": wall_s, "probe_s": probe_s, "cpu_s": cpu_s() - cpu_start}))


def detector_ms_per_frame(path: Path) -> dict[str, float]:
    """CPU ms per sampled frame (first 10 s of `path`) of the face crops as extraction makes them
    (detection on the extractor's schedule, near the followed face) and searching the whole of
    every frame, plus the face share."""
    import dataclasses

    from avemo_core.features.visual import FaceCropper
    from avemo_core.media.decode import Span
    from avemo_core.media.probe import probe
    from pipelines.extract.media import build_extractor
    from pipelines.extract.run import ExtractConfig

    extractor = build_extractor(ExtractConfig(input_uri=".", output_uri=".").extractor_config())
    frames = next(iter(extractor.decoder.decode(str(path), probe(str(path)), [Span(0.0, 10.0)])))
    assert frames.frames is not None
    everywhere = FaceCropper(
        dataclasses.replace(extractor.visual, detect_every=1, track_search_frac=0.0)
    )
    out = {}
    for name, cropper in (("tracked", extractor.cropper), ("full", everywhere)):
        start = time.process_time()
        _, flags = cropper.crop_frames(frames.frames)
        out[name] = (time.process_time() - start) * 1000 / len(frames.frames)
        out[f"{name}_face_share"] = float((flags > 0).mean())
    return out


def _children(pid: int) -> list[int]:
    return [p.pid for p in processes() if p.ppid == pid]


def tree_rss_bytes(pid: int) -> int:
    """Peak resident memory of a process and its live descendants: the sum of their high-water
    marks (VmHWM), so a short-lived ffmpeg counts at its peak even if no sample fell on it. An
    upper bound of what they held at once."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
        todo += _children(current)
    return total


def peak_memory(path: Path, work: Path) -> dict:
    """Peak process-tree RSS while a fresh process extracts one file as one Ray task would."""
    proc = subprocess.Popen(
        [sys.executable, "-m", __spec__.name, "--measure-memory", str(path), str(work)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_bytes(proc.pid))
        time.sleep(0.02)
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement failed for {path}")
    return {"peak_tree_bytes": peak, **json.loads(out.strip().splitlines()[-1])}


def measure_memory(path: str, work: str) -> None:
    """(child) Extract one file exactly as a Ray Data task does, then report clip count.

    A Ray Data worker has built Arrow data before its first task (its input arrives as an Arrow
    batch), so Arrow's one-time allocator set-up (about 50 MiB) is done here first too: otherwise
    it lands inside the measurement, while ffmpeg runs for a long file and after it for a short one.
    """
    import resource

    import pyarrow as pa

    from avemo_core.schema import clip_schema
    from pipelines.extract.media import (
        ExtractTask,
        MediaTask,
        ShardLimits,
        build_extractor,
        extract_task,
    )
    from pipelines.extract.run import ExtractConfig
    from pipelines.extract.shards import ShardStore

    pa.Table.from_pylist([{"uri": path}])  # the batch a Ray Data task receives
    config = ExtractConfig(input_uri=path, output_uri=work)
    extractor = build_extractor(config.extractor_config())
    store = ShardStore(work)
    store.prepare()
    task = ExtractTask((MediaTask(path, None),))
    marker = extract_task(
        task, task.fingerprint(extractor.config_dict()), extractor, store,
        clip_schema(extractor.config_dict()),
        ShardLimits(config.rows_per_shard, config.max_shard_mb << 20), storage_options={},
    )  # fmt: skip
    result = marker["media"][0]
    assert result["status"] == "done", result
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"clips": result["clips"], "python_peak_bytes": rss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller files, same measurements")
    parser.add_argument(
        "--workdir", type=Path, help="keep generated media here (reused if present)"
    )
    parser.add_argument("--out-dir", type=Path, help="where the benchmarks page's JSON goes")
    parser.add_argument("--repeat", type=int, default=2, help="throughput runs per side (fastest)")
    parser.add_argument("--measure-extract", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--measure-memory", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--measure-decode", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_extract:
        folder, warmup, work, cpus = args.measure_extract
        measure_extract(folder, warmup, work, int(cpus))
        return
    if args.measure_memory:
        measure_memory(*args.measure_memory)
        return
    if args.measure_decode:
        measure_decode(args.measure_decode)
        return
    run_benchmark(args)


def throughput(
    files: list[Path], media_s: float, warmup: Path, use: list[int], work: Path, repeat: int,
    label: str, suffix: str,
) -> tuple[float, list[dict]]:  # fmt: skip
    """Extraction against bare ffmpeg on the cores `use`, interleaved `repeat` times (the
    fastest of each side counts): our media-s/s and the result rows (names end in `suffix`)."""
    cpus = len(use)
    bare_s, ours = float("inf"), {"wall_s": float("inf")}
    for rep in range(repeat):
        bare_s = min(bare_s, bare_decode_seconds(files, use))
        run = extract_seconds(files[0].parent, warmup, use, work / f"rep{rep}")
        ours = run if run["wall_s"] < ours["wall_s"] else ours
    rate, bare_rate = ours["media_s"] / ours["wall_s"], media_s / bare_s
    ratio = rate / bare_rate
    print(
        f"{cpus} CPU, {label} H.264: extract {rate:.1f} media-s/s ({ours['clips']} clips), "
        f"bare ffmpeg decode {bare_rate:.1f} media-s/s -> {ratio:.2f}x (goal >= 0.7x)",
        flush=True,
    )
    return rate, [
        {"name": f"extract_{cpus}cpu{suffix}", "value": round(rate, 2), "unit": "media-s/s"},
        {"name": f"bare_ffmpeg_{cpus}cpu{suffix}", "value": round(bare_rate, 2),
         "unit": "media-s/s"},
        {"name": f"extract_vs_ffmpeg_{cpus}cpu{suffix}", "value": round(ratio, 3), "unit": "x",
         "goal": ">= 0.7x", "met": ratio >= 0.7},
    ]  # fmt: skip


def decode_against_bare(
    files: list[Path], media_s: float, cores: list[int], args: argparse.Namespace
) -> tuple[float, float, dict[str, float]]:
    """Media-s/s of the streaming decode alone and of bare ffmpeg (medians of alternating runs),
    and the decode's median wall, probe and CPU seconds."""
    decodes, bares = [], []
    for _ in range(max(3, args.repeat)):
        decodes.append(decode_only(files, cores))
        bares.append(bare_decode_seconds(files, cores))
    decode = {key: statistics.median(d[key] for d in decodes) for key in decodes[0]}
    return media_s / decode["wall_s"], media_s / statistics.median(bares), decode


def run_benchmark(args: argparse.Namespace) -> None:
    from bench.common.benchmarks_page import save_output

    count, seconds, long_s = (2, 20.0, 120.0) if args.quick else (4, 60.0, 600.0)
    media = args.workdir or Path(tempfile.mkdtemp(prefix="avemo-bench-"))
    work = Path(tempfile.mkdtemp(prefix="avemo-bench-out-"))
    folder, warmup = media / f"set-{count}x{seconds:g}", media / "warmup"
    camera = media / f"set-{count}x{seconds:g}-medium"
    for path in (folder, warmup, camera):
        path.mkdir(parents=True, exist_ok=True)
    print(f"generating media in {media} ...", flush=True)
    files = [make_video(folder / f"clip{i}.mp4", seconds) for i in range(count)]
    camera_files = [make_video(camera / f"clip{i}.mp4", seconds, "medium") for i in range(count)]
    for i in range(4):
        make_video(warmup / f"warm{i}.mp4", 2.0)
    long_file = make_video(media / f"long-{long_s:g}s.mp4", long_s)
    short_file = make_video(media / "short-10s.mp4", 10.0)
    cores = sorted(os.sched_getaffinity(0))
    media_s = count * seconds
    results = []
    rates: dict[int, float] = {}
    # (preset, suffix of the result names, files): the goals are judged on the first
    sets = [("ultrafast", "", files), ("medium", "_bframes", camera_files)]
    for label, suffix, set_files in sets:
        for cpus in (1, 2):
            if cpus > len(cores):
                print(f"only {len(cores)} CPU(s): skipping the {cpus}-CPU measurement")
                continue
            out = work / f"{label}-{cpus}"
            rate, row = throughput(
                set_files, media_s, warmup, cores[:cpus], out, args.repeat, label, suffix
            )
            results += row
            if not suffix:
                rates[cpus] = rate
    # decode alone against bare ffmpeg, alternating; medians, as the machine may be shared
    for label, suffix, set_files in sets:
        decode_rate, bare_rate, decode = decode_against_bare(set_files, media_s, cores[:1], args)
        print(
            f"where the time goes (1 CPU, {label} H.264): streaming decode alone "
            f"{decode_rate:.1f} media-s/s ({decode_rate / bare_rate:.2f}x bare ffmpeg "
            f"{bare_rate:.1f}; of its {decode['wall_s']:.2f} s, probing {decode['probe_s']:.2f} s, "
            f"{decode['cpu_s']:.2f} CPU-s)",
            flush=True,
        )
        results.append(
            {"name": f"decode_only_vs_ffmpeg_1cpu{suffix}",
             "value": round(decode_rate / bare_rate, 3), "unit": "x"}
        )  # fmt: skip
    detector = detector_ms_per_frame(files[0])
    print(
        f"face crops {detector['tracked']:.1f} ms CPU per sampled frame (whole-frame search on "
        f"every frame: {detector['full']:.1f} ms); face found in "
        f"{detector['tracked_face_share']:.0%} of frames ({detector['full_face_share']:.0%} with "
        "full searches)",
        flush=True,
    )
    results += [
        {"name": "face_crop_per_frame", "value": round(detector["tracked"], 2), "unit": "ms CPU"},
        {
            "name": "face_crop_full_search_per_frame",
            "value": round(detector["full"], 2),
            "unit": "ms CPU",
        },
        {"name": "face_share", "value": round(detector["tracked_face_share"], 3), "unit": ""},
    ]
    if 1 in rates and 2 in rates:
        scaling = rates[2] / rates[1]
        print(f"scaling: 2 CPUs / 1 CPU = {scaling:.2f}x (goal >= 1.8x)", flush=True)
        results.append(
            {"name": "scaling_2cpu_vs_1cpu", "value": round(scaling, 3), "unit": "x",
             "goal": ">= 1.8x", "met": scaling >= 1.8}
        )  # fmt: skip
    long_mem = peak_memory(long_file, work / "mem-long")
    short_mem = peak_memory(short_file, work / "mem-short")
    long_mib, short_mib = long_mem["peak_tree_bytes"] / 2**20, short_mem["peak_tree_bytes"] / 2**20
    mem_ratio = long_mib / short_mib
    print(
        f"memory: {long_s:g} s file {long_mib:.0f} MiB ({long_mem['clips']} clips), "
        f"10 s file {short_mib:.0f} MiB -> {mem_ratio:.2f}x (goal <= 1.5x); Python alone "
        f"{long_mem['python_peak_bytes'] / 2**20:.0f} vs "
        f"{short_mem['python_peak_bytes'] / 2**20:.0f} MiB",
        flush=True,
    )
    results += [
        {"name": f"peak_mem_{long_s:g}s_720p", "value": round(long_mib, 1), "unit": "MiB"},
        {"name": "peak_mem_10s_720p", "value": round(short_mib, 1), "unit": "MiB"},
        {"name": "peak_mem_ratio", "value": round(mem_ratio, 3), "unit": "x",
         "goal": "<= 1.5x", "met": mem_ratio <= 1.5},
    ]  # fmt: skip
    command = ["python", "bench/extract.py", *(["--quick"] if args.quick else [])]
    command += [f"--repeat={args.repeat}"] if args.repeat != 2 else []
    saved = save_output(
        __file__, command, results, **({"out_dir": args.out_dir} if args.out_dir else {})
    )
    print(f"saved {saved}")


if __name__ == "__main__":
    main()
