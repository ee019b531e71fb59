"""Utterance functionals: fixed statistics of a clip's normalised log-mel, for the model's head.

On a corpus of about a thousand clips a linear model over such statistics (per-bin level,
spread, percentiles and dynamics, and the spread of the frame energy) beats the transformer
trained from scratch (RAVDESS speech, test actors: macro-F1 0.46 against 0.40). Joined to the
pooled transformer state, the head starts from what that baseline knows and the transformer adds
to it.
Every statistic is over real frames only, so padding changes nothing.
"""

from __future__ import annotations

import torch

PER_BIN = 8  # mean, std, 10th / 50th / 90th percentile, max, delta std, mean |delta|
PER_CLIP = 2  # frame-energy std and 90-10 percentile range
PERCENTILES = (0.1, 0.5, 0.9)
_EPS = 1e-5  # floor of a variance: a constant bin stays finite


def functionals_size(bins: int) -> int:
    """Length of the functionals vector of a (T, bins) clip."""
    return PER_BIN * bins + PER_CLIP


def _mean_std(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, F), (B, T) -> (B, F) mean and standard deviation over real steps (0 with none)."""
    weights = mask.to(x.dtype)[..., None]  # (B, T, 1)
    count = weights.sum(dim=1).clamp(min=1.0)  # (B, 1)
    mean = (x * weights).sum(dim=1) / count  # (B, F)
    var = (((x - mean[:, None]) * weights) ** 2).sum(dim=1) / count  # (B, F)
    return mean, torch.sqrt(var + _EPS)


def _percentiles(x: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """(B, T, F), (B, T) prefix mask -> one (B, F) per `PERCENTILES`, linear interpolation between
    the real steps as numpy's default (padding sorts last and is never reached)."""
    padded = torch.where(mask[..., None], x, torch.full_like(x, float("inf")))
    ordered = padded.sort(dim=1).values  # (B, T, F)
    last = (mask.sum(dim=1) - 1).clamp(min=0).to(x.dtype)  # (B,) index of the last real step
    out = []
    for q in PERCENTILES:
        position = q * last  # (B,)
        low = position.floor().long()  # (B,)
        high = torch.minimum(low + 1, last.long())  # (B,)
        frac = (position - low.to(x.dtype))[:, None]  # (B, 1)
        index = torch.stack([low, high], dim=1)[..., None].expand(-1, -1, x.shape[-1])  # (B, 2, F)
        low_v, high_v = ordered.gather(1, index).unbind(dim=1)  # 2 x (B, F)
        out.append(low_v + frac * (high_v - low_v))
    return out


def utterance_functionals(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, F) normalised features, (B, T) prefix mask -> (B, 8F + 2) functionals.

    A sample without a real frame gets zeros.
    """
    mean, std = _mean_std(x, mask)
    p10, p50, p90 = _percentiles(x, mask)
    peak = torch.where(mask[..., None], x, torch.full_like(x, float("-inf"))).amax(dim=1)  # (B, F)
    delta = x[:, 1:] - x[:, :-1]  # (B, T - 1, F)
    delta_mask = mask[:, 1:] & mask[:, :-1]  # (B, T - 1)
    _, delta_std = _mean_std(delta, delta_mask)
    delta_abs, _ = _mean_std(delta.abs(), delta_mask)
    energy = x.mean(dim=-1, keepdim=True)  # (B, T, 1)
    _, energy_std = _mean_std(energy, mask)
    e10, _, e90 = _percentiles(energy, mask)
    parts = [mean, std, p10, p50, p90, peak, delta_std, delta_abs, energy_std, e90 - e10]
    out = torch.cat(parts, dim=-1)  # (B, 8F + 2)
    return torch.where(mask.any(dim=1)[:, None], out, torch.zeros_like(out))
