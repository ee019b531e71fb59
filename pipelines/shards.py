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
import io
import json
import os
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

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a file so that readers see either nothing or all of it."""
        target = self.path(relative)
        if self.remote:
            self.fs.pipe_file(target, data)
            return
        folder, name = os.path.split(target)
        temp = os.path.join(folder, f".{name}{_TMP_MARK}{uuid.uuid4().hex}")
        try:
            with open(temp, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        finally:
            if os.path.exists(temp):
                os.remove(temp)

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
    """Buffers one media file's clip rows and writes a shard each `rows_per_shard` rows."""

    def __init__(
        self, store: ShardStore, media_id: str, schema: pa.Schema, rows_per_shard: int
    ) -> None:
        self.store = store
        self.media_id = media_id
        self.schema = schema
        self.rows_per_shard = rows_per_shard
        self.rows: list[dict[str, Any]] = []
        self.parts: list[str] = []

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.rows_per_shard:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        table = pa.Table.from_pylist(self.rows, schema=self.schema)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd", use_dictionary=_DICTIONARY_COLUMNS)
        name = part_name(self.media_id, len(self.parts))
        self.store.write_bytes(name, buffer.getvalue())
        self.parts.append(name)
        self.rows = []

    def close(self) -> list[str]:
        """Write what is buffered; returns the shard names written for this media file."""
        self.flush()
        return list(self.parts)
