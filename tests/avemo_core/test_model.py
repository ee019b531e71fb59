"""Cross-modal transformer: absent modalities never enter, padding is inert, one set of weights."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from avemo_core.config import ConfigError
from avemo_core.data import Batch
from avemo_core.model import Attention, CrossModalTransformer, ModelConfig
from tests.avemo_core.model_batches import NUM_EMOTIONS, pad_batch, random_batch


@pytest.fixture(params=["conv1d", "conv2d", "conv1d+functionals"])
def model(request: pytest.FixtureRequest) -> CrossModalTransformer:
    """The tiny model with each audio front end, and with the utterance-functionals branch: every
    guarantee below holds for all three."""
    torch.manual_seed(0)
    frontend, _, functionals = request.param.partition("+")
    config = ModelConfig.named(
        "tiny",
        audio_frontend=frontend,
        audio_channels=4,
        utterance_functionals=bool(functionals),
    )
    return CrossModalTransformer(config).eval()


def full_batch(seed: int = 1) -> Batch:
    """Every sample has both modalities, of different lengths (odd ones included)."""
    return random_batch(seed, audio_frames=(37, 22, 41, 9), visual_frames=(9, 3, 7, 10))


def test_named_sizes_and_round_trip() -> None:
    tiny, base = ModelConfig.named("tiny"), ModelConfig.named("base")
    assert tiny.d_model < base.d_model and tiny.cross_layers <= base.cross_layers
    assert ModelConfig.named("tiny", d_model=16).d_model == 16
    assert ModelConfig.from_dict(base.to_dict()) == base
    with pytest.raises(ValueError, match="unknown model size"):
        ModelConfig.named("huge")
    with pytest.raises(ConfigError):
        ModelConfig.named("tiny", num_heads=3)


def test_output_shape_and_finite(model: CrossModalTransformer) -> None:
    batch = random_batch(0)
    for condition in ("av", "a", "v"):
        logits = model(batch, condition)
        assert logits.shape == (len(batch), NUM_EMOTIONS)
        assert torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="unknown condition"):
        model(batch, "x")


def test_audio_only_ignores_every_visual_tensor(model: CrossModalTransformer) -> None:
    batch = full_batch()
    reference = model(batch, "a")
    other = random_batch(7, audio_frames=(1, 1, 1, 1), visual_frames=(2, 12, 0, 5))
    changed = dataclasses.replace(batch, visual=other.visual, visual_mask=other.visual_mask)
    assert torch.equal(model(changed, "a"), reference)
    # ... while the same change does move the av output: visual input is live there.
    assert not torch.allclose(model(changed, "av"), model(batch, "av"))


def test_visual_only_ignores_every_audio_tensor(model: CrossModalTransformer) -> None:
    batch = full_batch()
    reference = model(batch, "v")
    other = random_batch(8, audio_frames=(5, 60, 0, 13), visual_frames=(1, 1, 1, 1))
    changed = dataclasses.replace(batch, audio=other.audio, audio_mask=other.audio_mask)
    assert torch.equal(model(changed, "v"), reference)
    assert not torch.allclose(model(changed, "av"), model(batch, "av"))


@pytest.mark.parametrize(("extra_audio", "extra_visual"), [(1, 1), (7, 2), (64, 13)])
def test_padding_does_not_change_outputs(
    model: CrossModalTransformer, extra_audio: int, extra_visual: int
) -> None:
    batch = random_batch(2)  # includes samples without audio and without visual
    padded = pad_batch(batch, extra_audio, extra_visual)
    for condition in ("av", "a", "v"):
        torch.testing.assert_close(
            model(padded, condition), model(batch, condition), atol=1e-5, rtol=0
        )


def test_sample_alone_equals_sample_in_padded_batch(model: CrossModalTransformer) -> None:
    """Each sample's output is its own: batching with longer samples changes nothing."""
    batch = full_batch()
    together = model(batch, "av")
    for i, (ta, tv) in enumerate([(37, 9), (22, 3), (41, 7), (9, 10)]):
        alone = Batch(
            audio=batch.audio[i : i + 1, :ta],
            audio_mask=batch.audio_mask[i : i + 1, :ta],
            visual=batch.visual[i : i + 1, :tv],
            visual_mask=batch.visual_mask[i : i + 1, :tv],
            labels=batch.labels[i : i + 1],
            label_known=batch.label_known[i : i + 1],
        )
        torch.testing.assert_close(model(alone, "av")[0], together[i], atol=1e-5, rtol=0)


def test_same_weights_serve_all_three_conditions(model: CrossModalTransformer) -> None:
    batch = full_batch()
    outputs = {c: model(batch, c) for c in ("av", "a", "v")}
    assert not torch.allclose(outputs["av"], outputs["a"])
    assert not torch.allclose(outputs["av"], outputs["v"])
    assert not torch.allclose(outputs["a"], outputs["v"])
    # One state dict rebuilds every condition exactly: no per-condition weights exist elsewhere.
    clone = CrossModalTransformer(model.config).eval()
    clone.load_state_dict(model.state_dict())
    for condition, expected in outputs.items():
        assert torch.equal(clone(batch, condition), expected)


def test_absent_visual_sample_in_av_equals_its_audio_only_output(
    model: CrossModalTransformer,
) -> None:
    batch = random_batch(3, audio_frames=(37, 22, 0, 41), visual_frames=(9, 0, 7, 10))
    av, audio_only, visual_only = model(batch, "av"), model(batch, "a"), model(batch, "v")
    assert torch.isfinite(av).all()
    torch.testing.assert_close(av[1], audio_only[1], atol=1e-5, rtol=0)  # sample 1 has no visual
    torch.testing.assert_close(av[2], visual_only[2], atol=1e-5, rtol=0)  # sample 2 has no audio
    assert not torch.allclose(av[0], audio_only[0])  # a full sample does use its visual stream


def test_gradients_stay_finite_with_absent_modalities(model: CrossModalTransformer) -> None:
    model.train()
    batch = random_batch(4)
    model(batch, "av").sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


def test_audio_condition_never_touches_visual_weights(model: CrossModalTransformer) -> None:
    model(full_batch(), "a").sum().backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(grads[n] is None for n in grads if n.startswith(("frame_cnn.", "visual_encoder.")))
    assert all(
        grads[n] is not None for n in grads if n.startswith(("audio_front.", "audio_encoder."))
    )


def test_attention_with_no_real_key_is_finite_and_zero() -> None:
    attention = Attention(8, 2, 0.0)
    x = torch.randn(2, 3, 8)
    context = torch.randn(2, 4, 8)
    mask = torch.tensor([[True, True, False, False], [False, False, False, False]])
    out = attention(x, context, mask)
    assert torch.isfinite(out).all()
    assert torch.equal(out[1], torch.zeros(3, 8))
    assert out[0].abs().sum() > 0


def test_importing_the_model_does_not_import_ray() -> None:
    code = (
        "import sys, avemo_core.model, avemo_core.colearning, avemo_core.training;"
        "assert 'ray' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_views_share_one_encoding_and_match_single_conditions(model: CrossModalTransformer) -> None:
    batch = random_batch(5)
    views = model(batch, views=("av", "a", "v"))
    assert set(views) == {"av", "a", "v"}
    for condition, logits in views.items():
        torch.testing.assert_close(logits, model(batch, condition), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="unknown condition"):
        model(batch, views=("av", "x"))


def test_conv2d_front_end_subsamples_time_by_four_and_shares_kernels_across_bins() -> None:
    torch.manual_seed(0)
    config = ModelConfig.named("tiny", audio_frontend="conv2d", audio_channels=4)
    model = CrossModalTransformer(config).eval()
    batch = random_batch(6, audio_frames=(37, 8, 1, 40), visual_frames=(0, 0, 0, 0))
    encoded = model.encode_audio(batch.audio, batch.audio_mask)
    assert encoded.seq.shape == (4, 10, config.d_model)  # ceil(ceil(40 / 2) / 2) = 10 steps
    assert encoded.mask.sum(dim=1).tolist() == [10, 2, 1, 10]
    convs = [m for m in model.audio_front.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2), (2, 2), (1, 2)]
    # No Conv1d over the mel bins is left: the front end is the 2D one alone.
    assert not any(isinstance(m, torch.nn.Conv1d) for m in model.audio_front.modules())
    with pytest.raises(ConfigError, match="audio_frontend"):
        ModelConfig.named("tiny", audio_frontend="conv3d")


def test_conv2d_output_of_a_frame_ignores_the_rest_of_the_batch() -> None:
    """Per-frame norms: a sample's output does not move when another sample changes (eval)."""
    torch.manual_seed(0)
    model = CrossModalTransformer(
        ModelConfig.named("tiny", audio_frontend="conv2d", audio_channels=4)
    ).eval()
    batch = random_batch(7, audio_frames=(30, 25), visual_frames=(0, 0))
    other = random_batch(8, audio_frames=(30, 25), visual_frames=(0, 0))
    changed = dataclasses.replace(batch, audio=torch.cat([batch.audio[:1], other.audio[1:] * 3.0]))
    torch.testing.assert_close(model(changed, "a")[0], model(batch, "a")[0], atol=1e-6, rtol=0)
    assert not torch.allclose(model(changed, "a")[1], model(batch, "a")[1])
