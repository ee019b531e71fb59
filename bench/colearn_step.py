"""Training-step time of the av, audio, visual and colearn modes; the colearn/av ratio (goal <= 2).

    .venv/bin/python -m bench.colearn_step            # tiny and base, B=8, 10 s clips, CPU
    .venv/bin/python -m bench.colearn_step --quick    # fewer steps
    .venv/bin/python -m bench.colearn_step --device cuda --mixed-precision

A step is one `avemo_core.training.train_epoch` over one batch: forward, loss, backward, gradient
clipping and the AdamW update, exactly the code path of training. The time is the median of
`--steps` steps after `--warmup` steps, with the device synchronised around each step; the
modes take turns step by step, so the ratio holds up on a machine whose load changes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from avemo_core.colearning import MODES, CoLearningConfig
from avemo_core.data import Batch
from avemo_core.model import CrossModalTransformer, ModelConfig
from avemo_core.training import TrainConfig, make_optimizer, seed_everything, train_epoch


def realistic_batch(size: int, audio_frames: int, visual_frames: int) -> Batch:
    """Full-length clips with both modalities: the common case of a training batch."""
    gen = torch.Generator().manual_seed(0)
    return Batch(
        audio=torch.randn(size, audio_frames, 80, generator=gen) * 3 - 5,  # (B, Ta, F)
        audio_mask=torch.ones(size, audio_frames, dtype=torch.bool),
        visual=torch.rand(size, visual_frames, 64, 64, generator=gen),  # (B, Tv, H, W)
        visual_mask=torch.ones(size, visual_frames, dtype=torch.bool),
        labels=(torch.rand(size, 6, generator=gen) > 0.7).float(),
        label_known=torch.ones(size, dtype=torch.bool),
    )


def step_seconds(
    size: str, batch: Batch, args: argparse.Namespace, device: torch.device
) -> dict[str, tuple[float, float]]:
    """Median (wall, process CPU) seconds of one training step per mode, fresh models of `size`.

    The modes take turns step by step, so a change in machine load hits all of them alike; the
    CPU time (all threads of this process) is the steadier number on a shared machine.
    """
    config = TrainConfig(mixed_precision=args.mixed_precision)
    runs = {}
    for mode in MODES:
        seed_everything(0)
        model = CrossModalTransformer(ModelConfig.named(size)).to(device)
        runs[mode] = (model, make_optimizer(model, config), CoLearningConfig(mode=mode))
    wall: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    for i in range(args.warmup + args.steps):
        for mode, (model, optimizer, colearning) in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            train_epoch(model, [batch], optimizer, colearning, config, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= args.warmup:
                wall[mode].append(time.perf_counter() - start)
                cpu[mode].append(time.process_time() - start_cpu)
    return {mode: (statistics.median(wall[mode]), statistics.median(cpu[mode])) for mode in MODES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"], help="named model sizes")
    parser.add_argument("--batch", type=int, default=8, help="clips per step")
    parser.add_argument("--audio-frames", type=int, default=1000, help="10 ms frames per clip")
    parser.add_argument("--visual-frames", type=int, default=50, help="video frames per clip")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--quick", action="store_true", help="3 timed steps after 1 warm-up")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--mixed-precision", action="store_true", help="bf16 autocast (CUDA)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup = 3, 1
    device = torch.device(args.device)
    batch = realistic_batch(args.batch, args.audio_frames, args.visual_frames)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device={name} threads={torch.get_num_threads()} batch={args.batch} "
        f"audio_frames={args.audio_frames} visual_frames={args.visual_frames} "
        f"steps={args.steps} warmup={args.warmup} mixed_precision={args.mixed_precision}"
    )
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.1f}")
    print(f"{'size':<6} {'mode':<8} {'wall ms/step':>13} {'cpu ms/step':>12}")
    for size in args.sizes:
        seconds = step_seconds(size, batch, args, device)
        for mode in ("av", "audio", "visual", "colearn"):
            wall, cpu = seconds[mode]
            print(f"{size:<6} {mode:<8} {wall * 1000:>13.1f} {cpu * 1000:>12.1f}")
        wall_ratio = seconds["colearn"][0] / seconds["av"][0]
        cpu_ratio = seconds["colearn"][1] / seconds["av"][1]
        verdict = "ok" if wall_ratio <= 2.0 else "over goal"
        print(
            f"{size:<6} colearn/av ratio: wall {wall_ratio:.2f}, cpu {cpu_ratio:.2f} "
            f"(goal <= 2.0 on wall: {verdict})"
        )


if __name__ == "__main__":
    main()
