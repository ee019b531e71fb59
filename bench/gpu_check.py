"""One-epoch GPU check: Ray Train with one GPU worker (NCCL, bf16 autocast, pinned batches) on
synthetic shards; prints samples/s. Fails with one clear line when CUDA is absent.

    .venv/bin/python -m bench.gpu_check [--clips 512] [--model-size base] [--batch-size 32]

It runs the same `avemo train` code path as `--gpu`: `pipelines.train.run.run_training` with
`use_gpu=True` on a local Ray cluster, MLflow in a temporary SQLite file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=512)
    parser.add_argument("--model-size", default="base")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: error: CUDA is not available (no GPU, or a CPU-only torch build)")
        return 1

    import ray

    from avemo_core.colearning import CoLearningConfig
    from avemo_core.model import ModelConfig
    from avemo_core.synth.shards import ShardSpec, write_clip_shards
    from avemo_core.training import TrainConfig
    from pipelines import tracking
    from pipelines.ray_session import ensure_ray
    from pipelines.train.run import RunSettings, run_training

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="avemo-gpu-") as tmp:
        root = Path(tmp)
        spec = ShardSpec(
            clips=args.clips, split_shares=(0.9, 0.1, 0.0), audio_frames=(300, 1000),
            visual_frames=(15, 50), files=8,
        )  # fmt: skip
        write_clip_shards(root / "shards", spec)
        ensure_ray(None, None, SystemExit, dashboard=True, log_to_driver=False)
        began = time.perf_counter()
        outcome = run_training(
            RunSettings(
                data_uri=str(root / "shards"),
                run_name="gpu-check",
                storage_uri=str(root / "runs"),
                workers=1,
                use_gpu=True,
                tracking_uri=tracking.resolve_tracking_uri(str(root / "mlflow.db")),
                experiment="gpu-check",
            ),
            ModelConfig.named(args.model_size),
            TrainConfig(epochs=1, batch_size=args.batch_size),
            CoLearningConfig(),
        )
        wall = time.perf_counter() - began
        ray.shutdown()
    record = outcome.history[0]
    print(f"{args.model_size} model, batch {args.batch_size}, {int(record['train/samples'])} clips")
    print(f"GPU train epoch: {record['train/samples_per_s']:.1f} samples/s (colearn, bf16)")
    print(f"val_score {outcome.score:.4f}; whole run {wall:.0f} s incl. Ray start and validation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
