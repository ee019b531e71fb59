"""The cross-modal transformer: one set of weights for audio+visual, audio-only and visual-only input.

INTERFACE STUB, owned by the model helper: implement, keep the public names.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from avemo_core.config import FrozenConfig
from avemo_core.data import Batch


@dataclasses.dataclass(frozen=True)
class ModelConfig(FrozenConfig):
    audio_dims: int = 80  # log-mel bins of the input
    visual_px: int = 64  # side of the square grey face crop
    num_labels: int = 6  # one logit per emotion
    d_model: int = 128  # width D of both streams

    @classmethod
    def named(cls, size: str, **overrides: object) -> ModelConfig:
        """`tiny` (tests) or `base` (real use), with optional field overrides."""
        raise NotImplementedError


@dataclasses.dataclass
class Encoded:
    seq: torch.Tensor  # (B, T', D)
    mask: torch.Tensor  # (B, T') bool, True on real steps; all False for a sample without this modality


class CrossModalTransformer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    def encode_audio(self, audio: torch.Tensor, audio_mask: torch.Tensor) -> Encoded:
        """(B, Ta, F), (B, Ta) -> Encoded (B, Ta', D)."""
        raise NotImplementedError

    def encode_visual(self, visual: torch.Tensor, visual_mask: torch.Tensor) -> Encoded:
        """(B, Tv, H, W), (B, Tv) -> Encoded (B, Tv, D)."""
        raise NotImplementedError

    def fuse(self, audio: Encoded | None, visual: Encoded | None) -> torch.Tensor:
        """Cross-modal blocks + masked pooling + head -> (B, num_labels) logits. None = stream absent."""
        raise NotImplementedError

    def forward(self, batch: Batch, condition: str = "av") -> torch.Tensor:
        """Logits (B, num_labels) under condition `av`, `a` or `v`."""
        raise NotImplementedError
