"""Training throughput on CPU: Ray Train with 1 and 2 workers against the plain loop, and the step
time of co-learning (three views) against the conventional av model.

    .venv/bin/python -m bench.train [--clips 512] [--epochs 3] [--model-size tiny] [--batch-size 16]

Same synthetic shards (avemo_core/synth/shards.py), same model and batch size everywhere. Ray
Train's samples/s is measured inside the worker around `train_epoch`, so it includes Ray Data's
streaming, per-batch padding and the gradient all-reduce, not the cluster start or validation; the
plain loop pads the same rows per pass in one process. Both report their best epoch after the first
(the one least disturbed by other load on a shared machine). Ray gives each worker one CPU
(OMP_NUM_THREADS=1), so the plain loop runs with one torch thread too.

Goals: Ray Train (1 worker) within 10% of the plain loop; colearn step <= 2.0x the av step.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from avemo_core import training
from avemo_core.colearning import CoLearningConfig
from avemo_core.model import CrossModalTransformer, ModelConfig
from avemo_core.synth.shards import ShardSpec, write_clip_shards
from pipelines import tracking
from pipelines.train import datasets
from pipelines.train.run import RunSettings, run_training


def plain_rates(
    info: datasets.ShardInfo, model_config: ModelConfig, config: training.TrainConfig
) -> dict[str, tuple[float, float]]:
    """mode -> (samples/s, seconds per step) of the plain loop for colearn and av, the best epoch
    after the first; the two modes alternate epoch by epoch so machine load hits both alike."""
    batches = datasets.LocalBatches(info, "train", config.batch_size)
    steps = -(-batches.rows // config.batch_size)
    runs = {}
    for mode in ("colearn", "av"):
        training.seed_everything(config.seed)
        model = CrossModalTransformer(model_config)
        runs[mode] = (model, training.make_optimizer(model, config), [])
    for _ in range(config.epochs):
        for mode, (model, optimizer, times) in runs.items():
            colearning = CoLearningConfig(mode=mode)
            began = time.perf_counter()
            training.train_epoch(model, batches, optimizer, colearning, config, torch.device("cpu"))
            times.append(time.perf_counter() - began)
    return {
        mode: (batches.rows / min(times[1:]), min(times[1:]) / steps)
        for mode, (_, _, times) in runs.items()
    }


def ray_samples_per_s(
    info: datasets.ShardInfo,
    model_config: ModelConfig,
    config: training.TrainConfig,
    workers: int,
    root: Path,
) -> tuple[float, float]:
    """(samples/s over all workers, wall seconds of the whole run) for one Ray Train run."""
    settings = RunSettings(
        data_uri=info.root,
        run_name=f"bench-{workers}w",
        storage_uri=str(root / "runs"),
        workers=workers,
        tracking_uri=tracking.resolve_tracking_uri(str(root / "mlflow.db")),
        experiment="bench",
    )
    began = time.perf_counter()
    outcome = run_training(settings, model_config, config, CoLearningConfig())
    wall = time.perf_counter() - began
    return max(record["train/samples_per_s"] for record in outcome.history[1:]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model-size", default="tiny")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    import ray

    from pipelines.ray_session import ensure_ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with tempfile.TemporaryDirectory(prefix="avemo-bench-") as tmp:
        root = Path(tmp)
        spec = ShardSpec(clips=args.clips, split_shares=(0.8, 0.1, 0.1), files=4)
        write_clip_shards(root / "shards", spec)
        info = datasets.inspect_shards(str(root / "shards"))
        model_config = ModelConfig.named(args.model_size)
        config = training.TrainConfig(epochs=args.epochs, batch_size=args.batch_size)
        print(
            f"{info.counts['train']} train clips, {args.model_size} model, batch {args.batch_size}"
        )
        torch.set_num_threads(1)  # as each Ray Train worker
        print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")

        rates = plain_rates(info, model_config, config)
        plain, colearn_step = rates["colearn"]
        av_step = rates["av"][1]
        print(f"plain loop (colearn):   {plain:8.1f} samples/s (before the Ray runs)")
        print(
            f"step time colearn {colearn_step * 1e3:.1f} ms, av {av_step * 1e3:.1f} ms: "
            f"{colearn_step / av_step:.2f}x (goal <= 2.0x)"
        )

        ensure_ray(None, 4, SystemExit, dashboard=True, log_to_driver=False)
        try:
            for workers in (1, 2):
                rate, wall = ray_samples_per_s(info, model_config, config, workers, root)
                print(
                    f"Ray Train {workers} worker(s): {rate:8.1f} samples/s "
                    f"(whole run {wall:.0f} s incl. start, validation, MLflow)"
                )
                if workers == 1:
                    ray_one = rate
                    overhead = 1.0 - rate / plain
                    print(f"Ray Train overhead vs plain loop: {overhead:+.1%} (goal <= 10%)")
        finally:
            ray.shutdown()
        after = plain_rates(info, model_config, config)["colearn"][0]
        print(f"plain loop (colearn):   {after:8.1f} samples/s (after the Ray runs)")
        print(
            f"Ray Train 1 worker vs the better plain run: {1.0 - ray_one / max(plain, after):+.1%}"
        )


if __name__ == "__main__":
    main()
