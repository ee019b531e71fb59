"""Feature-space augmentation of log-mel batches: it keeps a small real corpus from being memorised.

- SpecAugment masking: a few random time spans and mel-bin bands of each clip are replaced by that
  clip's own mean feature vector, so a masked region carries no information but no out-of-range
  value either. Spans fall inside the clip's real frames only; padding stays as it was.
- Mel shift: each clip's spectrum moves up or down a few mel bins (the edge bin repeats), a cheap
  vocal-tract-length perturbation: a new speaker's formants sit a little higher or lower.
- Time stretch: each clip's time axis is resampled by a random factor near 1 (linear
  interpolation), a new speaker's speaking rate.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

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


def mel_shift(
    audio: torch.Tensor, max_bins: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B, T, F) -> (B, T, F): each clip shifted by a random whole number of bins in
    [-max_bins, max_bins] along the mel axis, the edge bin repeated into the bins it vacates.
    Padded frames stay padded (every bin of a frame moves together)."""
    batch, _, bins = audio.shape
    shifts = torch.randint(-max_bins, max_bins + 1, (batch,), generator=generator)  # (B,)
    source = torch.arange(bins)[None, :] - shifts[:, None]  # (B, F): out bin f reads bin f - s
    source = source.clamp(0, bins - 1).to(audio.device)
    return torch.gather(audio, 2, source[:, None, :].expand_as(audio))


def time_stretch(
    audio: torch.Tensor,
    mask: torch.Tensor,
    max_change: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, F), (B, T) prefix mask -> stretched (B, T', F), (B, T') prefix mask.

    Each clip's real frames are resampled (linear interpolation) to round(length * r) frames,
    r uniform in [1 - max_change, 1 + max_change]; the batch is re-padded with zeros.
    """
    lengths = mask.sum(dim=1).tolist()  # (B,)
    factors = 1.0 + max_change * (2.0 * torch.rand(len(lengths), generator=generator) - 1.0)
    clips: list[torch.Tensor] = []
    for row, length, factor in zip(audio, lengths, factors.tolist(), strict=True):
        if length == 0:
            clips.append(row[:0])
            continue
        target = max(1, round(length * factor))
        real = row[:length].T[None]  # (1, F, length)
        clips.append(F.interpolate(real, size=target, mode="linear", align_corners=True)[0].T)
    steps = max(1, max(len(c) for c in clips))
    out = audio.new_zeros(len(clips), steps, audio.shape[2])  # (B, T', F)
    out_mask = torch.zeros(len(clips), steps, dtype=torch.bool, device=mask.device)  # (B, T')
    for i, clip in enumerate(clips):
        out[i, : len(clip)] = clip
        out_mask[i, : len(clip)] = True
    return out, out_mask


def augment_batch(
    batch: Batch,
    time_masks: int,
    time_mask_frames: int,
    freq_masks: int,
    freq_mask_bins: int,
    generator: torch.Generator | None = None,
    mel_shift_bins: int = 0,
    time_stretch_max: float = 0.0,
) -> Batch:
    """The batch with its audio stretched, mel-shifted and masked (visual and labels untouched)."""
    audio, mask = batch.audio, batch.audio_mask
    if time_stretch_max > 0.0:
        audio, mask = time_stretch(audio, mask, time_stretch_max, generator)
    if mel_shift_bins > 0:
        audio = mel_shift(audio, mel_shift_bins, generator)
    if time_masks > 0 or freq_masks > 0:
        audio = spec_augment(
            audio, mask, time_masks, time_mask_frames, freq_masks, freq_mask_bins, generator
        )
    if audio is batch.audio:
        return batch
    return dataclasses.replace(batch, audio=audio, audio_mask=mask)
