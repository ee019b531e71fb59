"""Read a list of Parquet shard files with Ray Data, one read task per file, planned in no time.

Ray Data's default Parquet reader in 2.60 (its footer-indexed "V2" datasource) starts 32
footer-reading actors per read and bin-packs small files into 128 MiB read units, so the first
batch waited for every footer and for one task to read every file: 16-30 s for 147 files on a
loaded 2-CPU machine, growing with the file count. The file-based reader ("V1") takes the list as
given and reads about one file per task: 4-7 s to the first batch for 14 to 1,415 files
(bench/scale.py). Training and labelling read their shards through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def read_shards(files: Sequence[str], filesystem: Any, **options: Any) -> Any:
    """`ray.data.read_parquet(files, ...)` with the file-based reader; the context is restored."""
    import ray.data

    context = ray.data.DataContext.get_current()
    default_reader, context.use_datasource_v2 = context.use_datasource_v2, False
    try:
        return ray.data.read_parquet(list(files), filesystem=filesystem, **options)
    finally:
        context.use_datasource_v2 = default_reader
