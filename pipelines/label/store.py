"""The labelling output root (local or s3://): its layout, atomic commits and what is already done.

    OUT/labels/part-<PART>.parquet   label shards, one row per clip (avemo_core.schema.label_schema)
    OUT/media/part-<PART>.parquet    media summaries, one row per media file (label_summary.py)
    OUT/_errors/<media_id>.json      why a media file failed (uri, stage, kind, message)
    OUT/_SUCCESS.json                the last complete run: model, counts, timing (written last)

A part holds complete media files only. Every file appears atomically
(pipelines.extract.shards.ShardStore), and a part is committed by writing its label file and then
its media file: the media file is the commit record, so a label file without one is the leftover of
a killed run, which `recover` removes.
Part names start with the UTC time, so sorting them orders commits. One run writes to an OUT at a
time (the shipped schedules never overlap runs).
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from avemo_core.schema import label_schema, media_schema
from pipelines.extract.shards import ERRORS_DIR, SUCCESS_FILE, ShardStore

LABELS_DIR = "labels"
MEDIA_DIR = "media"
PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"


@dataclasses.dataclass(frozen=True)
class ModelKey:
    """Which model produced a labelling."""

    name: str
    version: str

    def supersedes(self, other: ModelKey) -> bool:
        """True unless `other` is this model or a newer version of the same registered model."""
        if other == self:
            return False
        if other.name == self.name and other.version.isdigit() and self.version.isdigit():
            return int(self.version) > int(other.version)
        return True


def new_run_id() -> str:
    """Sortable and unique: UTC time, then random hex."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


class LabelStore:
    """Reads and atomically writes the files of one labelling output root."""

    def __init__(self, root_uri: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.files = ShardStore(root_uri, storage_options)

    def _parts(self, directory: str) -> dict[str, str]:
        """part name -> relative path of the part files in `directory`."""
        names = self.files.list_names(directory)
        return {
            n[len(PART_PREFIX) : -len(PART_SUFFIX)]: f"{directory}/{n}"
            for n in names
            if n.startswith(PART_PREFIX) and n.endswith(PART_SUFFIX)
        }

    def parts(self) -> list[str]:
        """Committed part names, oldest first."""
        return sorted(self._parts(MEDIA_DIR))

    def recover(self) -> list[str]:
        """Start a run: withdraw `_SUCCESS.json`, remove a killed run's leftovers (returned)."""
        self.files.remove(SUCCESS_FILE)
        removed: list[str] = []
        if not self.files.remote:
            for directory in (LABELS_DIR, MEDIA_DIR, ERRORS_DIR):
                folder = self.files.path(directory)
                os.makedirs(folder, exist_ok=True)
                for name in os.listdir(folder):
                    if name.startswith("."):  # a temp file of an interrupted atomic write
                        os.remove(os.path.join(folder, name))
                        removed.append(f"{directory}/{name}")
        committed = set(self.parts())
        for part, relative in self._parts(LABELS_DIR).items():
            if part not in committed:
                self.files.remove(relative)
                removed.append(relative)
        return removed

    def _read_parts(
        self, directory: str, columns: list[str] | None = None
    ) -> list[tuple[str, pa.Table]]:
        """(part, table) of every committed part in `directory`, oldest first."""
        parts = self._parts(directory)
        out = []
        for part in self.parts():
            if part in parts:
                with self.files.fs.open(self.files.path(parts[part]), "rb") as f:
                    out.append((part, pq.read_table(f, columns=columns)))
        return out

    def labelled_media(self) -> dict[str, ModelKey]:
        """media_id -> the model of its newest committed labelling."""
        done: dict[str, ModelKey] = {}
        columns = ["media_id", "model_name", "model_version"]
        for _, table in self._read_parts(MEDIA_DIR, columns):
            for media_id, name, version in zip(
                *(table.column(c).to_pylist() for c in columns), strict=True
            ):
                done[media_id] = ModelKey(name, version)
        return done

    def commit(self, part: str, labels: pa.Table, media: pa.Table) -> None:
        """Commit one part: its label rows first, then its media rows (the commit record)."""
        name = f"{PART_PREFIX}{part}{PART_SUFFIX}"
        self.files.write_bytes(f"{LABELS_DIR}/{name}", _parquet_bytes(labels))
        self.files.write_bytes(f"{MEDIA_DIR}/{name}", _parquet_bytes(media))
        for media_id in media.column("media_id").to_pylist():
            self.files.remove(f"{ERRORS_DIR}/{media_id}.json")

    def write_error(self, record: dict[str, Any]) -> None:
        """An `_errors/<media_id>.json` record (uri, media_id, stage, kind, message)."""
        self.files.write_error(record["media_id"], record)

    def errors(self) -> list[dict[str, Any]]:
        names = [n for n in self.files.list_names(ERRORS_DIR) if n.endswith(".json")]
        return [self.files.read_json(f"{ERRORS_DIR}/{n}") for n in names]

    def write_success(self, summary: dict[str, Any]) -> None:
        self.files.write_success(summary)

    def read_success(self) -> dict[str, Any] | None:
        return self.files.read_json(SUCCESS_FILE)

    def _newest_parts(self) -> dict[str, str]:
        """media_id -> the part holding its newest labelling."""
        newest: dict[str, str] = {}
        for part, table in self._read_parts(MEDIA_DIR, ["media_id"]):
            newest.update(dict.fromkeys(table.column("media_id").to_pylist(), part))
        return newest

    def _read(self, directory: str, schema: pa.Schema, latest: bool) -> pa.Table:
        newest = self._newest_parts() if latest else {}
        tables = []
        for part, table in self._read_parts(directory):
            if latest:
                ids = table.column("media_id").to_pylist()
                table = table.filter(pa.array([newest.get(m) == part for m in ids], pa.bool_()))
            tables.append(table)
        if not tables:
            return schema.empty_table()
        # parts written before a column was added (label schema 1: no visual_reason) read as null
        return pa.concat_tables(tables, promote_options="default")

    def read_media(self, latest: bool = True) -> pa.Table:
        """Committed media summaries; with `latest`, only each file's newest labelling."""
        return self._read(MEDIA_DIR, media_schema(), latest)

    def read_labels(self, latest: bool = True) -> pa.Table:
        """Committed label rows; with `latest`, only those of each file's newest labelling."""
        return self._read(LABELS_DIR, label_schema(), latest)
