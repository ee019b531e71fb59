"""The shard writer: bounded files, one row group in memory, atomic commits, no partial files."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from avemo_core.labels import EMOTIONS
from avemo_core.schema import CLIP_SCHEMA_VERSION, clip_id_for, clip_schema
from pipelines.shards import ROWS_PER_GROUP, ShardStore, ShardWriter, part_name


def row(i: int) -> dict:
    return {
        "clip_id": clip_id_for("m", i, i + 1), "media_id": "m", "source_uri": "m",
        "start_s": float(i), "end_s": float(i + 1), "split": None,
        "has_audio": True, "has_visual": False,
        "audio_features": bytes(2 * 80 * 3), "audio_frames": 3, "audio_dims": 80,
        "visual_features": b"", "visual_frames": 0, "visual_height": 64, "visual_width": 64,
        "visual_face_flags": b"", "face_ratio": 0.0, **{e: None for e in EMOTIONS},
        "schema_version": CLIP_SCHEMA_VERSION,
    }  # fmt: skip


def test_rows_per_shard_and_row_groups(tmp_path: Path) -> None:
    store = ShardStore(str(tmp_path))
    store.prepare()
    writer = ShardWriter(store, "m", clip_schema({"x": 1}), rows_per_shard=20)
    for i in range(45):
        writer.add(row(i))
        assert len(list(tmp_path.glob("*.parquet"))) == (i + 1) // 20  # appears only when full
    assert writer.close() == [part_name("m", k) for k in range(3)]
    counts = [pq.read_metadata(tmp_path / part_name("m", k)).num_rows for k in range(3)]
    assert counts == [20, 20, 5]
    groups = pq.ParquetFile(tmp_path / part_name("m", 0)).metadata
    assert max(groups.row_group(g).num_rows for g in range(groups.num_row_groups)) <= ROWS_PER_GROUP
    tables = [pq.read_table(tmp_path / part_name("m", k)) for k in range(3)]
    assert [s for t in tables for s in t.column("start_s").to_pylist()] == [
        float(i) for i in range(45)
    ]
    assert not list(tmp_path.glob(".*"))


def test_abort_leaves_no_partial_shard(tmp_path: Path) -> None:
    store = ShardStore(str(tmp_path))
    store.prepare()
    writer = ShardWriter(store, "m", clip_schema(), rows_per_shard=100)
    for i in range(ROWS_PER_GROUP * 2):
        writer.add(row(i))
    assert len(list(tmp_path.glob(".*.tmp-*"))) == 1  # row groups go to a hidden temp file
    writer.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_done", "_errors"]


def test_prepare_withdraws_success_and_stale_temps(tmp_path: Path) -> None:
    store = ShardStore(str(tmp_path))
    store.prepare()
    store.write_json("_SUCCESS.json", {"done": True})
    (tmp_path / f".{part_name('m', 0)}.tmp-dead").write_bytes(b"half")
    store.prepare()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_done", "_errors"]
