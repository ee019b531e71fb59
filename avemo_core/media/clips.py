"""Clip planning (manifest segments or fixed windows) and per-clip features, as clip-shard rows.

A manifest is a CSV with columns `uri,start_s,end_s[,split][,<emotion>...]`; relative URIs resolve
against the manifest's folder. Without one, each file is cut into fixed windows. Each clip becomes
one row of `avemo_core.schema.clip_schema()`: log-mel audio (float16), face crops (uint8) and
per-frame face flags (uint8) as binary blobs with their shapes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import posixpath
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from avemo_core.config import FrozenConfig, require
from avemo_core.features.activity import ActivityConfig, ActivityMeter
from avemo_core.features.audio import AudioFeatureConfig, LogMelExtractor
from avemo_core.features.visual import FaceCropper, VisualFeatureConfig, face_ratio
from avemo_core.labels import EMOTIONS, SPLITS
from avemo_core.media.decode import DecodeConfig, Span, SpanData, SpanDecoder
from avemo_core.media.errors import MediaError
from avemo_core.media.probe import MediaInfo
from avemo_core.schema import (
    AUDIO_DTYPE,
    CLIP_SCHEMA_VERSION,
    FACE_FLAGS_DTYPE,
    SPEAKER_COLUMN,
    VISUAL_DTYPE,
    clip_id_for,
    media_id_for,
)

_END_TOLERANCE_S = 1e-3  # a segment starting this close to the end of the media holds nothing


class ManifestError(ValueError):
    """The manifest is malformed: the message names the line and the field."""


@dataclasses.dataclass(frozen=True)
class ClipConfig(FrozenConfig):
    window_s: float = 10.0  # fixed-window length when no manifest gives segments
    min_clip_s: float = 0.5  # a shorter trailing window is dropped, unless it is the only one

    def validate(self) -> None:
        require(self.window_s > 0, "window_s must be > 0")
        require(0 <= self.min_clip_s <= self.window_s, "min_clip_s must be in [0, window_s]")


@dataclasses.dataclass(frozen=True)
class Segment:
    """One clip to extract: a span of a media file with its optional split and labels."""

    uri: str  # absolute local path or s3:// URI of the media file
    start_s: float
    end_s: float
    split: str | None = None  # train / valid / test, or None
    intensities: tuple[float | None, ...] = (None,) * len(EMOTIONS)  # None: unlabelled
    speaker: str | None = None  # the manifest's speaker, None: unknown


@dataclasses.dataclass
class MediaStats:
    """What extracting one file produced, filled in while its rows are generated."""

    clips: int = 0
    empty_clips: int = 0  # clips with neither audio nor a face frame (not written)
    silent_clips: int = 0  # clips whose audio stream decoded but was judged silent (no audio)
    face_frames: int = 0
    visual_frames: int = 0


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def resolve_uri(uri: str, base: str) -> str:
    """The absolute URI of a manifest entry: relative ones start from the manifest's folder."""
    if uri.startswith("file://"):
        return os.path.normpath(uri[len("file://") :])
    if is_remote(uri):
        return uri
    if is_remote(base):
        scheme, rest = base.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(rest, uri))}"
    return os.path.normpath(os.path.join(base, uri))


def _number(value: str, field: str, line: int) -> float:
    try:
        out = float(value)
    except ValueError:
        raise ManifestError(f"manifest line {line}: {field}={value!r} is not a number") from None
    if not math.isfinite(out):
        raise ManifestError(f"manifest line {line}: {field}={value!r} is not finite")
    return out


def parse_manifest(text: str, base: str) -> list[Segment]:
    """Segments from manifest CSV text; relative URIs start from `base` (folder or s3:// prefix)."""
    reader = csv.DictReader(io.StringIO(text))
    columns = set(reader.fieldnames or [])
    missing = {"uri", "start_s", "end_s"} - columns
    if missing:
        raise ManifestError(f"manifest lacks column(s) {sorted(missing)}; it has {sorted(columns)}")
    segments: list[Segment] = []
    seen: dict[str, int] = {}
    for line, record in enumerate(reader, start=2):
        uri = (record["uri"] or "").strip()
        if not uri:
            raise ManifestError(f"manifest line {line}: empty uri")
        start = _number(record["start_s"] or "", "start_s", line)
        end = _number(record["end_s"] or "", "end_s", line)
        if start < 0 or end <= start:
            raise ManifestError(
                f"manifest line {line}: need 0 <= start_s < end_s, got {start}, {end}"
            )
        split = (record.get("split") or "").strip() or None
        if split is not None and split not in SPLITS:
            raise ManifestError(f"manifest line {line}: split {split!r} is not one of {SPLITS}")
        intensities = tuple(
            _number(value, emotion, line)
            if (value := (record.get(emotion) or "").strip())
            else None
            for emotion in EMOTIONS
        )
        speaker = (record.get("speaker") or "").strip() or None
        segment = Segment(resolve_uri(uri, base), start, end, split, intensities, speaker)
        clip_id = clip_id_for(segment.uri, start, end)
        if clip_id in seen:
            raise ManifestError(f"manifest line {line}: same clip as line {seen[clip_id]}")
        seen[clip_id] = line
        segments.append(segment)
    return segments


def fixed_windows(uri: str, duration_s: float, config: ClipConfig) -> list[Segment]:
    """Consecutive windows over the whole file; a short trailing one is kept only if long enough."""
    count = max(1, math.ceil(duration_s / config.window_s - 1e-9))
    windows: list[Segment] = []
    for index in range(count):
        start = round(index * config.window_s, 6)
        end = round(min(duration_s, (index + 1) * config.window_s), 6)
        if index > 0 and end - start < config.min_clip_s:
            break
        windows.append(Segment(uri, start, end))
    return windows


class ClipExtractor:
    """Probe result + segments of one local file -> clip rows; holds the feature extractors once."""

    def __init__(
        self,
        clip: ClipConfig | None = None,
        decode: DecodeConfig | None = None,
        audio: AudioFeatureConfig | None = None,
        visual: VisualFeatureConfig | None = None,
        activity: ActivityConfig | None = None,
    ) -> None:
        self.clip = clip or ClipConfig()
        self.decode_config = decode or DecodeConfig()
        self.audio = audio or AudioFeatureConfig()
        self.visual = visual or VisualFeatureConfig()
        self.activity = activity or ActivityConfig()
        self.logmel = LogMelExtractor(self.audio)
        self.meter = ActivityMeter(self.activity, self.audio.sample_rate_hz)
        self.cropper = FaceCropper(self.visual)
        self.decoder = SpanDecoder(
            self.audio.sample_rate_hz,
            self.visual.fps,
            self.visual.decode_max_side_px,
            self.decode_config,
        )

    def config_dict(self) -> dict[str, Any]:
        """The extractor config as stored in shard metadata and `_SUCCESS.json`."""
        from avemo_core.media.extractor_config import ExtractorConfig  # it imports this module

        config = ExtractorConfig(
            self.clip, self.decode_config, self.audio, self.visual, self.activity
        )
        return config.to_dict()

    def probe(self, path: str) -> MediaInfo:
        """What the local file holds, probed the way the decoder will decode it."""
        return self.decoder.probe(path)

    def plan(self, uri: str, info: MediaInfo, segments: Sequence[Segment] | None) -> list[Segment]:
        """The clips of one file: its manifest segments (checked against its length) or windows."""
        if segments is None:
            return fixed_windows(uri, info.duration_s, self.clip)
        for segment in segments:
            if segment.start_s >= info.duration_s - _END_TOLERANCE_S:
                raise MediaError(
                    "probe",
                    "segment_out_of_range",
                    f"manifest segment {segment.start_s}-{segment.end_s} s starts after the media "
                    f"ends ({info.duration_s:.3f} s)",
                )
        return list(segments)

    def rows(
        self,
        path: str,
        uri: str,
        info: MediaInfo,
        segments: Sequence[Segment] | None = None,
        stats: MediaStats | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Clip rows of the local file `path` (whose identity is `uri`), streamed in start order."""
        stats = stats if stats is not None else MediaStats()
        planned = self.plan(uri, info, segments)
        # decode spans stop at the media end; the row keeps the segment's own span (its identity)
        by_span: dict[Span, list[Segment]] = {}
        for segment in planned:
            by_span.setdefault(
                Span(segment.start_s, min(segment.end_s, info.duration_s)), []
            ).append(segment)
        for data in self.decoder.decode(path, info, list(by_span)):
            features = self._features(data)
            active_ratio = self.meter(data.audio) if data.audio is not None else 0.0
            for segment in by_span[data.span]:
                row = self._row(uri, segment, features, active_ratio, stats)
                if row is None:
                    stats.empty_clips += 1
                    continue
                stats.clips += 1
                yield row

    def _features(
        self, data: SpanData
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        try:
            audio = self.logmel(data.audio) if data.audio is not None else None  # (Ta, M)
            crops = flags = None
            if data.frames is not None and data.frames.shape[0] > 0:
                crops, flags = self.cropper.crop_frames(data.frames)  # (Tv, C, C), (Tv,)
        except Exception as err:
            raise MediaError(
                "features", type(err).__name__, f"{err} at {data.span.start_s:.2f} s"
            ) from err
        return audio, crops, flags

    def _row(
        self,
        uri: str,
        segment: Segment,
        features: tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None],
        active_ratio: float,
        stats: MediaStats,
    ) -> dict[str, Any] | None:
        """The clip's row; its audio counts only when enough of it is not silence."""
        audio, crops, flags = features
        decoded_audio = audio is not None and audio.shape[0] > 0
        has_audio = decoded_audio and self.meter.present(active_ratio)
        sampled = crops is not None and flags is not None and crops.shape[0] > 0
        face_count = int(np.count_nonzero(flags)) if sampled else 0
        # no face in any sampled frame: no visual input for the model (the frames stay, flagged)
        has_visual = face_count > 0
        if not has_audio and not has_visual:
            return None
        if decoded_audio and not has_audio:
            stats.silent_clips += 1
        if sampled:
            stats.face_frames += face_count
            stats.visual_frames += int(flags.shape[0])
        crop_px = self.visual.crop_px
        row: dict[str, Any] = {
            "clip_id": clip_id_for(uri, segment.start_s, segment.end_s),
            "media_id": media_id_for(uri),
            "source_uri": uri,
            "start_s": float(segment.start_s),
            "end_s": float(segment.end_s),
            "split": segment.split,
            SPEAKER_COLUMN: segment.speaker,
            "has_audio": has_audio,
            "has_visual": has_visual,
            "audio_features": np.ascontiguousarray(audio, AUDIO_DTYPE).tobytes()
            if has_audio
            else b"",
            "audio_frames": int(audio.shape[0]) if has_audio else 0,
            "audio_dims": self.audio.num_mel_bins,
            "visual_features": np.ascontiguousarray(crops, VISUAL_DTYPE).tobytes()
            if sampled
            else b"",
            "visual_frames": int(crops.shape[0]) if sampled else 0,
            "visual_height": crop_px,
            "visual_width": crop_px,
            "visual_face_flags": np.ascontiguousarray(flags, FACE_FLAGS_DTYPE).tobytes()
            if sampled
            else b"",
            "face_ratio": face_ratio(flags) if sampled else 0.0,
            "audio_active_ratio": active_ratio,
            "schema_version": CLIP_SCHEMA_VERSION,
        }
        for emotion, value in zip(EMOTIONS, segment.intensities, strict=True):
            row[emotion] = value
        return row
