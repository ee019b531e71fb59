"""The plain training loop: one process, no Ray. Ray Train (pipelines/) wraps these same functions.

INTERFACE STUB, owned by the model helper: implement, keep the public names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import torch

from avemo_core.colearning import CoLearningConfig
from avemo_core.config import FrozenConfig
from avemo_core.data import Batch
from avemo_core.model import CrossModalTransformer


@dataclasses.dataclass(frozen=True)
class TrainConfig(FrozenConfig):
    epochs: int = 10  # passes over the training split
    batch_size: int = 16  # clips per step per worker
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 0.01  # AdamW weight decay
    grad_clip: float = 1.0  # max global grad norm (0 = off)
    seed: int = 0  # seeds torch/numpy for the run
    max_audio_frames: int = 1000  # clips are cut to this many audio frames (10 s at 10 ms)
    max_visual_frames: int = 50  # and this many sampled video frames


def make_optimizer(model: CrossModalTransformer, config: TrainConfig) -> torch.optim.Optimizer:
    raise NotImplementedError


def train_epoch(
    model: CrossModalTransformer,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    colearning: CoLearningConfig,
    config: TrainConfig,
    device: torch.device,
) -> dict[str, float]:
    """One pass; returns mean loss parts and `samples`."""
    raise NotImplementedError


def predict(
    model: CrossModalTransformer, batches: Iterable[Batch], condition: str, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """(N, E) probabilities and (N, E) labels of the labelled samples that can form `condition`."""
    raise NotImplementedError
