"""Interactive co-learning: each batch trains the av, a and v views with two-way knowledge transfer.

INTERFACE STUB, owned by the model helper: implement, keep the public names.
"""

from __future__ import annotations

import dataclasses

import torch

from avemo_core.config import FrozenConfig
from avemo_core.data import Batch
from avemo_core.model import CrossModalTransformer

MODES = ("colearn", "av", "audio", "visual")


@dataclasses.dataclass(frozen=True)
class CoLearningConfig(FrozenConfig):
    mode: str = "colearn"  # colearn | av (conventional) | audio | visual (single-modal baselines)
    transfer_to_single: float = 1.0  # weight of KD av -> a and av -> v (0 turns it off)
    transfer_to_av: float = 0.5  # weight of KD a,v -> av (0 turns it off)
    temperature: float = 2.0  # soft-target temperature of the transfer terms
    modality_dropout: float = 0.0  # `av` mode ablation: probability of dropping one modality per sample


@dataclasses.dataclass
class LossOutput:
    loss: torch.Tensor  # scalar to backpropagate
    parts: dict[str, float]  # e.g. bce_av, bce_a, bce_v, kd_to_single, kd_to_av
    logits: dict[str, torch.Tensor]  # condition -> (B, E) logits of the views that ran


def colearning_loss(model: CrossModalTransformer, batch: Batch, config: CoLearningConfig) -> LossOutput:
    raise NotImplementedError
