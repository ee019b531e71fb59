"""Small synthetic clip-shard datasets written straight with pyarrow, so training and labelling
tests and benchmarks do not depend on the extraction pipeline (the same schema, no media).

Features are random but learnable: every emotion owns a fixed pattern in each modality it shows in
(a log-mel band profile for audio, a spatial pattern for the grey face), added in proportion to the
emotion's intensity on top of noise. As in the synthetic corpus (`avemo_core/synth/cues.py`), fear
is cued in the audio only and disgust in the video only, the other four in both, so the audio+visual
view knows more than either single view. Some rows lack one modality; frame counts vary per clip.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from avemo_core.labels import EMOTIONS
from avemo_core.schema import (
    AUDIO_DTYPE,
    CLIP_SCHEMA_VERSION,
    VISUAL_DTYPE,
    clip_id_for,
    clip_schema,
    media_id_for,
)

AUDIO_CUED = ("happiness", "sadness", "anger", "fear", "surprise")  # disgust leaves the voice alone
VISUAL_CUED = ("happiness", "sadness", "anger", "disgust", "surprise")  # fear leaves the face alone
PATTERN_SEED = 20240611  # the cue patterns are the same in every dataset the factory writes


@dataclasses.dataclass(frozen=True)
class ShardSpec:
    clips: int = 96  # rows in all splits together
    seed: int = 0  # draws labels, noise, lengths and modality gaps
    split_shares: tuple[float, float, float] = (0.6, 0.2, 0.2)  # train, valid, test
    audio_only_share: float = 0.1  # rows without visual features
    visual_only_share: float = 0.1  # rows without audio features
    unlabelled_share: float = 0.0  # rows whose emotion intensities are null
    emotion_rate: float = 0.35  # chance that an emotion is present in a clip
    audio_frames: tuple[int, int] = (20, 60)  # min, max audio frames (10 ms each)
    visual_frames: tuple[int, int] = (3, 8)  # min, max video frames
    audio_dims: int = 80  # log-mel bins
    visual_px: int = 64  # side of the grey face crop
    noise: float = 0.6  # noise std relative to a full-intensity cue
    files: int = 2  # parquet files the rows are spread over
    # named speakers (spk00, spk01, ...; row i speaks as i % speakers), each shifting its clips'
    # audio by a fixed per-bin offset; 0: no speaker column values (null), no offsets
    speakers: int = 0


def _patterns(audio_dims: int, visual_px: int) -> tuple[np.ndarray, np.ndarray]:
    """(E, F) audio band profiles and (E, H, W) visual patterns, fixed by PATTERN_SEED."""
    rng = np.random.default_rng(PATTERN_SEED)
    audio = rng.normal(0.0, 1.0, (len(EMOTIONS), audio_dims))  # (E, F)
    visual = rng.normal(0.0, 1.0, (len(EMOTIONS), visual_px, visual_px))  # (E, H, W)
    audio_on = np.array([e in AUDIO_CUED for e in EMOTIONS], float)[:, None]  # (E, 1)
    visual_on = np.array([e in VISUAL_CUED for e in EMOTIONS], float)[:, None, None]  # (E, 1, 1)
    return audio * audio_on, visual * visual_on


def _split_names(spec: ShardSpec, rng: np.random.Generator) -> list[str]:
    counts = [int(round(share * spec.clips)) for share in spec.split_shares[:2]]
    names = ["train"] * counts[0] + ["valid"] * counts[1]
    names += ["test"] * (spec.clips - len(names))
    rng.shuffle(names)
    return names


def make_rows(spec: ShardSpec) -> list[dict]:
    """The clip rows of `spec` as plain dicts in clip-shard schema order."""
    rng = np.random.default_rng(spec.seed)
    audio_pat, visual_pat = _patterns(spec.audio_dims, spec.visual_px)
    splits = _split_names(spec, rng)
    offsets = np.random.default_rng(spec.seed + 1).normal(
        0.0, 1.0, (spec.speakers, spec.audio_dims)
    )
    rows = []
    for i in range(spec.clips):
        present = rng.random(len(EMOTIONS)) < spec.emotion_rate
        intensity = np.where(present, rng.uniform(0.5, 3.0, len(EMOTIONS)), 0.0)  # (E,)
        u = intensity / 3.0
        gap = rng.random()
        has_audio = gap >= spec.visual_only_share
        has_visual = not (
            spec.visual_only_share <= gap < spec.visual_only_share + spec.audio_only_share
        )
        ta = int(rng.integers(spec.audio_frames[0], spec.audio_frames[1] + 1)) if has_audio else 0
        tv = (
            int(rng.integers(spec.visual_frames[0], spec.visual_frames[1] + 1)) if has_visual else 0
        )
        audio = (u @ audio_pat)[None, :] + rng.normal(
            0.0, spec.noise, (ta, spec.audio_dims)
        )  # (Ta, F)
        if spec.speakers:
            audio = audio + offsets[i % spec.speakers]  # (Ta, F): the speaker's own voice
        cue = np.tensordot(u, visual_pat, axes=1)  # (H, W)
        noise = rng.normal(0.0, spec.noise, (tv, spec.visual_px, spec.visual_px))  # (Tv, H, W)
        visual = np.clip(128.0 + 40.0 * (cue[None] + noise), 0, 255)  # (Tv, H, W)
        source = f"file:///factory/media-{spec.seed}-{i:05d}.mp4"
        labelled = rng.random() >= spec.unlabelled_share
        end_s = max(ta / 100.0, tv / 5.0)
        row = {
            "clip_id": clip_id_for(source, 0.0, end_s),
            "media_id": media_id_for(source),
            "source_uri": source,
            "start_s": 0.0,
            "end_s": end_s,
            "split": splits[i],
            "speaker": f"spk{i % spec.speakers:02d}" if spec.speakers else None,
            "has_audio": has_audio,
            "has_visual": has_visual,
            "audio_features": audio.astype(AUDIO_DTYPE).tobytes(),
            "audio_frames": ta,
            "audio_dims": spec.audio_dims,
            "visual_features": visual.round().astype(VISUAL_DTYPE).tobytes(),
            "visual_frames": tv,
            "visual_height": spec.visual_px,
            "visual_width": spec.visual_px,
            "visual_face_flags": np.ones(tv, np.uint8).tobytes(),  # a face in every frame
            "face_ratio": 1.0 if has_visual else 0.0,
            "audio_active_ratio": 1.0 if has_audio else 0.0,
            "schema_version": CLIP_SCHEMA_VERSION,
        }
        for e, name in enumerate(EMOTIONS):
            row[name] = float(intensity[e]) if labelled else None
        rows.append(row)
    return rows


def extractor_config(spec: ShardSpec) -> dict:
    """What the factory writes as the extractor config in the file metadata."""
    return {
        "source": "avemo_core.synth.shards",
        "audio_dims": spec.audio_dims,
        "visual_px": spec.visual_px,
        "hop_s": 0.01,
        "fps": 5.0,
        "sample_rate_hz": 16000,
    }


def write_clip_shards(root: str | Path, spec: ShardSpec | None = None) -> dict[str, int]:
    """Write `part-NNNNN.parquet` files and `_SUCCESS.json` for `spec`; return rows per split."""
    spec = spec or ShardSpec()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    schema = clip_schema(extractor_config(spec))
    rows = make_rows(spec)
    for index, chunk in enumerate(np.array_split(np.arange(len(rows)), spec.files)):
        table = pa.Table.from_pylist([rows[i] for i in chunk], schema=schema)
        pq.write_table(table, root / f"part-{index:05d}.parquet")
    counts = {
        name: sum(row["split"] == name for row in rows) for name in ("train", "valid", "test")
    }
    success = {"rows": len(rows), "splits": counts, "config": extractor_config(spec), "errors": 0}
    (root / "_SUCCESS.json").write_text(json.dumps(success, indent=2) + "\n")
    return counts


def rows_by_clip(out: Path) -> dict[str, dict]:
    """Clip id -> row over every shard in `out`; a clip in two rows fails the calling test."""
    rows: dict[str, dict] = {}
    for path in sorted(out.glob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            assert row["clip_id"] not in rows, f"duplicate clip {row['clip_id']}"
            rows[row["clip_id"]] = row
    return rows
