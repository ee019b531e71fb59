"""Speaker-level standardisation of the utterance functionals and of the input log-mel: each
speaker's statistics (shrunk towards all clips'), unknown speakers falling back to the training
split's, and a model that uses them only where it was built to."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avemo_core.config import ConfigError
from avemo_core.data import collate
from avemo_core.functionals import utterance_functionals
from avemo_core.model import CrossModalTransformer, ModelConfig
from avemo_core.speakers import SpeakerTable, fit_speaker_table, raw_functionals
from avemo_core.training import fit_normalisation
from tests.avemo_core.model_batches import random_batch

NO_VIDEO = np.zeros((0, 64, 64), np.uint8)


def voices(seed: int = 0) -> tuple[list[str | None], list[np.ndarray]]:
    """Clips of two speakers whose voices differ by a constant offset, and one clip of nobody."""
    rng = np.random.default_rng(seed)
    speakers: list[str | None] = ["ann"] * 5 + ["bob"] * 7 + [None]
    clips = [
        (rng.normal(size=(int(rng.integers(12, 30)), 80)) + (3.0 if s == "bob" else 0.0)).astype(
            np.float32
        )
        for s in speakers
    ]
    return speakers, clips


def batch_of(clips: list[np.ndarray]):  # noqa: ANN201 - a Batch
    return collate(clips, [NO_VIDEO] * len(clips), np.zeros((len(clips), 6), np.float32))


def test_each_speaker_is_standardised_by_its_own_clips() -> None:
    speakers, clips = voices()
    table = fit_speaker_table([(speakers, batch_of(clips))], prior_clips=0.0)
    assert table is not None and table.speakers == ("ann", "bob")  # nobody's clip has no entry
    _, values = raw_functionals(batch_of(clips))
    for name, rows in (("ann", slice(0, 5)), ("bob", slice(5, 12))):
        own = values[rows]
        i = table.speakers.index(name)
        np.testing.assert_allclose(table.centre[i], own.mean(0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(table.scale[i], np.maximum(own.std(0), 1e-3), rtol=1e-3)
    centre, scale = table.lookup(["bob", None, "carl"])
    np.testing.assert_array_equal(centre[0], table.centre[1])
    assert np.isnan(centre[1:]).all() and np.isnan(scale[1:]).all()  # unknown: no statistics


def test_a_speaker_with_few_clips_leans_on_all_clips() -> None:
    speakers, clips = voices()
    exact = fit_speaker_table([(speakers, batch_of(clips))], prior_clips=0.0)
    shrunk = fit_speaker_table([(speakers, batch_of(clips))], prior_clips=8.0)
    assert exact is not None and shrunk is not None
    _, values = raw_functionals(batch_of(clips[:12]))
    pooled = values.mean(0)
    # ann (5 clips) is pulled 8/13 of the way to the pooled mean, bob (7 clips) 8/15
    for i, n in ((0, 5), (1, 7)):
        expected = (n * exact.centre[i] + 8.0 * pooled) / (n + 8.0)
        np.testing.assert_allclose(shrunk.centre[i], expected, rtol=1e-3, atol=1e-3)
    assert fit_speaker_table([([None, None], batch_of(clips[:2]))]) is None


def test_the_table_round_trips_through_a_plain_dict() -> None:
    speakers, clips = voices()
    table = fit_speaker_table([(speakers, batch_of(clips))])
    assert table is not None
    again = SpeakerTable.from_dict(table.to_dict())
    assert again.speakers == table.speakers
    np.testing.assert_array_equal(again.centre, table.centre)
    np.testing.assert_array_equal(again.scale, table.scale)
    assert again.audio_centre is not None and table.audio_centre is not None
    np.testing.assert_array_equal(again.audio_centre, table.audio_centre)
    # a table saved before the input statistics existed still loads, and attaches none
    old = SpeakerTable.from_dict({k: table.to_dict()[k] for k in ("speakers", "centre", "scale")})
    assert old.lookup_audio(["ann"]) is None
    assert old.attach(batch_of(clips), speakers).audio_centre is None


def test_each_speaker_has_the_per_bin_statistics_of_its_frames() -> None:
    speakers, clips = voices()
    table = fit_speaker_table([(speakers, batch_of(clips))], prior_clips=0.0)
    assert table is not None and table.audio_centre is not None and table.audio_scale is not None
    for name, rows in (("ann", slice(0, 5)), ("bob", slice(5, 12))):
        frames = np.concatenate(clips[rows]).astype(np.float64)  # (N, 80)
        i = table.speakers.index(name)
        np.testing.assert_allclose(table.audio_centre[i], frames.mean(0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(table.audio_scale[i], frames.std(0), rtol=1e-3)
    centre, _ = table.lookup_audio(["bob", None]) or (None, None)
    assert centre is not None and centre.shape == (2, 80) and np.isnan(centre[1]).all()


def speaker_model() -> CrossModalTransformer:
    torch.manual_seed(0)
    config = ModelConfig.named("tiny", utterance_functionals=True, functionals_norm="speaker")
    return CrossModalTransformer(config).eval()


def test_a_speaker_model_standardises_by_the_batch_statistics_else_by_the_split() -> None:
    speakers, clips = voices()
    model = speaker_model()
    fit_normalisation(model, [batch_of(clips)])
    table = fit_speaker_table([(speakers, batch_of(clips))], prior_clips=0.0)
    assert table is not None
    plain = batch_of(clips)
    with_speakers = table.attach(batch_of(clips), speakers)
    encoded = model.encode_audio(
        with_speakers.audio,
        with_speakers.audio_mask,
        with_speakers.functionals_centre,
        with_speakers.functionals_scale,
    )
    assert encoded.functionals is not None
    # Within one speaker the standardised functionals have mean 0 (by its own statistics) ...
    varies = table.scale[1] > 1e-2
    np.testing.assert_allclose(encoded.functionals[5:12].mean(0)[varies], 0.0, atol=1e-3)
    # ... the raw functionals of the log-mel itself are what gets standardised ...
    raw = utterance_functionals(plain.audio, plain.audio_mask)
    head = model.functionals_head
    assert head is not None
    expected = (raw[5] - torch.from_numpy(table.centre[1])) / torch.from_numpy(table.scale[1])
    torch.testing.assert_close(encoded.functionals[5], expected)
    # ... and the clip of nobody (NaN rows) is standardised exactly as without any statistics.
    logits_with, logits_without = model(with_speakers, "a"), model(plain, "a")
    torch.testing.assert_close(logits_with[12], logits_without[12])
    assert not torch.allclose(logits_with[:12], logits_without[:12])


def test_a_model_of_the_split_ignores_speaker_statistics() -> None:
    torch.manual_seed(0)
    model = CrossModalTransformer(ModelConfig.named("tiny", utterance_functionals=True)).eval()
    speakers, clips = voices()
    fit_normalisation(model, [batch_of(clips)])
    table = fit_speaker_table([(speakers, batch_of(clips))])
    assert table is not None
    torch.testing.assert_close(
        model(table.attach(batch_of(clips), speakers), "a"), model(batch_of(clips), "a")
    )


def test_speaker_statistics_travel_with_the_batch() -> None:
    speakers, clips = voices()
    table = fit_speaker_table([(speakers, batch_of(clips))])
    assert table is not None
    moved = table.attach(batch_of(clips), speakers).to("cpu")
    assert moved.functionals_centre is not None and moved.functionals_centre.shape == (13, 642)
    assert random_batch(0).to("cpu").functionals_centre is None


def input_speaker_model() -> CrossModalTransformer:
    torch.manual_seed(0)
    config = ModelConfig.named(
        "tiny", audio_norm="speaker", utterance_functionals=True, functionals_norm="speaker"
    )
    return CrossModalTransformer(config).eval()


def test_a_speaker_normalised_input_does_not_see_who_speaks() -> None:
    """Moving one speaker's every frame by a constant (a louder voice, another microphone) leaves
    that speaker's outputs as they were; a clip of nobody is normalised by the corpus's."""
    speakers, clips = voices()
    model = input_speaker_model()
    fit_normalisation(model, [batch_of(clips)])

    def logits(clips: list[np.ndarray]) -> torch.Tensor:
        table = fit_speaker_table([(speakers, batch_of(clips))], prior_clips=0.0)
        assert table is not None
        return model(table.attach(batch_of(clips), speakers), "a")

    louder = [c + (4.0 if s == "ann" else 0.0) for s, c in zip(speakers, clips, strict=True)]
    before, after = logits(clips), logits(louder)
    torch.testing.assert_close(after[:12], before[:12], atol=1e-4, rtol=1e-4)
    corpus_model = CrossModalTransformer(
        ModelConfig.named("tiny", utterance_functionals=True, functionals_norm="speaker")
    ).eval()
    corpus_model.load_state_dict(model.state_dict())
    plain = corpus_model(batch_of(clips), "a")
    torch.testing.assert_close(before[12], plain[12])  # nobody: the corpus statistics
    assert not torch.allclose(before[:12], plain[:12], atol=1e-3)  # the others: their own


def test_speaker_norm_needs_the_functionals_branch() -> None:
    with pytest.raises(ConfigError, match="needs utterance_functionals"):
        ModelConfig.named("tiny", functionals_norm="speaker")
    with pytest.raises(ConfigError, match="functionals_norm must be one of"):
        ModelConfig.named("tiny", utterance_functionals=True, functionals_norm="actor")
    with pytest.raises(ConfigError, match="audio_norm='speaker' with utterance functionals"):
        ModelConfig.named("tiny", audio_norm="speaker", utterance_functionals=True)
    assert ModelConfig.named("tiny", audio_norm="speaker").uses_speakers
