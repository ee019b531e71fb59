"""The synthetic corpus: real media with the promised tracks, a well-formed manifest, labels that
cover every emotion in every split, cues that follow the cue table, and byte-stable reruns."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from avemo_core.config import ConfigError
from avemo_core.features.visual import FaceCropper
from avemo_core.labels import EMOTIONS
from avemo_core.synth import MANIFEST_COLUMNS, CorpusSummary, SynthConfig, write_corpus, write_media
from avemo_core.synth.cues import (
    AUDIO_WEIGHTS,
    FACE_WEIGHTS,
    audio_cues,
    face_cues,
    sample_speaker,
)
from avemo_core.synth.encode import encode
from avemo_core.synth.plan import SegmentPlan, plan_corpus
from avemo_core.synth.render import render_file

CONFIG = SynthConfig(clips=36, seed=7)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusSummary:
    return write_corpus(tmp_path_factory.mktemp("synth") / "corpus", CONFIG)


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as f:
        return list(csv.DictReader(f))


def _streams(path: Path) -> dict[str, str]:
    """codec_type -> codec_name of every stream, as ffprobe reports them."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {kind: name for name, kind in (line.split(",") for line in out.split())}


def _duration_s(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(out)


def _decode(path: Path, kind: str) -> bytes:
    """Decoded samples (16-bit mono) or frames (raw BGR) of a media file."""
    if kind == "audio":
        codec = ["-map", "0:a", "-f", "s16le"]
    else:
        codec = ["-map", "0:v", "-f", "rawvideo", "-pix_fmt", "bgr24"]
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), *codec, "-"], capture_output=True, check=True
    ).stdout


def test_media_files_hold_the_tracks_the_corpus_describes(corpus: CorpusSummary) -> None:
    files = json.loads((corpus.out_dir / "corpus.json").read_text())["files"]
    assert len(files) == corpus.files
    kinds = defaultdict(int)
    for entry in files:
        path = corpus.out_dir / entry["uri"]
        streams = _streams(path)
        if entry["has_video"]:
            assert streams.get("video") == "h264", (path, streams)
            assert path.suffix == ".mp4"
        else:
            assert "video" not in streams, (path, streams)
        if entry["has_audio"]:
            assert streams.get("audio") == ("pcm_s16le" if path.suffix == ".wav" else "aac")
        else:
            assert "audio" not in streams, (path, streams)
        assert _duration_s(path) == pytest.approx(entry["duration_s"], abs=0.15)
        kinds[(entry["has_audio"], entry["has_video"], path.suffix)] += 1
    assert kinds[(True, True, ".mp4")] > corpus.files / 2  # mostly audio+video MP4
    assert kinds[(False, True, ".mp4")] >= 1  # video-only
    assert kinds[(True, False, ".m4a")] + kinds[(True, False, ".wav")] >= 1  # audio-only
    assert (corpus.audio_only, corpus.video_only) == (
        sum(not f["has_video"] for f in files),
        sum(not f["has_audio"] for f in files),
    )


def test_the_face_detector_finds_the_drawn_face_in_most_frames(corpus: CorpusSummary) -> None:
    files = json.loads((corpus.out_dir / "corpus.json").read_text())["files"]
    cropper, flags = FaceCropper(), []
    for entry in (f for f in files if f["has_video"]):
        raw = subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(corpus.out_dir / entry["uri"]), "-vf", "fps=5",
             "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        frames = np.frombuffer(raw, np.uint8).reshape(-1, CONFIG.height_px, CONFIG.width_px, 3)
        flags.append(cropper.crop_frames(frames)[1])  # (T,) bool
    share = float(np.concatenate(flags).mean())
    assert share >= 0.8, share


def test_manifest_columns_and_value_ranges(corpus: CorpusSummary) -> None:
    rows = _rows(corpus.manifest)
    assert tuple(rows[0]) == MANIFEST_COLUMNS
    assert len(rows) == CONFIG.clips == corpus.clips
    durations = json.loads((corpus.out_dir / "corpus.json").read_text())["files"]
    length = {f["uri"]: f["duration_s"] for f in durations}
    spans = defaultdict(list)
    for row in rows:
        assert not Path(row["uri"]).is_absolute()
        assert (corpus.manifest.parent / row["uri"]).is_file()  # relative to the manifest's folder
        start, end = float(row["start_s"]), float(row["end_s"])
        assert start > 0.0 and end <= length[row["uri"]]
        assert CONFIG.segment_min_s - 1e-6 <= end - start <= CONFIG.segment_max_s + 1e-6
        assert row["split"] in {"train", "valid", "test"}
        for emotion in EMOTIONS:
            value = float(row[emotion])
            assert 0.0 <= value <= 3.0
            assert abs(value * 3 - round(value * 3)) < 1e-3  # multiples of 1/3, like CMU-MOSEI
        spans[row["uri"]].append((start, end))
    for uri, segs in spans.items():
        assert 1 <= len(segs) <= CONFIG.segments_per_file_max
        segs.sort()
        ends, starts = [end for _, end in segs[:-1]], [start for start, _ in segs[1:]]
        assert all(e <= s for e, s in zip(ends, starts, strict=True)), uri
    assert max(len(s) for s in spans.values()) >= 2  # files hold several labelled segments


def test_splits_are_speaker_disjoint_and_each_holds_every_emotion(corpus: CorpusSummary) -> None:
    files = json.loads((corpus.out_dir / "corpus.json").read_text())["files"]
    speaker_of = {f["uri"]: f["speaker"] for f in files}
    speakers = defaultdict(set)
    positives = defaultdict(set)
    for row in _rows(corpus.manifest):
        speakers[row["split"]].add(speaker_of[row["uri"]])
        positives[row["split"]] |= {e for e in EMOTIONS if float(row[e]) > 0}
    assert set(speakers) == {"train", "valid", "test"}
    assert not speakers["train"] & speakers["valid"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["valid"] & speakers["test"]
    for split in speakers:
        assert positives[split] == set(EMOTIONS), split
    assert sum(corpus.clips_per_split.values()) == corpus.clips


def test_labels_co_occur_and_include_neutral_clips(corpus: CorpusSummary) -> None:
    present = [[float(row[e]) > 0 for e in EMOTIONS] for row in _rows(corpus.manifest)]
    counts = [sum(p) for p in present]
    assert sum(c >= 2 for c in counts) >= 5  # multi-label clips
    assert 0 in counts  # neutral clips
    happy, sad = EMOTIONS.index("happiness"), EMOTIONS.index("sadness")
    assert not any(p[happy] and p[sad] for p in present)


def test_same_seed_gives_the_same_bytes_and_decoded_media(tmp_path: Path) -> None:
    config = SynthConfig(clips=6, seed=3)
    first, second = write_corpus(tmp_path / "a", config), write_corpus(tmp_path / "b", config)
    assert first.manifest.read_bytes() == second.manifest.read_bytes()
    files = json.loads((first.out_dir / "corpus.json").read_text())["files"]
    assert (second.out_dir / "corpus.json").read_text() == (
        first.out_dir / "corpus.json"
    ).read_text()
    for entry in files:
        for kind in ("audio", "video"):
            if entry[f"has_{kind}"]:
                a = _decode(first.out_dir / entry["uri"], kind)
                assert a and a == _decode(second.out_dir / entry["uri"], kind), (entry, kind)
    other = write_corpus(tmp_path / "c", config.replace(seed=4))
    assert other.manifest.read_bytes() != first.manifest.read_bytes()


def test_rerun_into_the_same_folder_removes_stale_media(tmp_path: Path) -> None:
    bigger = write_corpus(tmp_path, SynthConfig(clips=8, seed=1))
    smaller = write_corpus(tmp_path, SynthConfig(clips=3, seed=1))
    assert bigger.files > smaller.files
    on_disk = sorted(p.name for p in (tmp_path / "media").iterdir())
    listed = sorted({Path(row["uri"]).name for row in _rows(smaller.manifest)})
    assert on_disk == listed
    assert not list(tmp_path.glob(".*.part")) and not list((tmp_path / "media").glob(".*"))


def test_write_media_makes_unlabelled_files_of_every_kind(tmp_path: Path) -> None:
    plans = write_media(tmp_path, count=3, config=SynthConfig(seed=2))
    assert [(p.has_audio, p.has_video) for p in plans] == [
        (True, False),
        (False, True),
        (True, True),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in plans)
    assert set(_streams(tmp_path / plans[0].name)) == {"audio"}
    assert set(_streams(tmp_path / plans[1].name)) == {"video"}
    assert set(_streams(tmp_path / plans[2].name)) == {"audio", "video"}
    assert all(p.split is None and p.segments for p in plans)


def test_cue_table_puts_fear_in_audio_only_and_disgust_in_video_only() -> None:
    fear, disgust = EMOTIONS.index("fear"), EMOTIONS.index("disgust")
    assert all(w[fear] == 0.0 for w in FACE_WEIGHTS.values())
    assert any(w[fear] != 0.0 for w in AUDIO_WEIGHTS.values())
    assert all(w[disgust] == 0.0 for w in AUDIO_WEIGHTS.values())
    assert any(w[disgust] != 0.0 for w in FACE_WEIGHTS.values())
    for e, emotion in enumerate(EMOTIONS):  # every emotion moves some cue
        assert any(w[e] != 0.0 for w in (*AUDIO_WEIGHTS.values(), *FACE_WEIGHTS.values())), emotion


def _mean_cues(emotion: str | None, cue_fn, n: int = 200) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = np.zeros(len(EMOTIONS))
    if emotion is not None:
        x[EMOTIONS.index(emotion)] = 3.0
    values = []
    for i in range(n):
        speaker = sample_speaker(i, rng)
        values.append(np.array(dataclasses.astuple(cue_fn(x, speaker, rng)), dtype=np.float64))
    return np.mean(values, axis=0)


def test_cues_move_the_way_the_table_says() -> None:
    neutral_a, neutral_v = _mean_cues(None, audio_cues), _mean_cues(None, face_cues)
    f0, rate, level, tremolo = 0, 3, 4, 7  # AudioCues field positions
    smile, mouth_open, brow_tilt, eye_open, wrinkle = 0, 1, 2, 4, 5  # FaceCues field positions
    assert _mean_cues("anger", audio_cues)[level] > neutral_a[level] + 4
    assert _mean_cues("sadness", audio_cues)[rate] < neutral_a[rate] * 0.85
    assert _mean_cues("fear", audio_cues)[tremolo] > neutral_a[tremolo] + 0.5
    assert _mean_cues("surprise", audio_cues)[f0] > neutral_a[f0] * 1.1
    assert _mean_cues("happiness", face_cues)[smile] > neutral_v[smile] + 0.5
    assert _mean_cues("sadness", face_cues)[brow_tilt] > neutral_v[brow_tilt] + 0.4
    assert _mean_cues("surprise", face_cues)[[mouth_open, eye_open]].min() > 0.3 + min(
        neutral_v[mouth_open], neutral_v[eye_open] - 1.0
    )
    assert _mean_cues("disgust", face_cues)[wrinkle] > neutral_v[wrinkle] + 0.5
    np.testing.assert_allclose(_mean_cues("fear", face_cues), neutral_v)  # fear: no face cue
    np.testing.assert_allclose(
        _mean_cues("disgust", audio_cues), neutral_a
    )  # disgust: no voice cue


def _with_emotion(plan, emotion: str):
    x = tuple(3.0 if e == emotion else 0.0 for e in EMOTIONS)
    segments = tuple(SegmentPlan(s.start_s, s.end_s, x) for s in plan.segments)
    return dataclasses.replace(plan, segments=segments)


def test_decoded_audio_is_louder_for_anger_than_for_sadness(tmp_path: Path) -> None:
    config = SynthConfig(clips=3, seed=11)
    plan = next(p for p in plan_corpus(config) if p.has_audio)
    rms = {}
    for emotion in ("anger", "sadness"):
        variant = _with_emotion(dataclasses.replace(plan, name=f"{emotion}.m4a", has_video=False),
                                emotion)  # fmt: skip
        rendered = render_file(variant, config)
        encode(tmp_path / variant.name, config, rendered.pcm, None)
        samples = np.frombuffer(_decode(tmp_path / variant.name, "audio"), dtype="<i2") / 32768.0
        rms[emotion] = float(np.sqrt(np.mean(samples**2)))
    assert rms["anger"] > 2.0 * rms["sadness"]  # +7 dB vs -5 dB around the speaker's level


def test_config_is_validated_and_round_trips() -> None:
    with pytest.raises(ConfigError):
        SynthConfig(clips=0)
    with pytest.raises(ConfigError):
        SynthConfig(video_only_share=0.6, audio_only_share=0.5)
    assert SynthConfig.from_dict(CONFIG.to_dict()) == CONFIG


def test_encode_refuses_video_in_an_audio_container(tmp_path: Path) -> None:
    frames = [np.zeros((CONFIG.height_px, CONFIG.width_px, 3), np.uint8)]
    with pytest.raises(ValueError, match="no video"):
        encode(tmp_path / "x.m4a", CONFIG, None, frames)
    assert not list(tmp_path.iterdir())


def test_cue_gain_scales_each_emotion_effect_and_leaves_the_noise() -> None:
    speaker = sample_speaker(0, np.random.default_rng(1))
    x = np.zeros(len(EMOTIONS))
    x[EMOTIONS.index("anger")] = 3.0
    # Same random stream: only the emotion's share of a cue changes, linearly in the gain.
    levels = [audio_cues(x, speaker, np.random.default_rng(4), g).level_db for g in (1, 2, 3)]
    assert levels[2] - levels[1] == pytest.approx(levels[1] - levels[0])
    assert levels[1] - levels[0] > 2.0  # anger lifts loudness (+7 dB x the speaker's gain)
    brows = [face_cues(x, speaker, np.random.default_rng(4), g).brow_tilt for g in (1.0, 1.2)]
    assert brows[1] < brows[0]  # anger lowers the inner brows, more with more gain
    neutral = np.zeros(len(EMOTIONS))
    assert audio_cues(neutral, speaker, np.random.default_rng(4), 3.0) == audio_cues(
        neutral, speaker, np.random.default_rng(4)
    )
    with pytest.raises(ConfigError, match="cue_gain"):
        SynthConfig(cue_gain=0.0)
