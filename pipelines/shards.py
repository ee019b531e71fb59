"""An extraction's output root: clip shards, per-media done markers, error records, _SUCCESS.json.

Layout (local folder or s3:// prefix):

    <media_id>-00000.parquet   clip rows of one media file, at most rows_per_shard per file
    _done/<media_id>.json      written after all of that file's shards: the file is extracted
    _errors/<media_id>.json    why a file failed (uri, stage, kind, message); gone once it succeeds
    _SUCCESS.json              counts, config and timing of the last complete run, written last

Every file appears atomically: local files are written under a hidden temporary name and renamed,
S3 objects become visible only once uploaded. Shard names are deterministic, so a rerun overwrites
rather than duplicates, and a file without a done marker is cleared and redone.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import uuid
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.storage import filesystem, is_s3, join

DONE_DIR = "_done"
ERRORS_DIR = "_errors"
SUCCESS_FILE = "_SUCCESS.json"
_TMP_MARK = ".tmp-"
ROWS_PER_GROUP = 8  # rows per Parquet row group: what a writer holds in memory at most
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
            for folder in (self.root, self.path(DONE_DIR), self.path(ERRORS_DIR)):
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

    def write_json(self, relative: str, value: Any) -> None:
        self.write_bytes(relative, json.dumps(value, indent=2, sort_keys=True).encode())

    def read_json(self, relative: str) -> Any | None:
        try:
            return json.loads(self.fs.cat_file(self.path(relative)))
        except FileNotFoundError:
            return None

    def remove(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(relative))

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

    # -- per-media records -------------------------------------------------------------------

    def done_markers(self) -> dict[str, dict[str, Any]]:
        """media_id -> done marker, for every file a previous run finished."""
        names = [n for n in self.list_names(DONE_DIR) if n.endswith(".json")]
        if not names:
            return {}
        contents = self.fs.cat([self.path(DONE_DIR, n) for n in names], on_error="omit")
        markers = [json.loads(data) for data in contents.values()]
        return {marker["media_id"]: marker for marker in markers}

    def clear_media(self, media_id: str) -> None:
        """Remove a file's done marker and shards (written in order, so the first gap ends them)."""
        self.remove(f"{DONE_DIR}/{media_id}.json")
        index = 0
        while self.fs.exists(self.path(part_name(media_id, index))):
            self.remove(part_name(media_id, index))
            index += 1

    def write_done(self, media_id: str, marker: dict[str, Any]) -> None:
        self.write_json(f"{DONE_DIR}/{media_id}.json", marker)
        self.remove(f"{ERRORS_DIR}/{media_id}.json")

    def write_error(self, media_id: str, record: dict[str, Any]) -> None:
        self.write_json(f"{ERRORS_DIR}/{media_id}.json", record)

    def write_success(self, summary: dict[str, Any]) -> None:
        self.write_json(SUCCESS_FILE, summary)


def part_name(media_id: str, index: int) -> str:
    return f"{media_id}-{index:05d}.parquet"


class ShardWriter:
    """Streams one media file's clip rows into shards of at most `rows_per_shard` rows.

    Rows go to a temporary Parquet file one row group at a time, so memory holds one row group,
    and each shard is committed (renamed or uploaded) only once it is complete.
    """

    def __init__(
        self, store: ShardStore, media_id: str, schema: pa.Schema, rows_per_shard: int
    ) -> None:
        self.store = store
        self.media_id = media_id
        self.schema = schema
        self.rows_per_shard = rows_per_shard
        self.parts: list[str] = []
        self._pending: list[dict[str, Any]] = []
        self._part_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._temp: str | None = None

    def add(self, row: dict[str, Any]) -> None:
        self._pending.append(row)
        if self._part_rows + len(self._pending) >= self.rows_per_shard:
            self._commit_part()
        elif len(self._pending) >= ROWS_PER_GROUP:
            self._write_group()

    def close(self) -> list[str]:
        """Commit what is left; returns the shard names written for this media file."""
        self._commit_part()
        return list(self.parts)

    def abort(self) -> None:
        """Drop the shard being written (committed shards are the caller's to clear)."""
        if self._writer is not None:
            self._writer.close()
        if self._temp is not None and os.path.exists(self._temp):
            os.remove(self._temp)
        self._writer = self._temp = None

    def _write_group(self) -> None:
        if not self._pending:
            return
        if self._writer is None:
            self._temp = self.store.temp_file(part_name(self.media_id, len(self.parts)))
            self._writer = pq.ParquetWriter(
                self._temp, self.schema, compression="zstd", use_dictionary=_DICTIONARY_COLUMNS
            )
        self._writer.write_table(pa.Table.from_pylist(self._pending, schema=self.schema))
        self._part_rows += len(self._pending)
        self._pending = []

    def _commit_part(self) -> None:
        self._write_group()
        if self._writer is None or self._temp is None:
            return
        self._writer.close()
        name = part_name(self.media_id, len(self.parts))
        self.store.commit(self._temp, name)
        self.parts.append(name)
        self._writer = self._temp = None
        self._part_rows = 0
