"""SpecAugment-style masking of log-mel batches: it keeps a small real corpus from being memorised.

A few random time spans and mel-bin bands of each clip are replaced by that clip's own mean
feature vector, so a masked region carries no information but no out-of-range value either. Spans
fall inside the clip's real frames only; padding stays as it was.
"""

from __future__ import annotations

import dataclasses

import torch

from avemo_core.data import Batch


def _spans(
    count: int, max_width: int, limit: torch.Tensor, size: int, generator: torch.Generator | None
) -> torch.Tensor:
    """(B, size) bool: `count` spans per row, each up to `max_width` wide, inside [0, limit)."""
    rows = limit.shape[0]
    positions = torch.arange(size, device=limit.device)[None, :]  # (1, size)
    covered = torch.zeros(rows, size, dtype=torch.bool, device=limit.device)
    for _ in range(count):
        width = torch.randint(0, max_width + 1, (rows,), generator=generator).to(limit.device)
        width = torch.minimum(width, limit)  # (B,)
        start = torch.rand(rows, generator=generator).to(limit.device) * (limit - width + 1)
        start = start.long().clamp(max=(limit - width).clamp(min=0))  # (B,)
        covered |= (positions >= start[:, None]) & (positions < (start + width)[:, None])
    return covered


def spec_augment(
    audio: torch.Tensor,
    mask: torch.Tensor,
    time_masks: int,
    time_mask_frames: int,
    freq_masks: int,
    freq_mask_bins: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, T, F) features, (B, T) prefix mask -> masked copy (B, T, F).

    `time_masks` spans of up to `time_mask_frames` frames and `freq_masks` bands of up to
    `freq_mask_bins` bins per clip, filled with the clip's mean over its real frames.
    """
    batch, steps, bins = audio.shape
    weights = mask.to(audio.dtype)[..., None]  # (B, T, 1)
    fill = (audio * weights).sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True).clamp(
        min=1.0
    )  # (B, 1, F)
    lengths = mask.sum(dim=1)  # (B,)
    in_time = _spans(time_masks, time_mask_frames, lengths, steps, generator)  # (B, T)
    in_freq = _spans(
        freq_masks, freq_mask_bins, torch.full_like(lengths, bins), bins, generator
    )  # (B, F)
    masked = (in_time[:, :, None] | in_freq[:, None, :]) & mask[:, :, None]  # (B, T, F)
    return torch.where(masked, fill.expand(batch, steps, bins), audio)


def augment_batch(
    batch: Batch,
    time_masks: int,
    time_mask_frames: int,
    freq_masks: int,
    freq_mask_bins: int,
    generator: torch.Generator | None = None,
) -> Batch:
    """The batch with its audio masked by `spec_augment` (visual and labels untouched)."""
    if time_masks == 0 and freq_masks == 0:
        return batch
    audio = spec_augment(
        batch.audio,
        batch.audio_mask,
        time_masks,
        time_mask_frames,
        freq_masks,
        freq_mask_bins,
        generator,
    )
    return dataclasses.replace(batch, audio=audio)
