"""Audio presence judged by content: digital silence and near silence are no audio; speech, noise
and music are audio. Generated signals, generated media through the clip extractor, and the real
RAVDESS talking-head clips (speech vs digitally silent tracks) when ../shared/data is there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from avemo_core.config import ConfigError
from avemo_core.features.activity import ActivityConfig, ActivityMeter, frame_levels_dbfs
from avemo_core.media.clips import ClipConfig, ClipExtractor, MediaStats
from avemo_core.media.decode import Span
from avemo_core.media.probe import probe
from avemo_core.schema import clip_schema
from tests.avemo_core.test_audio_features import speech_like
from tests.pipelines import media_factory as mf

SR = 16000
METER = ActivityMeter(ActivityConfig(), SR)


def at_dbfs(x: np.ndarray, dbfs: float) -> np.ndarray:
    """x scaled to an RMS level of `dbfs` dB re full scale 1.0."""
    return (x / np.sqrt(np.mean(x**2)) * 10.0 ** (dbfs / 20.0)).astype(np.float32)


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    return np.fft.irfft(spectrum / np.sqrt(np.maximum(np.arange(len(spectrum)), 1.0)), n)


def chord(n: int) -> np.ndarray:
    t = np.arange(n) / SR
    return sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))


def melody(n: int, rng: np.random.Generator) -> np.ndarray:
    """Twelve plucked notes: each decays 35 dB before the next starts."""
    notes = np.repeat(rng.choice([262, 294, 330, 349, 392, 440, 494], 12), n // 12 + 1)[:n]
    decay = np.tile(np.exp(-np.linspace(0.0, 4.0, n // 12 + 1)), 12)[:n]
    return np.sin(2 * np.pi * np.cumsum(notes) / SR) * decay


def test_frame_levels_in_dbfs() -> None:
    square = np.tile(np.array([1.0, -1.0], np.float32), SR // 2)
    sine = np.sin(2 * np.pi * 1000 * np.arange(SR) / SR).astype(np.float32)
    assert frame_levels_dbfs(square, 320) == pytest.approx(np.zeros(50), abs=1e-6)
    assert frame_levels_dbfs(sine, 320) == pytest.approx(np.full(50, -3.0103), abs=0.01)
    levels = frame_levels_dbfs(np.r_[square, np.zeros(100, np.float32)], 320)  # partial tail
    assert levels.shape == (51,) and levels[-1] < -150
    assert frame_levels_dbfs(np.zeros(0, np.float32), 320).shape == (0,)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("digital zero", lambda rng: np.zeros(3 * SR)),
        ("-70 dBFS dither", lambda rng: at_dbfs(rng.standard_normal(3 * SR), -70)),
        ("-65 dBFS hiss", lambda rng: at_dbfs(rng.standard_normal(3 * SR), -65)),
        ("16-bit LSB flicker", lambda rng: rng.integers(-1, 2, 3 * SR) / 32768.0),
    ],
)
def test_silence_and_near_silence_are_no_audio(name: str, make) -> None:
    ratio = METER(make(np.random.default_rng(0)))
    assert ratio == 0.0, name
    assert not METER.present(ratio)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("white noise -20 dBFS", lambda rng: at_dbfs(rng.standard_normal(3 * SR), -20)),
        ("white noise -55 dBFS", lambda rng: at_dbfs(rng.standard_normal(3 * SR), -55)),
        ("pink noise -40 dBFS", lambda rng: at_dbfs(pink(3 * SR, rng), -40)),
        ("chord -20 dBFS", lambda rng: at_dbfs(chord(3 * SR), -20)),
        ("melody -20 dBFS", lambda rng: at_dbfs(melody(3 * SR, rng), -20)),
    ],
)
def test_noise_and_music_are_audio(name: str, make) -> None:
    """A noise-only or music-only track is audio the encoder can read: active all through."""
    ratio = METER(make(np.random.default_rng(1)))
    assert ratio >= 0.95, name
    assert METER.present(ratio)


def test_speech_with_pauses_is_partly_active() -> None:
    """Speech-like vowels with a pause: active, but the pause and the quiet tail are not."""
    rng = np.random.default_rng(2)
    voice = at_dbfs(speech_like(0, 2.0), -26)
    quiet_room = at_dbfs(rng.standard_normal(SR), -85)
    ratio = METER(np.r_[voice, quiet_room])
    assert 0.3 <= ratio <= 0.7
    assert METER.present(ratio)


def test_relative_rule_drops_background_far_below_the_peak() -> None:
    """A loud burst over -55 dBFS hiss: the hiss alone is audio; beside the burst, background."""
    rng = np.random.default_rng(3)
    hiss = at_dbfs(rng.standard_normal(4 * SR), -55)
    burst = hiss.copy()
    burst[:SR] += at_dbfs(rng.standard_normal(SR), -3)
    assert METER(hiss) == 1.0
    assert METER(burst) == pytest.approx(0.25, abs=0.01)


def test_a_single_click_in_silence_is_not_audio() -> None:
    samples = np.zeros(10 * SR, np.float32)
    samples[SR : SR + 160] = 0.5  # 10 ms click in 10 s: one frame of 500
    ratio = METER(samples)
    assert 0 < ratio < 0.02 and not METER.present(ratio)
    assert ActivityMeter(ActivityConfig(min_active_ratio=0.0), SR).present(ratio)


def test_floor_is_configurable() -> None:
    quiet = at_dbfs(np.random.default_rng(4).standard_normal(2 * SR), -50)
    assert METER(quiet) == 1.0
    assert ActivityMeter(ActivityConfig(floor_dbfs=-40.0), SR)(quiet) == 0.0


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"frame_s": 0.0}, "frame_s"),
        ({"floor_dbfs": 3.0}, "floor_dbfs"),
        ({"relative_db": 0.0}, "relative_db"),
        ({"min_active_ratio": 1.5}, "min_active_ratio"),
    ],
)
def test_config_is_validated(changes: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        ActivityConfig(**changes)
    assert ActivityConfig.from_dict(ActivityConfig().to_dict()) == ActivityConfig()


# -- through the clip extractor, on generated media ------------------------------------------------


@pytest.fixture(scope="module")
def extractor() -> ClipExtractor:
    return ClipExtractor(clip=ClipConfig(window_s=1.0))


def rows_of(extractor: ClipExtractor, path: Path) -> tuple[list[dict], MediaStats]:
    stats = MediaStats()
    rows = list(extractor.rows(str(path), str(path), probe(str(path)), None, stats))
    pa.Table.from_pylist(rows, schema=clip_schema(extractor.config_dict()))  # the contract
    return rows, stats


def test_silent_track_in_a_video_is_no_audio(extractor: ClipExtractor, tmp_path: Path) -> None:
    path = mf.talking_head_with_audio(tmp_path / "muted.mp4", "anullsrc=r=48000:cl=stereo")
    rows, stats = rows_of(extractor, path)
    assert len(rows) == 2 and stats.silent_clips == 2
    for row in rows:
        assert not row["has_audio"] and row["has_visual"]
        assert row["audio_active_ratio"] == 0.0
        assert row["audio_frames"] == 0 and row["audio_features"] == b""


def test_dithered_track_is_no_audio(extractor: ClipExtractor, tmp_path: Path) -> None:
    """-70 dBFS white noise (about what a muted export with dither holds)."""
    amplitude = 10 ** (-70 / 20) * np.sqrt(3)  # uniform noise of that RMS
    path = mf.talking_head_with_audio(
        tmp_path / "dither.mp4", f"anoisesrc=a={amplitude:.6f}:c=white:r=16000"
    )
    rows, _ = rows_of(extractor, path)
    assert rows and all(not r["has_audio"] and r["audio_active_ratio"] == 0.0 for r in rows)


@pytest.mark.parametrize(
    "source",
    ["sine=frequency=440:sample_rate=16000", "anoisesrc=a=0.05:c=pink:r=16000"],
)
def test_tone_and_noise_tracks_are_audio(
    extractor: ClipExtractor, tmp_path: Path, source: str
) -> None:
    rows, stats = rows_of(extractor, mf.talking_head_with_audio(tmp_path / "a.mp4", source))
    assert len(rows) == 2 and stats.silent_clips == 0
    assert all(r["has_audio"] and r["audio_active_ratio"] >= 0.95 for r in rows)
    assert all(r["audio_frames"] > 90 for r in rows)


def test_silent_audio_only_file_yields_no_clip(extractor: ClipExtractor, tmp_path: Path) -> None:
    path = mf.wav(tmp_path / "silence.wav", np.zeros(2 * SR, np.int16))
    rows, stats = rows_of(extractor, path)
    assert rows == [] and stats.empty_clips == 2


def test_only_the_silent_window_loses_its_audio(extractor: ClipExtractor, tmp_path: Path) -> None:
    samples = np.zeros(3 * SR, np.int16)
    samples[SR : 2 * SR] = (np.sin(np.arange(SR) / 5.0) * 8000).astype(np.int16)
    rows, stats = rows_of(extractor, mf.wav(tmp_path / "middle.wav", samples))
    assert [r["start_s"] for r in rows] == [1.0] and stats.empty_clips == 2
    assert rows[0]["has_audio"] and rows[0]["audio_active_ratio"] == 1.0


# -- real footage ----------------------------------------------------------------------------------


def _ravdess_av() -> Path:
    """../shared/data/ravdess-av-actor05 beside the repository root, or skip (a fresh clone)."""
    folder = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ravdess-av-actor05"
    if not folder.is_dir():
        pytest.skip(f"real data not present: {folder} (see ../shared/data/README.md)")
    return folder


@pytest.mark.parametrize(("prefix", "speech"), [("01-", True), ("02-", False)])
def test_real_speech_tracks_are_audio_and_silent_tracks_are_not(
    extractor: ClipExtractor, prefix: str, speech: bool
) -> None:
    """RAVDESS `01-` files carry speech; `02-` files an audio track of digital silence."""
    files = sorted(_ravdess_av().glob(f"{prefix}*.mp4"))
    assert len(files) == 14
    for path in files:
        info = probe(str(path))
        assert info.audio is not None  # the container has an audio stream either way
        (data,) = extractor.decoder.decode(str(path), info, [Span(0.0, info.duration_s)])
        assert data.audio is not None and data.audio.shape[0] > 2 * SR
        ratio = extractor.meter(data.audio)
        if speech:
            assert 0.2 <= ratio <= 0.9 and extractor.meter.present(ratio), path.name
        else:
            assert ratio == 0.0 and not extractor.meter.present(ratio), path.name


def test_real_silent_track_rows_say_visual_only(extractor: ClipExtractor) -> None:
    folder = _ravdess_av()
    for prefix, has_audio in (("01-", True), ("02-", False)):
        path = sorted(folder.glob(f"{prefix}*.mp4"))[0]
        clip = ClipExtractor(clip=ClipConfig(window_s=10.0))
        rows, _ = rows_of(clip, path)
        assert len(rows) == 1 and rows[0]["has_visual"]
        assert rows[0]["has_audio"] is has_audio
        assert (rows[0]["audio_active_ratio"] > 0.2) is has_audio
