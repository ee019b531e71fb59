"""The one way to open storage: local paths and file:// URIs alike, other schemes refused."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.storage import arrow_filesystem, filesystem


def test_file_uris_and_paths_open_the_same_folder(tmp_path: Path) -> None:
    fs, path = filesystem(f"file://{tmp_path}")
    assert path == filesystem(str(tmp_path))[1] == str(tmp_path) and fs.isdir(path)
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "a.parquet")
    arrow_fs, root = arrow_filesystem(str(tmp_path))
    assert pq.read_table(f"{root}/a.parquet", filesystem=arrow_fs).column("x").to_pylist() == [1, 2]


def test_other_schemes_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported storage URI"):
        filesystem("gs://bucket/x")
