"""The real-speech recipe: corpus normalisation, statistics pooling, SpecAugment, schedule."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from avemo_core.augment import augment_batch, spec_augment
from avemo_core.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from avemo_core.config import ConfigError
from avemo_core.data import collate
from avemo_core.labels import EMOTIONS
from avemo_core.model import CrossModalTransformer, ModelConfig, masked_stats
from avemo_core.training import (
    TrainConfig,
    feature_statistics,
    fit_normalisation,
    lr_factor,
    make_optimizer,
    set_epoch_lr,
)
from tests.avemo_core.model_batches import pad_batch, random_batch


def tiny(**overrides: object) -> CrossModalTransformer:
    torch.manual_seed(0)
    return CrossModalTransformer(ModelConfig.named("tiny", **overrides)).eval()


def test_recipe_is_the_default() -> None:
    config = ModelConfig()
    assert (config.audio_norm, config.pooling) == ("corpus", "stats")
    train = TrainConfig()
    assert train.lr_schedule == "cosine" and train.warmup_epochs >= 1
    assert train.epochs >= 30 and ModelConfig.named("small").dropout > 0.0
    small = ModelConfig.named("small")
    assert (small.audio_norm, small.functionals_norm) == ("speaker", "speaker")
    assert small.members == 3  # an ensemble: docs/results_real_speech.md
    with pytest.raises(ConfigError, match="audio_norm"):
        ModelConfig(audio_norm="global")
    with pytest.raises(ConfigError, match="pooling"):
        ModelConfig(pooling="max")
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")


def test_feature_statistics_count_real_frames_only() -> None:
    batch = random_batch(3, audio_frames=(5, 0, 9, 2))
    padded = pad_batch(batch, extra_audio=6, extra_visual=0)  # noise in every padded frame
    mean, std = feature_statistics([padded])
    real = np.concatenate(
        [batch.audio[i, : int(batch.audio_mask[i].sum())].numpy() for i in range(len(batch))]
    )  # (16 frames, 80)
    assert real.shape == (16, 80)
    np.testing.assert_allclose(mean.numpy(), real.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std.numpy(), real.std(axis=0), rtol=1e-4, atol=1e-5)
    assert feature_statistics([random_batch(0, audio_frames=(0, 0), visual_frames=(3, 4))]) is None


def test_corpus_normalisation_is_applied_and_saved_with_the_weights(tmp_path: Path) -> None:
    model = tiny()
    batch = random_batch(1, audio_frames=(30, 12, 0, 21))
    before = model(batch, "a")
    assert fit_normalisation(model, [batch])
    mean, std = feature_statistics([batch])
    after = model(batch, "a")
    assert not torch.allclose(before, after)
    # Normalising inside the model equals feeding features normalised by hand to a model
    # whose statistics are the identity (mean 0, std 1).
    identity = tiny()
    by_hand = dataclasses.replace(batch, audio=(batch.audio - mean) / std)
    torch.testing.assert_close(identity(by_hand, "a"), after, rtol=1e-4, atol=1e-5)
    save_checkpoint(
        tmp_path / "ckpt",
        Checkpoint(
            model=model,
            model_config=model.config,
            thresholds={"a": [0.5] * len(EMOTIONS)},
            labels=list(EMOTIONS),
            feature_config={},
            metadata={},
        ),
    )
    loaded = load_checkpoint(tmp_path / "ckpt").model
    torch.testing.assert_close(loaded.audio_front.audio_mean, mean)
    torch.testing.assert_close(loaded(batch, "a"), after)


def test_utterance_normalisation_has_no_statistics_to_fit() -> None:
    model = tiny(audio_norm="utterance")
    assert not fit_normalisation(model, [random_batch(0)])
    assert "audio_front.audio_mean" not in model.state_dict()
    with pytest.raises(ValueError, match="corpus"):
        model.audio_front.set_normalisation(torch.zeros(80), torch.ones(80))


def test_statistics_pooling_shape_and_masking() -> None:
    gen = torch.Generator().manual_seed(0)
    seq = torch.randn(3, 7, 4, generator=gen)
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4, [False] * 7])
    pooled = masked_stats(seq, mask)
    assert pooled.shape == (3, 8)
    torch.testing.assert_close(pooled[1, :4], seq[1, :3].mean(0))
    torch.testing.assert_close(pooled[1, 4:], torch.sqrt(seq[1, :3].var(0, unbiased=False) + 1e-5))
    noisy = seq.clone()
    noisy[1, 3:] = 1e3  # padding does not leak in
    torch.testing.assert_close(masked_stats(noisy, mask)[1], pooled[1])
    assert torch.isfinite(pooled[2]).all()  # a sample without steps stays finite
    model = tiny()
    assert model.head[1].in_features == 2 * model.config.d_model
    assert tiny(pooling="mean").head[1].in_features == model.config.d_model


def test_spec_augment_masks_inside_real_frames_with_the_clip_mean() -> None:
    lengths = (50, 20, 0, 35)
    batch = random_batch(2, audio_frames=lengths, visual_frames=(1, 1, 1, 1))
    gen = torch.Generator().manual_seed(5)
    out = spec_augment(batch.audio, batch.audio_mask, 2, 10, 2, 8, generator=gen)
    changed = out != batch.audio  # (B, T, F)
    assert changed.any()
    assert not changed[~batch.audio_mask].any()  # padding untouched
    for i, length in enumerate(lengths):
        if length == 0:
            continue
        clip = batch.audio[i, :length]
        fill = clip.mean(0)  # (F,)
        hit = changed[i, :length]  # (T, F)
        assert torch.allclose(out[i, :length][hit], fill.expand(length, -1)[hit])
        # Time spans cover at most 2 * 10 frames; frequency bands at most 2 * 8 bins.
        full_bins = hit.all(dim=0)  # bins masked for the whole clip
        assert int(full_bins.sum()) <= 16
        rows = (out[i, :length] == fill).all(dim=1) & ~(clip == fill).all(dim=1)
        assert int(rows.sum()) <= 20
    same = augment_batch(batch, 0, 10, 0, 8)
    assert same is batch


def test_spec_augment_on_a_clip_shorter_than_the_span() -> None:
    batch = collate([np.ones((3, 80), np.float16)], [np.zeros((0, 64, 64), np.uint8)], [[0] * 6])
    out = spec_augment(batch.audio, batch.audio_mask, 3, 40, 0, 0)
    assert out.shape == batch.audio.shape and torch.isfinite(out).all()


def test_warm_up_then_cosine_schedule_values() -> None:
    config = TrainConfig(epochs=5, warmup_epochs=1, lr=0.01)
    factors = [lr_factor(e, config) for e in range(5)]
    expected = [
        0.5,
        1.0,
        0.5 * (1 + math.cos(math.pi / 4)),
        0.5,
        0.5 * (1 + math.cos(0.75 * math.pi)),
    ]
    assert factors == pytest.approx(expected)
    constant = config.replace(lr_schedule="constant", warmup_epochs=2)
    assert [lr_factor(e, constant) for e in range(4)] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    optimizer = make_optimizer(tiny(), config)
    assert set_epoch_lr(optimizer, 3, config) == pytest.approx(0.005)
    assert all(g["lr"] == pytest.approx(0.005) for g in optimizer.param_groups)
