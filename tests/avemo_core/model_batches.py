"""Synthetic batches for the model, co-learning and training tests (through the real collate)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from avemo_core.data import Batch, collate
from avemo_core.labels import EMOTIONS

NUM_EMOTIONS = len(EMOTIONS)


def random_batch(
    seed: int,
    audio_frames: Sequence[int] = (37, 22, 0, 41),
    visual_frames: Sequence[int] = (9, 0, 7, 10),
) -> Batch:
    """Random features of the given lengths per sample; 0 frames means the modality is absent."""
    rng = np.random.default_rng(seed)
    audio = [rng.normal(-5.0, 3.0, (t, 80)).astype(np.float16) for t in audio_frames]
    visual = [rng.integers(0, 256, (t, 64, 64), dtype=np.uint8) for t in visual_frames]
    labels = rng.integers(0, 2, (len(audio), NUM_EMOTIONS)).astype(np.float32)
    return collate(audio, visual, labels)


def learnable_batch(
    seed: int, size: int = 16, audio_frames: int = 48, visual_frames: int = 6
) -> Batch:
    """Labels in both modalities: emotion e lifts mel band e (audio) and image block e (visual)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, (size, NUM_EMOTIONS)).astype(np.float32)
    audio, visual = [], []
    for row in labels:
        a = rng.normal(0.0, 1.0, (audio_frames, 80))
        v = rng.integers(0, 100, (visual_frames, 64, 64)).astype(np.int64)
        for e in np.flatnonzero(row):
            a[:, e * 12 : (e + 1) * 12] += 2.0
            r, c = divmod(int(e), 3)
            v[:, r * 32 : (r + 1) * 32, c * 21 : (c + 1) * 21] += 120
        audio.append(a.astype(np.float16))
        visual.append(v.astype(np.uint8))
    return collate(audio, visual, labels)


def pad_batch(batch: Batch, extra_audio: int, extra_visual: int, seed: int = 99) -> Batch:
    """The same batch with extra masked frames appended and every masked frame full of noise."""
    gen = torch.Generator().manual_seed(seed)
    b, ta, f = batch.audio.shape
    tv, h, w = batch.visual.shape[1:]
    audio_mask = torch.cat([batch.audio_mask, torch.zeros(b, extra_audio, dtype=torch.bool)], dim=1)
    visual_mask = torch.cat(
        [batch.visual_mask, torch.zeros(b, extra_visual, dtype=torch.bool)], dim=1
    )
    audio = torch.zeros(b, ta + extra_audio, f)  # (B, Ta + Pa, F)
    audio[:, :ta] = batch.audio
    visual = torch.zeros(b, tv + extra_visual, h, w)  # (B, Tv + Pv, H, W)
    visual[:, :tv] = batch.visual
    audio_noise = torch.randn(audio.shape, generator=gen) * 10
    visual_noise = torch.rand(visual.shape, generator=gen)
    return Batch(
        audio=torch.where(audio_mask[..., None], audio, audio_noise),
        audio_mask=audio_mask,
        visual=torch.where(visual_mask[..., None, None], visual, visual_noise),
        visual_mask=visual_mask,
        labels=batch.labels,
        label_known=batch.label_known,
    )
