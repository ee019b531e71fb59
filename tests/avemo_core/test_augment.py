"""Feature-space augmentation: masks, mel shift and time stretch keep shapes, masks and content."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avemo_core.augment import augment_batch, mel_shift, spec_augment, time_stretch
from avemo_core.colearning import CoLearningConfig
from avemo_core.config import ConfigError
from avemo_core.model import CrossModalTransformer, ModelConfig
from avemo_core.training import TrainConfig, make_optimizer, train_epoch
from tests.avemo_core.model_batches import random_batch


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mel_shift_moves_every_frame_by_one_whole_shift_per_clip() -> None:
    batch = random_batch(0, audio_frames=(20, 13, 0, 7), visual_frames=(0, 0, 0, 0))
    shifted = mel_shift(batch.audio, 3, generator())
    assert shifted.shape == batch.audio.shape
    seen = set()
    for i in range(len(batch)):
        length = int(batch.audio_mask[i].sum())
        if length == 0:
            continue
        matches = [
            s
            for s in range(-3, 4)
            if torch.equal(
                shifted[i, :length, max(s, 0) : 80 + min(s, 0)],
                batch.audio[i, :length, max(-s, 0) : 80 - max(s, 0)],
            )
        ]
        assert len(matches) >= 1, i
        shift = matches[0]
        seen.add(shift)
        if shift > 0:  # the vacated low bins repeat the lowest source bin
            assert torch.equal(
                shifted[i, :length, :shift], batch.audio[i, :length, :1].expand(-1, shift)
            )
    assert torch.equal(mel_shift(batch.audio, 0, generator()), batch.audio)
    many = mel_shift(batch.audio.repeat(16, 1, 1), 3, generator(1))
    assert not torch.equal(many, batch.audio.repeat(16, 1, 1))  # some clip did move


@pytest.mark.parametrize("max_change", [0.1, 0.3])
def test_time_stretch_resamples_each_clip_within_its_factor(max_change: float) -> None:
    batch = random_batch(1, audio_frames=(40, 21, 0, 9), visual_frames=(0, 0, 0, 0))
    audio, mask = time_stretch(batch.audio, batch.audio_mask, max_change, generator())
    assert audio.shape[0] == mask.shape[0] == len(batch) and audio.shape[1] == mask.shape[1]
    for i, length in enumerate(batch.audio_mask.sum(dim=1).tolist()):
        new = int(mask[i].sum())
        assert mask[i, :new].all() and not mask[i, new:].any()  # still a prefix
        if length == 0:
            assert new == 0
            continue
        assert (1 - max_change) * length - 1 <= new <= (1 + max_change) * length + 1
        # Linear interpolation with aligned corners keeps the first and last frames.
        torch.testing.assert_close(audio[i, 0], batch.audio[i, 0])
        torch.testing.assert_close(audio[i, new - 1], batch.audio[i, length - 1])
        assert (audio[i, new:] == 0).all()


def test_spec_augment_fills_inside_real_frames_only() -> None:
    batch = random_batch(2, audio_frames=(30, 12, 0, 25), visual_frames=(0, 0, 0, 0))
    masked = spec_augment(batch.audio, batch.audio_mask, 2, 10, 2, 8, generator())
    padding = ~batch.audio_mask
    assert torch.equal(masked[padding], batch.audio[padding])
    assert not torch.equal(masked, batch.audio)


def test_augment_batch_chains_and_leaves_labels_and_visual() -> None:
    batch = random_batch(3)
    assert augment_batch(batch, 0, 40, 0, 10) is batch  # everything off: the same batch
    out = augment_batch(batch, 1, 10, 1, 8, generator(), mel_shift_bins=2, time_stretch_max=0.1)
    assert out.audio.shape[0] == len(batch) and out.audio.shape[1] == out.audio_mask.shape[1]
    assert torch.equal(out.has_audio, batch.has_audio)
    assert torch.equal(out.visual, batch.visual) and torch.equal(out.labels, batch.labels)
    assert np.isfinite(out.audio.numpy()).all()


def test_train_config_checks_the_augmentation_fields() -> None:
    assert TrainConfig().mel_shift_bins == 0 and TrainConfig().time_stretch == 0.0  # off
    with pytest.raises(ConfigError, match="mel_shift_bins"):
        TrainConfig(mel_shift_bins=-1)
    with pytest.raises(ConfigError, match="time_stretch"):
        TrainConfig(time_stretch=1.0)


def test_train_epoch_runs_with_every_augmentation_on() -> None:
    torch.manual_seed(0)
    model = CrossModalTransformer(ModelConfig.named("tiny"))
    config = TrainConfig(time_masks=1, freq_masks=1, mel_shift_bins=2, time_stretch=0.1)
    stats = train_epoch(
        model,
        [random_batch(4)],
        make_optimizer(model, config),
        CoLearningConfig(mode="audio"),
        config,
        torch.device("cpu"),
    )
    assert stats["samples"] == 4.0 and np.isfinite(stats["loss"])
