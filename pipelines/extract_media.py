"""One media file to clip shards, as one Ray Data task: fetch, probe, decode, features, write.

Any failure of the file becomes an `_errors/` record and a `failed` result row, never an exception
that would stop the job. A file that stops decoding part-way keeps the clips before the stop: its
shards and done marker are written, and so is an error record naming the time (`partial` row).
Plain Python (no Ray import): `pipelines/extract.py` maps it over the list.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from avemo_core.features.activity import ActivityConfig
from avemo_core.features.audio import AudioFeatureConfig
from avemo_core.features.visual import VisualFeatureConfig
from avemo_core.media.clips import ClipConfig, ClipExtractor, MediaStats, Segment
from avemo_core.media.decode import DecodeConfig, PartialDecode
from avemo_core.media.errors import MediaError
from avemo_core.media.probe import probe
from avemo_core.schema import clip_schema, media_id_for
from pipelines.shards import ShardStore, ShardWriter
from pipelines.storage import filesystem, is_s3


@dataclasses.dataclass(frozen=True)
class MediaTask:
    """One file to extract, as it travels through Ray Data (a flat record of strings)."""

    uri: str
    segments: tuple[Segment, ...] | None  # manifest segments; None: fixed windows

    @property
    def media_id(self) -> str:
        return media_id_for(self.uri)

    def fingerprint(self, extractor_config: Mapping[str, Any]) -> str:
        """Changes whenever the rows this file yields could change: config, URI or segments."""
        payload = {"config": extractor_config, "uri": self.uri, "segments": self._segments_json()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def _segments_json(self) -> list[Any] | None:
        return None if self.segments is None else [dataclasses.astuple(s) for s in self.segments]

    def to_record(self) -> dict[str, str]:
        return {"uri": self.uri, "segments": json.dumps(self._segments_json())}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> MediaTask:
        raw = json.loads(record["segments"])
        segments = None
        if raw is not None:
            segments = tuple(Segment(u, s, e, sp, tuple(i)) for u, s, e, sp, i in raw)
        return cls(uri=str(record["uri"]), segments=segments)


def build_extractor(extractor_config: Mapping[str, Any]) -> ClipExtractor:
    """The extractor a config describes (one saved before audio activity: its default rule)."""
    return ClipExtractor(
        clip=ClipConfig.from_dict(extractor_config["clip"]),
        decode=DecodeConfig.from_dict(extractor_config["decode"]),
        audio=AudioFeatureConfig.from_dict(extractor_config["audio"]),
        visual=VisualFeatureConfig.from_dict(extractor_config["visual"]),
        activity=ActivityConfig.from_dict(extractor_config.get("activity", {})),
    )


@functools.lru_cache(maxsize=4)
def worker_state(
    setup_json: str, store_type: type = ShardStore
) -> tuple[ClipExtractor, Any, pa.Schema]:
    """Built once per worker process and setup: the face detector and filesystem are reused.

    `store_type` is the output store (clip shards here, label shards when labelling media).
    """
    setup = json.loads(setup_json)
    extractor = build_extractor(setup["extractor"])
    store = store_type(setup["output_uri"], setup["storage_options"])
    return extractor, store, clip_schema(setup["extractor"])


def run_media_task(record: dict[str, Any], setup_json: str) -> dict[str, Any]:
    """Ray Data row UDF: a task record in, one result row (done or failed) out."""
    extractor, store, schema = worker_state(setup_json)
    setup = json.loads(setup_json)
    return extract_media(
        MediaTask.from_record(record),
        extractor,
        store,
        schema,
        rows_per_shard=setup["rows_per_shard"],
        storage_options=setup["storage_options"],
    )


@contextlib.contextmanager
def local_copy(uri: str, storage_options: Mapping[str, Any]) -> Iterator[str]:
    """A local path for ffmpeg: the file itself, or an S3 object downloaded to a temp file."""
    if not is_s3(uri):
        yield uri
        return
    fs, path = filesystem(uri, storage_options)
    suffix = os.path.splitext(path)[1]
    suffix = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else ""
    with tempfile.TemporaryDirectory(prefix="avemo-media-") as folder:
        local = os.path.join(folder, "media" + suffix)
        try:
            fs.get_file(path, local)
        except FileNotFoundError:
            raise MediaError("read", "not_found", f"object no longer exists: {uri}") from None
        except Exception as err:  # botocore / aiohttp raise their own types
            raise MediaError("read", type(err).__name__, f"cannot download {uri}: {err}") from None
        yield local


def _decoded_rows(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Pass rows through; an unexpected exception while producing them is a decode failure."""
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except MediaError:
            raise
        except Exception as err:
            raise MediaError("decode", type(err).__name__, str(err) or repr(err)) from err
        yield row


@contextlib.contextmanager
def _writing() -> Iterator[None]:
    try:
        yield
    except MediaError:
        raise
    except Exception as err:
        raise MediaError("write", type(err).__name__, str(err) or repr(err)) from err


def _error_record(task: MediaTask, err: MediaError) -> dict[str, Any]:
    """The `_errors/` record of a file; a decode that stopped part-way says where."""
    record = {
        "uri": task.uri,
        "media_id": task.media_id,
        "stage": err.stage,
        "kind": err.kind,
        "message": err.message,
    }
    if isinstance(err, PartialDecode):
        record["stopped_at_s"] = err.stopped_at_s
    return record


def extract_media(
    task: MediaTask,
    extractor: ClipExtractor,
    store: ShardStore,
    schema: pa.Schema,
    rows_per_shard: int,
    storage_options: Mapping[str, Any],
) -> dict[str, Any]:
    """Extract one file into its shards and done marker; returns its result row (never raises).

    Status `done`, `partial` (clips up to where decoding stopped, plus an error record) or `failed`.
    """
    started = time.monotonic()
    media_id = task.media_id
    stats = MediaStats()
    duration_s = 0.0
    writer: ShardWriter | None = None
    result: dict[str, Any] = {
        "uri": task.uri,
        "media_id": media_id,
        "stage": "",
        "kind": "",
        "message": "",
    }
    partial: PartialDecode | None = None
    try:
        with _writing():
            store.clear_media(media_id)  # shards of a run killed half-way are redone from scratch
        with local_copy(task.uri, storage_options) as local:
            info = probe(local)
            duration_s = info.duration_s
            writer = ShardWriter(store, media_id, schema, rows_per_shard)
            rows = extractor.rows(local, task.uri, info, task.segments, stats)
            with contextlib.closing(rows):  # on failure its ffmpeg processes stop at once
                try:
                    for row in _decoded_rows(rows):
                        with _writing():
                            writer.add(row)
                except PartialDecode as err:
                    if stats.clips == 0:
                        raise
                    partial = err  # the clips before the stop are good: keep them
            with _writing():
                parts = writer.close()
        marker = {
            "media_id": media_id,
            "uri": task.uri,
            "fingerprint": task.fingerprint(extractor.config_dict()),
            "parts": parts,
            "clips": stats.clips,
            "empty_clips": stats.empty_clips,
            "silent_clips": stats.silent_clips,
            "duration_s": duration_s,
            "stopped_at_s": partial.stopped_at_s if partial is not None else None,
            "has_audio": info.audio is not None,
            "has_visual": info.video is not None,
            "face_frames": stats.face_frames,
            "visual_frames": stats.visual_frames,
        }
        with _writing():
            store.write_done(media_id, marker)  # removes an old error record: write ours after
        status = "done"
        if partial is not None:
            status = "partial"
            result.update(stage=partial.stage, kind=partial.kind, message=partial.message)
            with contextlib.suppress(Exception):  # the driver still reports it from the result row
                store.write_error(media_id, _error_record(task, partial))
    except MediaError as err:
        status = "failed"
        result.update(stage=err.stage, kind=err.kind, message=err.message)
        with contextlib.suppress(Exception):
            if writer is not None:
                writer.abort()
            store.clear_media(media_id)
        with contextlib.suppress(Exception):  # the driver still reports it from the result row
            store.write_error(media_id, _error_record(task, err))
    result.update(
        status=status,
        clips=stats.clips,
        empty_clips=stats.empty_clips,
        duration_s=float(duration_s),
        face_frames=stats.face_frames,
        visual_frames=stats.visual_frames,
        wall_s=time.monotonic() - started,
    )
    return result
