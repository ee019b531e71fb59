"""An extraction's output root: clip shards of bounded size, one completion marker per task, error
records and `_SUCCESS.json`.

Layout (local folder or s3:// prefix):

    part-<task_id>-<attempt>-<k>.parquet  clip rows of one task's media files, rolled at a row
                                          and a byte limit (k counts from 00000)
    _tasks/<task_id>.json                 written after all of that attempt's files: the task's
                                          per-file records and the names of its Parquet files
    _errors/<media_id>.json               why a file failed (uri, stage, kind, message)
    _SUCCESS.json                         counts, config and timing of the last complete run

A task's marker is its one commit point: a Parquet file of the task that its marker does not list
is a leftover of a killed run, removed before the task runs again. Every file appears atomically:
local files are written under a hidden temporary name and renamed, S3 objects become visible only
once uploaded. Readers take every `*.parquet` at the top, so shards of the earlier per-media layout
(`<media_id>-<k>.parquet` beside `_done/`) read the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.storage import filesystem, is_s3, join

TASKS_DIR = "_tasks"
ERRORS_DIR = "_errors"
SUCCESS_FILE = "_SUCCESS.json"
LEGACY_DONE_DIR = "_done"  # per-media done markers of the layout before tasks
PART_PREFIX = "part-"
_TMP_MARK = ".tmp-"
_TASK_PART = re.compile(r"part-(?P<task>[0-9a-f]{20})-\d{2,}-\d{5,}\.parquet")
# A Parquet row group ends at ROWS_PER_GROUP rows or GROUP_BYTES of row data, whichever comes
# first: what a writer holds in memory at most. Bytes decide for media clips (a 10 s video clip
# is about 0.4 MB: 10 rows), rows for short utterances (a 3.5 s audio clip is 56 KB: 75 rows).
ROWS_PER_GROUP = 256
GROUP_BYTES = 4 << 20
_ROW_BASE_BYTES = 512  # a row's columns besides its blobs (ids, URI, times, labels), about
SPOOL_MEMORY_BYTES = 32 << 20  # a media file's rows held in memory before they spill to disk
READ_THREADS = 16  # concurrent small-file reads (markers): S3 latency, not bandwidth, bounds them
# Columns worth dictionary-encoding; the feature blobs never repeat.
_DICTIONARY_COLUMNS = ["media_id", "source_uri", "split"]


class ShardStore:
    """Reads and atomically writes the files of one output root."""

    def __init__(self, root_uri: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.root_uri = root_uri.rstrip("/")
        self.remote = is_s3(root_uri)
        self.fs, self.root = filesystem(root_uri, storage_options)

    def path(self, *parts: str) -> str:
        return join(self.root, *parts)

    def prepare(self) -> None:
        """Create the folders, withdraw `_SUCCESS.json` (run not complete), drop stale temps."""
        if self.remote:
            bucket = self.root.split("/", 1)[0]
            if not self.fs.exists(bucket):
                raise FileNotFoundError(f"bucket {bucket!r} does not exist")
        else:
            for folder in (self.root, self.path(TASKS_DIR), self.path(ERRORS_DIR)):
                os.makedirs(folder, exist_ok=True)
                for name in os.listdir(folder):
                    if name.startswith(".") and _TMP_MARK in name:
                        os.remove(os.path.join(folder, name))
        self.remove(SUCCESS_FILE)

    def temp_file(self, relative: str) -> str:
        """A local path to fill before `commit`: hidden beside the target, or a temp file for S3."""
        if self.remote:
            handle, path = tempfile.mkstemp(prefix="avemo-", suffix=os.path.splitext(relative)[1])
            os.close(handle)
            return path
        folder, name = os.path.split(self.path(relative))
        return os.path.join(folder, f".{name}{_TMP_MARK}{uuid.uuid4().hex}")

    def commit(self, temp: str, relative: str) -> None:
        """Make a fully written temp file visible as `relative` in one step (rename or upload)."""
        try:
            if self.remote:
                self.fs.put_file(temp, self.path(relative))  # an object appears only when complete
            else:
                with open(temp, "rb+") as written:
                    os.fsync(written.fileno())
                os.replace(temp, self.path(relative))
        finally:
            if os.path.exists(temp):
                os.remove(temp)

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a small file so that readers see either nothing or all of it."""
        if self.remote:
            self.fs.pipe_file(self.path(relative), data)
            return
        temp = self.temp_file(relative)
        try:
            with open(temp, "wb") as out:
                out.write(data)
        except BaseException:
            os.remove(temp)
            raise
        self.commit(temp, relative)

    def write_json(self, relative: str, value: Any, indent: int | None = 2) -> None:
        """`indent=None`: compact, for files only programs read (json's C encoder; an indented
        dump runs its pure-Python one, about 0.5 ms per media file of a marker)."""
        separators = None if indent else (",", ":")
        text = json.dumps(value, indent=indent, sort_keys=True, separators=separators)
        self.write_bytes(relative, text.encode())

    def read_json(self, relative: str) -> Any | None:
        try:
            return json.loads(self.fs.cat_file(self.path(relative)))
        except FileNotFoundError:
            return None

    def remove(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(relative))

    def remove_many(self, relatives: list[str]) -> None:
        """Remove files concurrently (a rerun may clear many leftovers)."""
        with ThreadPoolExecutor(READ_THREADS) as pool:
            list(pool.map(self.remove, relatives))

    def list_names(self, relative: str = "") -> list[str]:
        """File names directly inside a folder of the root (empty when it does not exist)."""
        folder = self.path(relative) if relative else self.root
        try:
            entries = self.fs.ls(folder, detail=True)
        except FileNotFoundError:
            return []
        names = [
            e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "file"
        ]
        return sorted(n for n in names if _TMP_MARK not in n)

    # -- task markers and error records ------------------------------------------------------

    def task_markers(self) -> Iterator[dict[str, Any]]:
        """Every task marker a previous run committed, read concurrently, in no set order."""
        names = [n for n in self.list_names(TASKS_DIR) if n.endswith(".json")]
        with ThreadPoolExecutor(READ_THREADS) as pool:
            for marker in pool.map(lambda n: self.read_json(f"{TASKS_DIR}/{n}"), names):
                if marker is not None:
                    yield marker

    def has_legacy_markers(self) -> bool:
        """Whether the root holds done markers of the per-media layout (before tasks)."""
        return any(n.endswith(".json") for n in self.list_names(LEGACY_DONE_DIR))

    def write_task_marker(self, task_id: str, marker: dict[str, Any]) -> None:
        self.write_json(marker_name(task_id), marker, indent=None)

    def write_error(self, media_id: str, record: dict[str, Any]) -> None:
        self.write_json(f"{ERRORS_DIR}/{media_id}.json", record)

    def remove_error(self, media_id: str) -> None:
        self.remove(f"{ERRORS_DIR}/{media_id}.json")

    def write_success(self, summary: dict[str, Any]) -> None:
        self.write_json(SUCCESS_FILE, summary)


def marker_name(task_id: str) -> str:
    return f"{TASKS_DIR}/{task_id}.json"


def part_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:05d}.parquet"


def task_prefix(task_id: str, attempt: int) -> str:
    """Name stem of the Parquet files one attempt of a task writes (retries write new files)."""
    return f"{PART_PREFIX}{task_id}-{attempt:02d}"


def task_of_part(name: str) -> str | None:
    """The task id in a task's Parquet file name, None for any other file (the per-media layout,
    or files some other writer put there)."""
    match = _TASK_PART.fullmatch(name)
    return match["task"] if match else None


class ShardWriter:
    """Streams clip rows into Parquet files of at most `rows_per_shard` rows and about
    `max_shard_bytes` bytes (a file rolls once either is reached).

    Rows go to a temporary Parquet file one row group at a time (`ROWS_PER_GROUP` rows or
    `GROUP_BYTES`, whichever comes first), so memory holds one row group, and each file is
    committed (renamed or uploaded) only once it is complete. Rows arrive one by one (`add`) or
    as Arrow tables (`add_table`, a spooled media file): tables are never turned back into rows.
    """

    def __init__(
        self,
        store: ShardStore,
        prefix: str,
        schema: pa.Schema,
        rows_per_shard: int,
        max_shard_bytes: int | None = None,
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.schema = schema
        self.rows_per_shard = rows_per_shard
        self.max_shard_bytes = max_shard_bytes
        self.parts: list[str] = []
        self.bytes_written = 0
        self._rows = RowGroups(schema)
        self._pending: list[pa.Table] = []  # the next row group, in order
        self._pending_rows = 0
        self._pending_bytes = 0
        self._part_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._temp: str | None = None

    def add(self, row: dict[str, Any]) -> None:
        table = self._rows.add(row)
        if table is None and self._part_rows + self._pending_rows + self._rows.held >= (
            self.rows_per_shard
        ):
            table = self._rows.flush()  # the file is full: commit it now, not a group later
        if table is not None:
            self._append(table)

    def add_table(self, table: pa.Table) -> None:
        """Append rows already in Arrow form, after the rows added before them."""
        self._flush_rows()
        self._append(table)

    def close(self) -> list[str]:
        """Commit what is left; returns the names of the files written."""
        self._flush_rows()
        self._commit_part()
        return list(self.parts)

    def abort(self) -> None:
        """Drop the file being written (committed files are the caller's to clear)."""
        if self._writer is not None:
            self._writer.close()
        if self._temp is not None and os.path.exists(self._temp):
            os.remove(self._temp)
        self._writer = self._temp = None

    def _flush_rows(self) -> None:
        table = self._rows.flush()
        if table is not None:
            self._append(table)

    def _append(self, table: pa.Table) -> None:
        while table.num_rows:
            room = self.rows_per_shard - self._part_rows - self._pending_rows
            head, table = table.slice(0, room), table.slice(room)
            self._pending.append(head)
            self._pending_rows += head.num_rows
            self._pending_bytes += head.nbytes
            if self._part_rows + self._pending_rows >= self.rows_per_shard:
                self._commit_part()
            elif self._pending_rows >= ROWS_PER_GROUP or self._pending_bytes >= GROUP_BYTES:
                self._write_group()

    def _write_group(self) -> None:
        if not self._pending:
            return
        if self._writer is None:
            self._temp = self.store.temp_file(part_name(self.prefix, len(self.parts)))
            self._writer = pq.ParquetWriter(
                self._temp, self.schema, compression="zstd", use_dictionary=_DICTIONARY_COLUMNS
            )
        group = pa.concat_tables(self._pending)
        self._writer.write_table(group, row_group_size=ROWS_PER_GROUP)
        self._part_rows += group.num_rows
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        limit = self.max_shard_bytes
        if limit is not None and self._temp is not None and os.path.getsize(self._temp) >= limit:
            self._commit_part()

    def _commit_part(self) -> None:
        self._write_group()
        if self._writer is None or self._temp is None:
            return
        self._writer.close()
        name = part_name(self.prefix, len(self.parts))
        self.bytes_written += os.path.getsize(self._temp)
        self.store.commit(self._temp, name)
        self.parts.append(name)
        self._writer = self._temp = None
        self._part_rows = 0


def _row_bytes(row: Mapping[str, Any]) -> int:
    """About what a row takes in Arrow: its blobs plus a fixed allowance for the small columns."""
    return _ROW_BASE_BYTES + sum(len(v) for v in row.values() if isinstance(v, bytes))


class RowGroups:
    """Rows gathered into Arrow tables of one row group each (`ROWS_PER_GROUP` rows or
    `GROUP_BYTES`): one conversion per group, not per row."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self._rows: list[dict[str, Any]] = []
        self._bytes = 0

    @property
    def held(self) -> int:
        """Rows added and not yet handed out as a table."""
        return len(self._rows)

    def add(self, row: dict[str, Any]) -> pa.Table | None:
        """Hold the row; the group as a table once it is full, else None."""
        self._rows.append(row)
        self._bytes += _row_bytes(row)
        if len(self._rows) >= ROWS_PER_GROUP or self._bytes >= GROUP_BYTES:
            return self.flush()
        return None

    def flush(self) -> pa.Table | None:
        """The rows held so far as a table (None when there are none)."""
        if not self._rows:
            return None
        table = pa.Table.from_pylist(self._rows, schema=self.schema)
        self._rows, self._bytes = [], 0
        return table


class MediaSpool:
    """One media file's rows, held until the file has succeeded: a file that fails half-way
    leaves nothing in the task's shards.

    A short file's rows stay in memory as they came (most files: one or a few clips) and go to
    the writer as rows, so many files share one conversion to Arrow; past `memory_bytes` they
    spill into a local temporary Parquet file, so memory holds one row group plus that.
    """

    def __init__(self, schema: pa.Schema, memory_bytes: int = SPOOL_MEMORY_BYTES) -> None:
        self.schema = schema
        self.memory_bytes = memory_bytes
        self.path: str | None = None  # the spill file, once there is one
        self._held: list[dict[str, Any]] = []
        self._held_bytes = 0
        self._rows = RowGroups(schema)
        self._writer: pq.ParquetWriter | None = None

    def add(self, row: dict[str, Any]) -> None:
        size = _row_bytes(row)
        if self._writer is None and self._held_bytes + size <= self.memory_bytes:
            self._held.append(row)
            self._held_bytes += size
            return
        if self._writer is None:
            self._spill()
        self._write(self._rows.add(row))

    def drain_into(self, writer: ShardWriter) -> None:
        """Move every spooled row into `writer`, in order."""
        if self._writer is not None and self.path is not None:
            self._write(self._rows.flush())
            self._writer.close()
            self._writer = None
            source = pq.ParquetFile(self.path)
            for group in range(source.num_row_groups):
                writer.add_table(source.read_row_group(group))
        for row in self._held:  # after a spill nothing is held: the file has it all
            writer.add(row)
        self._held, self._held_bytes = [], 0

    def close(self) -> None:
        """Drop the rows and the spill file (always called, success or not)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
        self._held, self._held_bytes = [], 0

    def _spill(self) -> None:
        """Open the spill file and move the rows held so far into it."""
        handle, self.path = tempfile.mkstemp(prefix="avemo-spool-", suffix=".parquet")
        os.close(handle)
        self._writer = pq.ParquetWriter(self.path, self.schema)
        held, self._held, self._held_bytes = self._held, [], 0
        for row in held:
            self._write(self._rows.add(row))

    def _write(self, table: pa.Table | None) -> None:
        if table is not None and self._writer is not None:
            self._writer.write_table(table)
