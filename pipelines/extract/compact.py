"""Clip shards rewritten as a few large Parquet files (the same rows, schema and
metadata), for training loops that pay per file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.extract.shards import SUCCESS_FILE
from pipelines.train.datasets import inspect_shards


def compact_shards(source: Path, target: Path, rows_per_file: int = 256) -> Path:
    """The same clip rows, schema and metadata in a few large Parquet files, for training.

    Extraction writes at least one small file per media file; Ray Data pays per file on every
    epoch (a footer read and a task each), which on a busy 2-core machine cost more than the
    training itself. Rows are sorted by clip id; `_SUCCESS.json` is copied last, as the marker.
    """
    if (target / SUCCESS_FILE).exists():
        return target
    info = inspect_shards(str(source))
    schema = pq.read_schema(info.files[0])
    table = pq.read_table(list(info.files), schema=schema).sort_by("clip_id")
    target.mkdir(parents=True, exist_ok=True)
    for index, start in enumerate(range(0, table.num_rows, rows_per_file)):
        part = target / f"part-{index:05d}.parquet"
        staging = target / f".{part.name}.tmp"
        pq.write_table(table.slice(start, rows_per_file), staging)
        os.replace(staging, part)
    shutil.copyfile(source / SUCCESS_FILE, target / SUCCESS_FILE)
    return target
