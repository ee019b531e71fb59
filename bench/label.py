"""Labelling throughput: clips/s from clip shards and from raw media, and labelling from shards
against a bare model forward on the same batches (goal: pipeline time per clip <= 1.3x the bare
forward's).

    .venv/bin/python bench/label.py            # base model, 48 synthetic files, 2 s clips, CPU
    .venv/bin/python bench/label.py --quick    # tiny model, 16 files

The media are the synthetic corpus's unlabelled files (`avemo_core.synth.write_media`), extracted
once into clip shards with `avemo extract`'s pipeline. Each labelling run is `run_label` with one
inference actor (one CPU, one torch thread) on a local Ray cluster started beforehand, so its time
holds everything a run does (planning, actor start and model load, reading or decoding, batching,
inference, commits) but not the cluster start. Every input is labelled twice, a quarter of the
files and all of them, and the per-clip cost is the difference of the two times over the
difference of the clip counts: the steady state, with the fixed start-up of a run (reported
apart) cancelled out. The bare forward is the labeller's own model work (each stream encoded
once, then fused as av, a and v) on the same batches prebuilt as tensors, with one torch thread.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

from avemo_core.checkpoint import Checkpoint, save_checkpoint
from avemo_core.data import batch_from_columns
from avemo_core.labels import EMOTIONS
from avemo_core.model import CrossModalTransformer, ModelConfig
from avemo_core.synth import SynthConfig, write_media
from pipelines.extract import ExtractConfig, run_extract
from pipelines.label import LabelConfig, run_label
from pipelines.labeller import FEATURE_COLUMNS

GOAL_RATIO = 1.3


def _checkpoint(directory: Path, size: str, window_s: float) -> Path:
    torch.manual_seed(0)
    config = ModelConfig.named(size)
    features = ExtractConfig(input_uri="-", output_uri="-", window_s=window_s).extractor_config()
    thresholds = {c: [0.5] * len(EMOTIONS) for c in ("av", "a", "v")}
    model = CrossModalTransformer(config).eval()
    return save_checkpoint(
        directory, Checkpoint(model, config, thresholds, list(EMOTIONS), features, {})
    )


@torch.inference_mode()
def bare_forward_s(checkpoint: Path, shards: Path, batch_size: int, threads: int) -> float:
    """Seconds of the labeller's model work on the shards' batches (tensors built beforehand)."""
    from avemo_core.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint).model
    table = pq.read_table(sorted(shards.glob("*.parquet")), columns=list(FEATURE_COLUMNS))
    batches = []
    for start in range(0, table.num_rows, batch_size):
        chunk = table.slice(start, batch_size)
        batches.append(
            batch_from_columns(
                {c: chunk.column(c).to_numpy(zero_copy_only=False) for c in chunk.column_names}
            )
        )
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        started = time.perf_counter()
        for batch in batches:
            audio = (
                model.encode_audio(batch.audio, batch.audio_mask)
                if bool(batch.has_audio.any())
                else None
            )
            visual = (
                model.encode_visual(batch.visual, batch.visual_mask)
                if bool(batch.has_visual.any())
                else None
            )
            for streams in ((audio, visual), (audio, None), (None, visual)):
                if any(s is not None for s in streams):
                    model.fuse(*streams)
        return time.perf_counter() - started
    finally:
        torch.set_num_threads(previous)


def _subset(source: Path, target: Path, pattern: str, share: float) -> None:
    """Copy the first `share` of the files matching `pattern` from `source` into `target`."""
    files = sorted(source.glob(pattern))
    target.mkdir(parents=True)
    for path in files[: max(1, round(len(files) * share))]:
        shutil.copy2(path, target / path.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, 16 files")
    parser.add_argument("--files", type=int, help="synthetic media files (default 48, quick 16)")
    parser.add_argument("--model-size", choices=("tiny", "base"), help="default base (quick: tiny)")
    parser.add_argument("--window-s", type=float, default=2.0, help="clip length")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out-dir", help="where the JSON record goes (default bench/out)")
    args = parser.parse_args()
    files = args.files or (16 if args.quick else 48)
    size = args.model_size or ("tiny" if args.quick else "base")

    import ray

    work = Path(tempfile.mkdtemp(prefix="avemo-bench-label-"))
    runs: dict[str, dict] = {}
    try:
        print(f"bench/label: {files} synthetic files, {size} model, {args.window_s} s clips")
        write_media(work / "media", files, SynthConfig(seed=7))
        checkpoint = _checkpoint(work / "checkpoint", size, args.window_s)
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        extract = ExtractConfig(
            input_uri=str(work / "media"), output_uri=str(work / "shards"), window_s=args.window_s
        )
        run_extract(extract, log=lambda line: None)
        _subset(work / "media", work / "media-quarter", "*.*", 0.25)
        _subset(work / "shards", work / "shards-quarter", "*.parquet", 0.25)
        for name in ("shards-quarter", "shards", "media-quarter", "media"):
            config = LabelConfig(
                input_uri=str(work / name), output_uri=str(work / f"out-{name}"),
                model_uri=str(checkpoint), batch_size=args.batch_size, concurrency=1, device="cpu",
            )  # fmt: skip
            runs[name] = run_label(config, log=lambda line: None)
            done = runs[name]
            print(f"  labelled {name}: {done['clips_labelled']} clips in {done['wall_s']:.1f} s")
        bare_s = bare_forward_s(checkpoint, work / "shards", args.batch_size, threads=1)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    def per_clip_s(kind: str) -> float:
        small, full = runs[f"{kind}-quarter"], runs[kind]
        return (full["wall_s"] - small["wall_s"]) / (
            full["clips_labelled"] - small["clips_labelled"]
        )

    clips = runs["shards"]["clips_labelled"]
    shards_s, media_s, bare_per_clip_s = per_clip_s("shards"), per_clip_s("media"), bare_s / clips
    fixed_s = runs["shards"]["wall_s"] - clips * shards_s
    ratio = shards_s / bare_per_clip_s
    results = [
        {"name": "clips", "value": clips, "unit": "clips"},
        {"name": "from_shards_clips_per_s", "value": 1 / shards_s, "unit": "clips/s"},
        {"name": "from_media_clips_per_s", "value": 1 / media_s, "unit": "clips/s"},
        {"name": "bare_forward_clips_per_s", "value": 1 / bare_per_clip_s, "unit": "clips/s"},
        {
            "name": "from_shards_whole_run_clips_per_s",
            "value": runs["shards"]["clips_per_s"],
            "unit": "clips/s",
        },
        {
            "name": "from_media_whole_run_clips_per_s",
            "value": runs["media"]["clips_per_s"],
            "unit": "clips/s",
        },
        {"name": "run_fixed_cost_s", "value": fixed_s, "unit": "s"},
        {
            "name": "shards_pipeline_over_bare_forward",
            "value": ratio,
            "unit": "x",
            "goal": f"<= {GOAL_RATIO}",
            "met": ratio <= GOAL_RATIO,
        },
    ]
    for r in results:
        goal = f"  (goal {r['goal']}: {'met' if r['met'] else 'NOT met'})" if "goal" in r else ""
        print(f"  {r['name']:<40} {r['value']:10.2f} {r['unit']}{goal}")
    from pipelines.benchmarks_page import save_output

    out = {"out_dir": args.out_dir} if args.out_dir else {}
    saved = save_output(__file__, [sys.executable, *sys.argv], results, **out)
    print(f"saved {saved}")


if __name__ == "__main__":
    main()
