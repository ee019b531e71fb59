"""The shard writer: files bounded in rows and bytes, one row group in memory, atomic commits, no
partial files; the spool that holds one media file's rows until the file has succeeded."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from avemo_core.labels import EMOTIONS
from avemo_core.schema import CLIP_SCHEMA_VERSION, clip_id_for, clip_schema
from pipelines.extract.shards import (
    GROUP_BYTES,
    ROWS_PER_GROUP,
    MediaSpool,
    ShardStore,
    ShardWriter,
    part_name,
    task_of_part,
    task_prefix,
)

TASK = "0123456789abcdef0123"  # a task id (20 hex digits)


def row(i: int) -> dict:
    return {
        "clip_id": clip_id_for("m", i, i + 1), "media_id": "m", "source_uri": "m",
        "start_s": float(i), "end_s": float(i + 1), "split": None,
        "has_audio": True, "has_visual": False,
        "audio_features": bytes(2 * 80 * 3), "audio_frames": 3, "audio_dims": 80,
        "visual_features": b"", "visual_frames": 0, "visual_height": 64, "visual_width": 64,
        "visual_face_flags": b"", "face_ratio": 0.0, "audio_active_ratio": 1.0,
        **{e: None for e in EMOTIONS}, "schema_version": CLIP_SCHEMA_VERSION,
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
    writer = ShardWriter(store, "m", clip_schema(), rows_per_shard=10 * ROWS_PER_GROUP)
    for i in range(ROWS_PER_GROUP * 2):
        writer.add(row(i))
    assert len(list(tmp_path.glob(".*.tmp-*"))) == 1  # row groups go to a hidden temp file
    writer.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_errors", "_tasks"]


def test_prepare_withdraws_success_and_stale_temps(tmp_path: Path) -> None:
    store = ShardStore(str(tmp_path))
    store.prepare()
    store.write_json("_SUCCESS.json", {"done": True})
    (tmp_path / f".{part_name('m', 0)}.tmp-dead").write_bytes(b"half")
    store.prepare()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_errors", "_tasks"]


def test_files_roll_at_the_byte_limit(tmp_path: Path) -> None:
    store = ShardStore(str(tmp_path))
    store.prepare()
    prefix = task_prefix(TASK, 0)
    writer = ShardWriter(store, prefix, clip_schema(), rows_per_shard=10_000, max_shard_bytes=1)
    for i in range(3 * ROWS_PER_GROUP):
        writer.add({**row(i), "audio_features": bytes(range(256)) * 8})
    names = writer.close()
    # every row group reaches the 1-byte limit: one file per row group, in order, all committed
    assert names == [part_name(prefix, k) for k in range(3)]
    assert [pq.read_metadata(tmp_path / n).num_rows for n in names] == [ROWS_PER_GROUP] * 3
    assert writer.bytes_written == sum((tmp_path / n).stat().st_size for n in names)
    assert {task_of_part(n) for n in names} == {TASK}
    assert task_of_part(part_name("0123456789abcdef", 0)) is None  # the per-media layout
    assert task_of_part("part-00000.parquet") is None  # another writer's naming


def test_spool_moves_rows_only_when_drained(tmp_path: Path) -> None:
    store = ShardStore(str(tmp_path))
    store.prepare()
    writer = ShardWriter(store, task_prefix("t", 0), clip_schema(), rows_per_shard=1000)
    kept, dropped = MediaSpool(clip_schema()), MediaSpool(clip_schema())
    for i in range(ROWS_PER_GROUP + 3):
        kept.add(row(i))
        dropped.add(row(100 + i))
    dropped.close()  # a file that failed: its rows never reach the writer
    assert kept.path is None  # a short file's rows stay in memory
    kept.drain_into(writer)
    kept.close()
    names = writer.close()
    starts = pq.read_table(tmp_path / names[0]).column("start_s").to_pylist()
    assert starts == [float(i) for i in range(ROWS_PER_GROUP + 3)]


def test_spool_spills_past_its_memory_budget(tmp_path: Path) -> None:
    store = ShardStore(str(tmp_path))
    store.prepare()
    writer = ShardWriter(store, task_prefix(TASK, 0), clip_schema(), rows_per_shard=7)
    kept, dropped = MediaSpool(clip_schema(), memory_bytes=1), MediaSpool(clip_schema(), 1)
    for i in range(2 * ROWS_PER_GROUP + 5):
        kept.add(row(i))
        dropped.add(row(i))
    assert kept.path is not None and Path(kept.path).exists()  # spilled to disk
    spills = [kept.path, dropped.path]
    dropped.close()
    kept.drain_into(writer)
    kept.close()
    names = writer.close()
    tables = [pq.read_table(tmp_path / n) for n in names]
    assert [t.num_rows for t in tables[:-1]] == [7] * (len(names) - 1)  # the row cap holds
    starts = [s for t in tables for s in t.column("start_s").to_pylist()]
    assert starts == [float(i) for i in range(2 * ROWS_PER_GROUP + 5)]  # all rows, in order
    assert not any(Path(p).exists() for p in spills if p)


def test_row_groups_end_at_the_byte_budget(tmp_path: Path) -> None:
    store = ShardStore(str(tmp_path))
    store.prepare()
    writer = ShardWriter(store, "m", clip_schema(), rows_per_shard=10_000)
    blob = bytes(GROUP_BYTES // 4)  # four rows fill a group
    for i in range(10):
        writer.add({**row(i), "audio_features": blob})
    names = writer.close()
    groups = pq.ParquetFile(tmp_path / names[0]).metadata
    assert [groups.row_group(g).num_rows for g in range(groups.num_row_groups)] == [4, 4, 2]


def test_markers_are_compact_json(tmp_path: Path) -> None:
    store = ShardStore(str(tmp_path))
    store.prepare()
    marker = {"task_id": TASK, "media": [{"uri": "a", "clips": 1}], "parts": []}
    store.write_task_marker(TASK, marker)
    text = (tmp_path / "_tasks" / f"{TASK}.json").read_text()
    assert "\n" not in text and ": " not in text
    assert next(store.task_markers()) == marker
