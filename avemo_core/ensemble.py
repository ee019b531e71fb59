"""Several cross-modal transformers trained side by side, their probabilities averaged.

Why: on a small real corpus one network's validation score swings by a few points with its
random initialisation, and the thresholds tuned on it inherit the swing; the mean of a few
independently initialised networks is steadier. Each member is a whole `CrossModalTransformer`
with its own loss (`colearning.colearning_loss` scores every member on its own, so they do not
co-adapt into one wider model); they differ by initialisation and dropout, and see the same
batches in the same order. Measured on RAVDESS speech (docs/results_real_speech.md; folds of
four of actors 1-20, `small`, 40 epochs, the epoch and the thresholds chosen on two valid actors
and scored on the other two): the mean of three separately trained networks scored 0.558
against 0.541 for one network (five folds, higher in all five); three members trained side by
side here 0.564 against 0.541 (higher in four folds of five). The cost is the members' count: an
epoch takes 3x as long. On the test actors the gain did not show where speakers are named
(macro-F1 0.531 against 0.533) and did where they are not (0.445 against 0.417).

Training goes through `forward` (so a DistributedDataParallel wrapper sees the whole step): it
gives the members' logits stacked, (K, B, E). Inference goes through `encode_*` and `fuse`, as
for one network: `fuse` gives the logit of the members' mean probability, (B, E).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from avemo_core.data import Batch
from avemo_core.model import CrossModalTransformer, Encoded, ModelConfig

# Keeps the logit of a mean probability finite where every member is certain.
_PROB_EPS = 1e-6


class TransformerEnsemble(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        member = dataclasses.replace(config, members=1)
        self.members = nn.ModuleList(CrossModalTransformer(member) for _ in range(config.members))

    def forward(
        self, batch: Batch, condition: str = "av", views: Sequence[str] | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Each member's `forward`, stacked: (K, B, num_labels), or a dict of them with `views`."""
        outputs = [member(batch, condition, views) for member in self.members]
        if views is None:
            return torch.stack(outputs)
        return {c: torch.stack([out[c] for out in outputs]) for c in outputs[0]}

    def encode_batch_audio(self, batch: Batch) -> list[Encoded]:
        return [member.encode_batch_audio(batch) for member in self.members]

    def encode_visual(self, visual: torch.Tensor, visual_mask: torch.Tensor) -> list[Encoded]:
        return [member.encode_visual(visual, visual_mask) for member in self.members]

    def fuse(self, audio: list[Encoded] | None, visual: list[Encoded] | None) -> torch.Tensor:
        """(B, num_labels) logit of the members' mean probability; None: stream absent."""
        probs = [
            torch.sigmoid(
                member.fuse(
                    audio[k] if audio is not None else None,
                    visual[k] if visual is not None else None,
                ).float()
            )
            for k, member in enumerate(self.members)
        ]
        return torch.logit(torch.stack(probs).mean(dim=0), eps=_PROB_EPS)


# What the training, inference and checkpoint code takes: one network or an ensemble.
Model = CrossModalTransformer | TransformerEnsemble


def build_model(config: ModelConfig) -> Model:
    """One network, or an ensemble of `config.members` of them."""
    return TransformerEnsemble(config) if config.members > 1 else CrossModalTransformer(config)


def networks(model: Model) -> list[CrossModalTransformer]:
    """The networks of a model (its members, or itself), e.g. to give each the same statistics."""
    return list(model.members) if isinstance(model, TransformerEnsemble) else [model]
