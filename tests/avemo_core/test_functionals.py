"""Utterance functionals: numpy's statistics over real frames, standardised by training data, and
a branch that old checkpoints (without it) still load around. Padding, batch mates and absent
modalities are covered with the branch on by the model fixture of test_model.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from avemo_core.checkpoint import META_FILE, Checkpoint, load_checkpoint, save_checkpoint
from avemo_core.functionals import functionals_size, utterance_functionals
from avemo_core.labels import EMOTIONS
from avemo_core.model import CrossModalTransformer, ModelConfig
from avemo_core.training import fit_normalisation, functionals_statistics
from tests.avemo_core.model_batches import random_batch


def numpy_functionals(clip: np.ndarray) -> np.ndarray:
    """The reference: what a classical baseline computes per clip with numpy (standard deviations
    with the model's variance floor of 1e-5)."""
    delta = np.diff(clip, axis=0)
    energy = clip.mean(axis=1)
    e10, e90 = np.percentile(energy, [10, 90])
    parts = [
        clip.mean(0),
        np.sqrt(clip.var(0) + 1e-5),
        *np.percentile(clip, [10, 50, 90], axis=0),
        clip.max(0),
    ]
    parts += [np.sqrt(delta.var(0) + 1e-5), np.abs(delta).mean(0)]
    parts += [[np.sqrt(energy.var() + 1e-5), e90 - e10]]
    return np.concatenate(parts)


def test_functionals_match_numpy_over_real_frames_only() -> None:
    rng = np.random.default_rng(0)
    lengths = (37, 20, 2)
    clips = [rng.normal(size=(n, 5)).astype(np.float32) for n in lengths]
    x = torch.full((4, 37, 5), 99.0)  # padding far outside the data: it must never count
    mask = torch.zeros(4, 37, dtype=torch.bool)
    for i, clip in enumerate(clips):
        x[i, : len(clip)] = torch.from_numpy(clip)
        mask[i, : len(clip)] = True
    out = utterance_functionals(x, mask).numpy()
    assert out.shape == (4, functionals_size(5)) == (4, 42)
    for i, clip in enumerate(clips):
        np.testing.assert_allclose(out[i], numpy_functionals(clip), atol=1e-4)
    assert (out[3] == 0.0).all()  # a sample without frames: zeros, not inf or NaN


def tiny_with_functionals() -> CrossModalTransformer:
    torch.manual_seed(0)
    return CrossModalTransformer(ModelConfig.named("tiny", utterance_functionals=True)).eval()


def test_fit_standardises_the_training_functionals_and_they_move_the_logits() -> None:
    model = tiny_with_functionals()
    batches = [random_batch(s, audio_frames=(30, 12, 0, 21)) for s in (1, 2, 3)]
    before = model(batches[0], "a")
    assert fit_normalisation(model, batches)
    mean, std = functionals_statistics(model, batches)
    head = model.functionals_head
    torch.testing.assert_close(head.functionals_mean, mean)
    torch.testing.assert_close(head.functionals_std, std.clamp(min=1e-3))
    # Over the nine clips with audio (not the three without), the standardised functionals have
    # mean 0 and, where a functional varies, standard deviation 1.
    values = torch.cat(
        [
            utterance_functionals(model.audio_front.normalise(b.audio, b.audio_mask), b.audio_mask)[
                b.audio_mask.any(dim=1)
            ]
            for b in batches
        ]
    )
    assert values.shape[0] == 9
    standard = (values - head.functionals_mean) / head.functionals_std
    torch.testing.assert_close(standard.mean(0), torch.zeros(standard.shape[1]), atol=1e-4, rtol=0)
    varies = values.std(0, unbiased=False) > 1e-2
    assert varies.sum() > 600
    torch.testing.assert_close(
        standard[:, varies].std(0, unbiased=False), torch.ones(int(varies.sum())), atol=1e-3, rtol=0
    )
    assert not torch.allclose(model(batches[0], "a"), before)
    # The branch is live: zeroing its weights changes the audio logits, never the visual ones.
    with torch.no_grad():
        reference_a, reference_v = model(batches[0], "a"), model(batches[0], "v")
        head.linear.weight.zero_()
    assert not torch.allclose(model(batches[0], "a"), reference_a)
    assert torch.equal(model(batches[0], "v"), reference_v)


def test_small_has_functionals_and_checkpoints_without_the_field_still_load(
    tmp_path: Path,
) -> None:
    assert ModelConfig.named("small").utterance_functionals
    assert ModelConfig.named("small").functionals_norm == "speaker"  # where data name speakers
    assert not ModelConfig().utterance_functionals  # the field's default: what old configs mean
    model = tiny_with_functionals()
    fit_normalisation(model, [random_batch(5)])
    for name, net in (("new", model), ("old", CrossModalTransformer(ModelConfig.named("tiny")))):
        path = save_checkpoint(
            tmp_path / name,
            Checkpoint(
                model=net.eval(),
                model_config=net.config,
                thresholds={"a": [0.5] * len(EMOTIONS)},
                labels=list(EMOTIONS),
                feature_config={},
                metadata={},
            ),
        )
        batch = random_batch(6)
        loaded = load_checkpoint(path).model
        torch.testing.assert_close(loaded(batch, "a"), net(batch, "a"))
    keys = load_checkpoint(tmp_path / "new").model.state_dict()
    assert "functionals_head.functionals_mean" in keys
    # A checkpoint written before the field existed: its JSON has no `utterance_functionals`.
    meta = json.loads((tmp_path / "old" / META_FILE).read_text())
    del meta["model_config"]["utterance_functionals"]
    (tmp_path / "old" / META_FILE).write_text(json.dumps(meta))
    loaded = load_checkpoint(tmp_path / "old")
    assert loaded.model.functionals_head is None
    assert "functionals_head.linear.weight" not in loaded.model.state_dict()
