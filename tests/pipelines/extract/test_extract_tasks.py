"""Task grouping on a real local Ray cluster with real ffmpeg: which tasks a changed listing or
setting redoes, and shards of the earlier per-media layout (one file per media and `_done/`),
which still read for training and are refused, with a clear message, as an extraction target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from avemo_core.schema import META_CONFIG, clip_schema, media_id_for
from avemo_core.synth import shards as shard_factory
from avemo_core.synth.shards import rows_by_clip
from jobs.cli import main as cli_main
from pipelines.extract.media import MediaTask, group_tasks
from pipelines.extract.run import ExtractConfig, ExtractError, run_extract
from pipelines.extract.shards import ShardStore, ShardWriter
from pipelines.train import datasets
from tests.pipelines import media_factory as mf


def tone(path: Path, seconds: float) -> Path:
    samples = (np.sin(np.arange(int(16000 * seconds)) / 7.0) * 6000).astype(np.int16)
    return mf.wav(path, samples)


def task_ids(corpus: Path, files_per_task: int) -> set[str]:
    files = [MediaTask(str(p), None) for p in sorted(corpus.glob("*.wav"))]
    return {t.task_id for t in group_tasks(files, files_per_task)}


def test_tasks_cut_the_listing_where_the_files_say() -> None:
    files = [MediaTask(f"/corpus/{i:04d}.wav", None) for i in range(400)]
    tasks = group_tasks(files, 8)
    assert [f for t in tasks for f in t.files] == files  # the listing, in order, once
    assert max(len(t.files) for t in tasks) <= 16
    assert 25 <= len(tasks) <= 100  # about 8 files each
    assert [t.task_id for t in group_tasks(files, 8)] == [t.task_id for t in tasks]
    before = {t.task_id for t in tasks}
    for gone in (0, 123, 399):  # a file removed changes the task around it, not those after
        after = {t.task_id for t in group_tasks(files[:gone] + files[gone + 1 :], 8)}
        assert 1 <= len(before - after) <= 2
    grown = {
        t.task_id
        for t in group_tasks(
            sorted([*files, MediaTask("/corpus/0200x.wav", None)], key=lambda f: f.uri), 8
        )
    }
    assert 1 <= len(before - grown) <= 2
    assert len({t.task_id for t in group_tasks(files, 1)}) == 400
    config = {"clip": {"window_s": 1.0}}
    assert tasks[0].fingerprint(config) != tasks[0].fingerprint({"clip": {"window_s": 2.0}})


def test_tasks_are_cut_by_size_too() -> None:
    """A file of at least the budget is a task alone; others fill a task up to the budget; where
    the cuts fall still depends on the files only."""
    mb = 1 << 20
    assert [len(t.files) for t in group_tasks([MediaTask("/a.mp4", None, 70 * mb),
                                               MediaTask("/b.mp4", None, 70 * mb)], 16, 64 * mb)
            ] == [1, 1]  # fmt: skip
    sizes = [(i * 7919) % 40 * mb for i in range(300)]  # 0-39 MB, mixed
    files = [MediaTask(f"/corpus/{i:04d}.mp4", None, size) for i, size in enumerate(sizes)]
    tasks = group_tasks(files, 16, 64 * mb)
    assert [f for t in tasks for f in t.files] == files
    for task in tasks:
        assert len(task.files) == 1 or sum(f.size_bytes for f in task.files) <= 64 * mb
    assert [t.task_id for t in group_tasks(files, 16, 64 * mb)] == [t.task_id for t in tasks]
    before = {t.task_id for t in tasks}
    for gone in (0, 150, 299):  # a file removed changes the tasks up to the next content cut
        after = {t.task_id for t in group_tasks(files[:gone] + files[gone + 1 :], 16, 64 * mb)}
        assert 1 <= len(before - after) <= 4
    small = [MediaTask(f.uri, None) for f in files]  # unknown sizes: the URI cuts alone
    assert [t.task_id for t in group_tasks(small, 16, 64 * mb)] == [
        t.task_id for t in group_tasks(small, 16)
    ]


def test_two_large_files_run_as_two_tasks(ray_cluster: None, tmp_path: Path) -> None:
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    corpus.mkdir()
    for name in ("a", "b"):
        tone(corpus / f"{name}.wav", 35.0)  # 1.1 MB each
    job = ExtractConfig(input_uri=str(corpus), output_uri=str(out), task_mb=1)
    first = run_extract(job)["summary"]
    assert (first["tasks"], first["tasks_run"], first["files_extracted"]) == (2, 2, 2)
    assert len(list((out / "_tasks").glob("*.json"))) == 2
    again = run_extract(job)["summary"]
    assert (again["tasks"], again["tasks_run"], again["files_skipped"]) == (2, 0, 2)
    # under a 16 MB budget only the URI cuts remain (1 task, or 2 where a.wav's hash is a cut:
    # 1 in 16 temporary folders)
    together = run_extract(job.replace(task_mb=16, output_uri=str(tmp_path / "one")))["summary"]
    assert together["tasks"] == len(task_ids(corpus, 16)) and together["clips"] == first["clips"]


def test_a_changed_listing_redoes_its_task_and_a_setting_redoes_all(
    ray_cluster: None, tmp_path: Path
) -> None:
    # 12 files, at most 4 per task: at least 3 tasks, and a file swapped in place (t05 for t05a)
    # touches the one or two around it, whatever the temporary folder's name makes the cuts (with
    # 8 files and the swap at the end, 1 in 25 folders put every task around the change)
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    corpus.mkdir()
    for i in range(12):
        tone(corpus / f"t{i:02d}.wav", 1.5)
    job = ExtractConfig(input_uri=str(corpus), output_uri=str(out), window_s=1.0, files_per_task=2)
    tasks = task_ids(corpus, 2)
    assert len(tasks) >= 3
    first = run_extract(job)["summary"]
    assert (first["tasks"], first["tasks_run"], first["clips"]) == (len(tasks), len(tasks), 24)

    (corpus / "t05.wav").unlink()
    tone(corpus / "t05a.wav", 1.5)
    changed = task_ids(corpus, 2)
    redone = changed - tasks
    assert len(redone) < len(changed)  # most tasks are untouched
    again = run_extract(job)["summary"]
    assert (again["tasks"], again["tasks_run"]) == (len(changed), len(redone))
    assert again["files_extracted"] < again["files"] == 12
    rows = rows_by_clip(out)  # files of the replaced tasks are gone: no duplicates, no t05
    assert len(rows) == 24 and again["clips"] == 24
    assert str(corpus / "t05.wav") not in {r["source_uri"] for r in rows.values()}
    assert {p.stem for p in (out / "_tasks").glob("*.json")} == changed

    refit = run_extract(job.replace(fps=2.0))["summary"]  # in the extractor config
    assert (refit["tasks_run"], refit["files_extracted"], refit["clips"]) == (len(changed), 12, 24)
    assert rows_by_clip(out).keys() == rows.keys()
    stored = json.loads(pq.read_schema(next(out.glob("*.parquet"))).metadata[META_CONFIG])
    assert stored["visual"]["fps"] == 2.0


def legacy_shards(root: Path) -> dict[str, int]:
    """Shards as the per-media layout wrote them: `<media_id>-<k>.parquet` and `_done/` markers,
    through the same writer with the media id as the file stem."""
    spec = shard_factory.ShardSpec(clips=40, seed=3)
    rows = shard_factory.make_rows(spec)
    store = ShardStore(str(root))
    store.prepare()
    (root / "_done").mkdir()
    schema = clip_schema(shard_factory.extractor_config(spec))
    for source in sorted({r["source_uri"] for r in rows}):
        media_id = media_id_for(source)
        writer = ShardWriter(store, media_id, schema, rows_per_shard=3)
        for row in (r for r in rows if r["source_uri"] == source):
            writer.add(row)
        parts = writer.close()
        store.write_json(f"_done/{media_id}.json", {"media_id": media_id, "parts": parts})
    store.write_success({"summary": {"clips": len(rows)}})
    return {s: sum(r["split"] == s for r in rows) for s in datasets.SPLITS}


def test_per_media_layout_still_reads(ray_cluster: None, tmp_path: Path) -> None:
    root = tmp_path / "legacy"
    counts = legacy_shards(root)
    assert len(list(root.glob("*.parquet"))) >= 14  # one or more files per media file
    info = datasets.inspect_shards(str(root))
    assert info.counts == counts
    train = datasets.training_datasets(info, "colearn")["train"]
    assert train.count() == counts["train"]


def test_per_media_layout_refused_as_extraction_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "legacy"
    legacy_shards(root)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    tone(corpus / "a.wav", 1.0)
    with pytest.raises(ExtractError, match="per-file layout"):
        run_extract(ExtractConfig(input_uri=str(corpus), output_uri=str(root)))
    assert cli_main(["extract", str(corpus), str(root)]) == 2
    assert "extract into a new folder" in capsys.readouterr().err
    assert datasets.inspect_shards(str(root)).counts  # left as it was: still readable
