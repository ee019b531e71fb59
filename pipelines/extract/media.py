"""One extraction task (a group of media files) to clip shards, as one Ray Data row: for each file
fetch, probe, decode, features; the task's rows go into bounded Parquet files and one marker.

A file's rows are spooled (in memory; on local disk past a size) until the file has succeeded, so a
file that fails half-way leaves no rows behind; its failure becomes an `_errors/` record and a
`failed` entry in the task's marker, never an exception that would stop the job. A file that stops
decoding part-way keeps the clips before the stop (a `partial` entry, plus an error record naming
the time); it is not retried, since its rows are already in the task's files. A rerun of a task
whose marker holds failed files retries just those into new files of the next attempt, and commits
a new marker that lists both. Plain Python (no Ray import): `pipelines/extract/run.py` maps
`run_extract_task` over the task records with Ray Data.
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
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa

from avemo_core.media.clips import ClipExtractor, MediaStats, Segment
from avemo_core.media.decode import PartialDecode
from avemo_core.media.errors import ERROR_FIELDS, ErrorRecord, MediaError
from avemo_core.media.extractor_config import ExtractorConfig
from avemo_core.schema import clip_schema, media_id_for
from pipelines.extract.shards import (
    MediaSpool,
    ShardStore,
    ShardWriter,
    marker_name,
    task_prefix,
)
from pipelines.storage import filesystem, is_s3

# The per-file counts a marker keeps (and the driver sums).
_COUNTS = ("clips", "empty_clips", "silent_clips", "duration_s", "face_frames", "visual_frames")
# Statuses whose rows are in the task's files: never extracted again under the same fingerprint.
KEPT_STATUSES = ("done", "partial")


@dataclasses.dataclass(frozen=True)
class MediaTask:
    """One file to extract and its manifest segments."""

    uri: str
    segments: tuple[Segment, ...] | None  # manifest segments; None: fixed windows
    size_bytes: int = 0  # size when listed (0: unknown); only grouping into tasks uses it

    @property
    def media_id(self) -> str:
        return media_id_for(self.uri)

    def segments_json(self) -> list[Any] | None:
        return None if self.segments is None else [dataclasses.astuple(s) for s in self.segments]

    @classmethod
    def from_json(cls, uri: str, raw: list[Any] | None) -> MediaTask:
        segments = None
        if raw is not None:
            segments = tuple(
                Segment(u, s, e, sp, tuple(i), speaker) for u, s, e, sp, i, speaker in raw
            )
        return cls(uri=uri, segments=segments)


@dataclasses.dataclass(frozen=True)
class ExtractTask:
    """A group of media files extracted together into one set of Parquet files and one marker.

    The id depends only on which files the task holds, so the same listing gives the same tasks;
    the fingerprint also covers the segments and the whole extractor config, so changing either
    redoes the task.
    """

    files: tuple[MediaTask, ...]

    @property
    def task_id(self) -> str:
        listing = "\n".join(f.uri for f in self.files)
        return hashlib.sha256(listing.encode()).hexdigest()[:20]

    def fingerprint(self, extractor_config: Mapping[str, Any]) -> str:
        """Changes whenever the rows this task yields could change: config, URIs or segments."""
        payload = {
            "config": extractor_config,
            "files": [[f.uri, f.segments_json()] for f in self.files],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def to_record(self, fingerprint: str, leftovers: Sequence[str] = ()) -> dict[str, str]:
        """The flat record that travels through Ray Data (strings only)."""
        files = [[f.uri, f.segments_json()] for f in self.files]
        return {
            "task_id": self.task_id,
            "fingerprint": fingerprint,
            "files": json.dumps(files),
            "leftovers": json.dumps(list(leftovers)),  # Parquet files no marker lists: removed
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ExtractTask:
        return cls(tuple(MediaTask.from_json(u, s) for u, s in json.loads(record["files"])))


def group_tasks(
    files: Sequence[MediaTask], files_per_task: int, task_bytes: int = 16 << 20
) -> list[ExtractTask]:
    """Runs of consecutive files of the sorted listing: about `files_per_task` files (at most 2x)
    and at most about `task_bytes` bytes, so a few large files still spread over the CPUs.

    A task ends after a file whose URI hash is 0 modulo `files_per_task`, after a file of at least
    `task_bytes` (a task of its own), before a file that would take it past `task_bytes`, or at
    the cap. Each cut depends only on the files' own URIs and sizes: a file added to or gone from
    the corpus changes the tasks between the cuts around it, not every task after it as
    fixed-size runs would.
    """
    tasks: list[ExtractTask] = []
    current: list[MediaTask] = []
    current_bytes = 0
    for media in files:
        if current and current_bytes + media.size_bytes > task_bytes:
            tasks.append(ExtractTask(tuple(current)))
            current, current_bytes = [], 0
        current.append(media)
        current_bytes += media.size_bytes
        boundary = int(hashlib.sha256(media.uri.encode()).hexdigest()[:12], 16) % files_per_task
        if boundary == 0 or media.size_bytes >= task_bytes or len(current) >= 2 * files_per_task:
            tasks.append(ExtractTask(tuple(current)))
            current, current_bytes = [], 0
    if current:
        tasks.append(ExtractTask(tuple(current)))
    return tasks


def build_extractor(extractor_config: Mapping[str, Any]) -> ClipExtractor:
    """The extractor a config describes (one saved before audio activity: its default rule)."""
    return ExtractorConfig.from_dict(extractor_config).build()


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


@dataclasses.dataclass(frozen=True)
class ShardLimits:
    """When a task's Parquet file rolls over to the next one."""

    rows_per_shard: int  # clip rows per file at most
    max_shard_bytes: int  # bytes per file, about (checked after each row group)


def run_extract_task(record: dict[str, Any], setup_json: str) -> dict[str, Any]:
    """Ray Data row UDF: a task record in, the task's totals out (its marker holds the rest)."""
    extractor, store, schema = worker_state(setup_json)
    setup = json.loads(setup_json)
    marker = extract_task(
        ExtractTask.from_record(record),
        record["fingerprint"],
        extractor,
        store,
        schema,
        ShardLimits(setup["rows_per_shard"], setup["max_shard_bytes"]),
        storage_options=setup["storage_options"],
        leftovers=json.loads(record["leftovers"]),
    )
    return task_totals(marker, ran=True)


def task_totals(marker: Mapping[str, Any], ran: bool) -> dict[str, Any]:
    """A marker's counts as one flat row: files done by this run (`ran` and done in the marker's
    attempt) are new, the other done ones were there before; the failed ones with their records."""
    kept = [m for m in marker["media"] if m["status"] in KEPT_STATUSES]
    new = [m for m in kept if ran and _is_new(m, marker)]
    before = [m for m in kept if not (ran and _is_new(m, marker))]
    failed = [m for m in marker["media"] if m["status"] != "done"]  # partial ones too
    errors = [{k: m[k] for k in ERROR_FIELDS} for m in failed]
    return {
        "task_id": marker["task_id"],
        "files_new": len(new),
        "files_before": len(before),
        "files_failed": len(failed),
        "files_partial_new": sum(m["status"] == "partial" for m in new),
        "files_without_rows": len(marker["media"]) - len(kept),
        "clips_new": sum(int(m["clips"]) for m in new),
        "clips_before": sum(int(m["clips"]) for m in before),
        "empty_clips_new": sum(int(m["empty_clips"]) for m in new),
        "duration_s_new": sum(float(m["duration_s"]) for m in new),
        "duration_s_before": sum(float(m["duration_s"]) for m in before),
        "parts": len(marker["parts"]),
        "errors": json.dumps(errors),
    }


def _is_new(media: Mapping[str, Any], marker: Mapping[str, Any]) -> bool:
    return media.get("attempt", 0) == marker["attempt"]


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
    return ErrorRecord.of(task.uri, err, task.media_id).to_dict()


class TaskWriteError(RuntimeError):
    """Writing the task's shared Parquet files failed: no file of this attempt can be kept."""


def extract_media(
    task: MediaTask,
    extractor: ClipExtractor,
    writer: ShardWriter,
    store: ShardStore,
    storage_options: Mapping[str, Any],
    attempt: int = 0,
) -> dict[str, Any]:
    """Extract one file into the task's writer; returns its record for the task's marker.

    Never raises for a bad file; raises TaskWriteError when the task's own files cannot be written.
    """
    started = time.monotonic()
    media_id = task.media_id
    stats = MediaStats()
    duration_s = 0.0
    has = {"audio": False, "visual": False}
    record: dict[str, Any] = {
        "uri": task.uri,
        "media_id": media_id,
        "stage": "",
        "kind": "",
        "message": "",
        "attempt": attempt,
    }
    partial: PartialDecode | None = None
    spool = MediaSpool(writer.schema)
    try:
        with local_copy(task.uri, storage_options) as local:
            info = extractor.probe(local)
            duration_s = info.duration_s
            has = {"audio": info.audio is not None, "visual": info.video is not None}
            rows = extractor.rows(local, task.uri, info, task.segments, stats)
            with contextlib.closing(rows):  # on failure its ffmpeg processes stop at once
                try:
                    for row in _decoded_rows(rows):
                        with _writing():
                            spool.add(row)
                except PartialDecode as err:
                    if stats.clips == 0:
                        raise
                    partial = err  # the clips before the stop are good: keep them
        try:
            spool.drain_into(writer)
        except Exception as err:
            raise TaskWriteError(f"{type(err).__name__}: {err}") from err
        status = "done"
        if partial is not None:
            status = "partial"
            record.update(
                stage=partial.stage,
                kind=partial.kind,
                message=partial.message,
                stopped_at_s=partial.stopped_at_s,
            )
            with contextlib.suppress(Exception):  # the driver still reports it from the marker
                store.write_error(media_id, _error_record(task, partial))
    except MediaError as err:
        status = "failed"
        record.update(stage=err.stage, kind=err.kind, message=err.message)
        with contextlib.suppress(Exception):  # the driver still reports it from the marker
            store.write_error(media_id, _error_record(task, err))
    finally:
        spool.close()
    record.update(
        status=status,
        clips=stats.clips,
        empty_clips=stats.empty_clips,
        silent_clips=stats.silent_clips,
        duration_s=float(duration_s),
        has_audio=has["audio"],
        has_visual=has["visual"],
        face_frames=stats.face_frames,
        visual_frames=stats.visual_frames,
        wall_s=time.monotonic() - started,
    )
    return record


def extract_task(
    task: ExtractTask,
    fingerprint: str,
    extractor: ClipExtractor,
    store: ShardStore,
    schema: pa.Schema,
    limits: ShardLimits,
    storage_options: Mapping[str, Any],
    leftovers: Sequence[str] = (),
) -> dict[str, Any]:
    """Run one task (or retry its failed files) and commit its marker; returns the marker.

    The previous marker, when its fingerprint matches, keeps the files it holds as done; any other
    Parquet file of this task (`leftovers`, from a killed run) is removed first.
    """
    task_id = task.task_id
    previous = store.read_json(marker_name(task_id))
    if previous is None or previous.get("fingerprint") != fingerprint:
        store.remove(marker_name(task_id))  # first: a marker must never list removed files
        if previous is not None:
            store.remove_many(list(previous["parts"]))
        previous = None
    store.remove_many(list(leftovers))
    attempt = previous["attempt"] + 1 if previous else 0
    records = {m["uri"]: m for m in previous["media"]} if previous else {}
    writer = ShardWriter(
        store, task_prefix(task_id, attempt), schema, limits.rows_per_shard, limits.max_shard_bytes
    )
    todo = [f for f in task.files if records.get(f.uri, {}).get("status") not in KEPT_STATUSES]
    try:
        for media in todo:
            records[media.uri] = extract_media(
                media, extractor, writer, store, storage_options, attempt
            )
        parts = writer.close()
    except TaskWriteError as err:  # nothing of this attempt is kept; the next run retries it
        writer.abort()
        store.remove_many(writer.parts)
        parts = []
        for media in todo:
            records[media.uri] = _write_failure(media, str(err), attempt)
    marker = {
        "task_id": task_id,
        "fingerprint": fingerprint,
        "attempt": attempt,
        "parts": [*(previous["parts"] if previous else []), *parts],
        "bytes_written": writer.bytes_written,
        "media": [records[f.uri] for f in task.files],
    }
    store.write_task_marker(task_id, marker)
    for media in todo:
        if records[media.uri]["status"] == "done":
            store.remove_error(media.media_id)
    return marker


def _write_failure(media: MediaTask, message: str, attempt: int) -> dict[str, Any]:
    record: dict[str, Any] = {
        **ErrorRecord(media.uri, media.media_id, "write", "task_write_failed", message).to_dict(),
        "attempt": attempt,
        "status": "failed",
        "has_audio": False,
        "has_visual": False,
        "wall_s": 0.0,
    }
    return {**record, **{key: 0 for key in _COUNTS}}
