"""Ensembles: members trained on their own losses, probabilities averaged, saved and loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avemo_core import inference
from avemo_core.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from avemo_core.colearning import CoLearningConfig, colearning_loss
from avemo_core.config import ConfigError
from avemo_core.data import Batch, collate
from avemo_core.ensemble import TransformerEnsemble, build_model, networks
from avemo_core.labels import CONDITIONS, EMOTIONS
from avemo_core.model import CrossModalTransformer, ModelConfig
from avemo_core.training import fit_normalisation


def _batch(config: ModelConfig, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    audio = [rng.standard_normal((n, config.audio_dims)).astype(np.float32) for n in (60, 35, 0)]
    visual = [
        rng.integers(0, 256, (n, config.visual_px, config.visual_px), np.uint8) for n in (6, 0, 4)
    ]
    labels = rng.integers(0, 2, (3, config.num_labels)).astype(np.float32)
    return collate(audio, visual, labels)


def _ensemble(members: int = 3, **overrides: object) -> TransformerEnsemble:
    torch.manual_seed(0)
    model = build_model(ModelConfig.named("tiny", members=members, **overrides))
    assert isinstance(model, TransformerEnsemble)
    return model


def test_one_member_is_a_plain_network_and_members_differ() -> None:
    assert isinstance(build_model(ModelConfig.named("tiny")), CrossModalTransformer)
    model = _ensemble(3)
    assert len(networks(model)) == 3
    heads = [member.head[1].weight for member in model.members]
    assert not torch.equal(heads[0], heads[1]) and not torch.equal(heads[1], heads[2])
    with pytest.raises(ConfigError, match="members"):
        ModelConfig.named("tiny", members=0)


def test_fused_probability_is_the_members_mean() -> None:
    model = _ensemble(3).eval()
    batch = _batch(model.config)
    probs = inference.probabilities(model, batch, CONDITIONS)
    for condition in CONDITIONS:
        per_member = [
            inference.probabilities(m, batch, [condition])[condition] for m in model.members
        ]
        np.testing.assert_allclose(probs[condition], np.mean(per_member, axis=0), atol=1e-5)
    # rows that cannot form a condition stay NaN, as for one network
    assert np.isnan(probs["av"][1:]).all() and np.isnan(probs["a"][2]).all()


@pytest.mark.parametrize("mode", ["colearn", "audio", "av", "visual"])
def test_loss_is_the_mean_of_each_members_own_loss(mode: str) -> None:
    model = _ensemble(2).eval()  # eval: no dropout, so the forward passes repeat exactly
    batch = _batch(model.config)
    config = CoLearningConfig(mode=mode)
    together = colearning_loss(model, batch, config)
    alone = [colearning_loss(member, batch, config) for member in model.members]
    for name, value in together.parts.items():
        assert value == pytest.approx(np.mean([out.parts[name] for out in alone]), rel=1e-5)
    # each member's gradient comes from its own loss only (no co-adaptation through a mean logit)
    together.loss.backward()
    got = model.members[1].head[1].weight.grad.clone()
    model.zero_grad()
    (alone[1].loss / 2).backward()
    torch.testing.assert_close(got, model.members[1].head[1].weight.grad)


def test_every_member_gets_the_training_statistics() -> None:
    model = _ensemble(2, utterance_functionals=True)
    batches = [_batch(model.config, seed) for seed in range(3)]
    assert fit_normalisation(model, batches)
    first, second = model.members
    torch.testing.assert_close(first.audio_front.audio_mean, second.audio_front.audio_mean)
    torch.testing.assert_close(
        first.functionals_head.functionals_mean, second.functionals_head.functionals_mean
    )
    assert first.audio_front.audio_mean.abs().sum() > 0


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _ensemble(3).eval()
    batch = _batch(model.config)
    checkpoint = Checkpoint(
        model=model,
        model_config=model.config,
        thresholds={c: [0.5] * model.config.num_labels for c in CONDITIONS},
        labels=list(EMOTIONS),
        feature_config={},
        metadata={"mode": "colearn"},
    )
    loaded = load_checkpoint(save_checkpoint(tmp_path / "ckpt", checkpoint))
    assert isinstance(loaded.model, TransformerEnsemble) and loaded.model_config.members == 3
    before = inference.probabilities(model, batch, CONDITIONS)
    after = inference.probabilities(loaded.model, batch, CONDITIONS)
    for condition in CONDITIONS:
        np.testing.assert_array_equal(before[condition], after[condition])
