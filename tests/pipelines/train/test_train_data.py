"""The training data decision on a real Ray cluster: the splits are cached in the object store
only when they fit its budget, else they stream from Parquet in a new file order every epoch; a
real training run streams end to end when the budget is tiny."""

from __future__ import annotations

from pathlib import Path

import pytest

from avemo_core.colearning import CoLearningConfig
from avemo_core.model import ModelConfig
from avemo_core.synth.shards import ShardSpec, write_clip_shards
from avemo_core.training import TrainConfig
from pipelines import tracking
from pipelines.train import datasets
from pipelines.train.run import RunSettings, _datasets, run_training


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data-shards")
    write_clip_shards(
        root, ShardSpec(clips=96, audio_frames=(8, 16), visual_frames=(1, 3), files=8)
    )
    return root


def settings(shards: Path, tmp_path: Path, **changes: object) -> RunSettings:
    base = RunSettings(data_uri=str(shards), run_name="data", storage_uri=str(tmp_path))
    return base.replace(**changes)


def test_estimate_follows_the_columns_a_mode_reads(shards: Path) -> None:
    info = datasets.inspect_shards(str(shards))
    both = datasets.plan_cache(info, "colearn", 1e12, 0.5, True)
    audio = datasets.plan_cache(info, "audio", 1e12, 0.5, True)
    assert 0 < audio.needed_bytes < both.needed_bytes  # the visual blobs stay on disk
    assert both.needed_bytes < sum(info.column_bytes.values())  # the test split is left out
    assert both.cache and both.budget_bytes == int(0.5e12)
    assert "cached in the object store" in both.line() and "GiB" in both.line()
    off = datasets.plan_cache(info, "colearn", 1e12, 0.5, False)
    assert not off.cache and "caching turned off" in off.line()


def test_cached_when_it_fits_streamed_when_not(
    ray_cluster: None, shards: Path, tmp_path: Path
) -> None:
    import ray.data
    from ray.data.dataset import MaterializedDataset

    info = datasets.inspect_shards(str(shards))
    cached, plan = _datasets(info, "colearn", settings(shards, tmp_path), seed=0)
    assert plan.cache and plan.needed_bytes <= plan.budget_bytes
    assert all(isinstance(d, MaterializedDataset) for d in cached.values())
    # the footers' estimate is of the order of what the object store really holds
    held = cached["train"].size_bytes() + cached["valid"].size_bytes()
    assert 0.5 < plan.needed_bytes / held < 2.0

    streamed, plan = _datasets(
        info, "colearn", settings(shards, tmp_path, cache_budget_share=1e-9), seed=0
    )
    assert not plan.cache and "streamed from Parquet" in plan.line()
    assert not any(isinstance(d, MaterializedDataset) for d in streamed.values())
    context = ray.data.DataContext.get_current()
    keep = context.execution_options.preserve_order
    context.execution_options.preserve_order = True  # any change of order is the shuffle's
    try:
        passes = [[int(r["audio_frames"]) for r in streamed["train"].iter_rows()] for _ in range(3)]
        ordered = [int(r["audio_frames"]) for r in cached["train"].iter_rows()]
    finally:
        context.execution_options.preserve_order = keep
    assert len(passes[0]) == info.counts["train"]
    assert all(sorted(p) == sorted(ordered) for p in passes)
    assert len({tuple(p) for p in passes}) > 1  # each epoch reads the files in a new order


def test_training_streams_when_the_budget_is_tiny(
    ray_cluster: None, mlflow_uri: str, shards: Path, tmp_path: Path
) -> None:
    lines: list[str] = []
    outcome = run_training(
        settings(
            shards,
            tmp_path,
            run_name="streams",
            cache_budget_share=1e-9,
            tracking_uri=mlflow_uri,
            experiment="test-train-data",
        ),
        ModelConfig.named("tiny"),
        TrainConfig(epochs=1, batch_size=8, seed=1),
        CoLearningConfig(),
        log=lines.append,
    )
    assert any("streamed from Parquet" in line for line in lines)
    assert outcome.epochs == 1 and len(outcome.history) == 1
    assert "valid/av/f1" in outcome.metrics  # validation read the valid split from Parquet
    params = tracking.client(mlflow_uri).get_run(outcome.run_id).data.params
    assert params["data.cached"] == "False"


def test_speakers_come_from_the_shards_and_version_2_shards_have_none(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    named = tmp_path / "named"
    write_clip_shards(named, ShardSpec(clips=30, speakers=3, files=2))
    info = datasets.inspect_shards(str(named))
    table = datasets.speaker_table(info, ("train", "valid"))
    assert table is not None and table.speakers == ("spk00", "spk01", "spk02")
    local = datasets.LocalBatches(info, "test", 8, speaker_statistics=True)
    assert local.speakers is not None
    batch = next(iter(local))
    assert batch.functionals_centre is not None and batch.functionals_centre.shape[0] == len(batch)
    # The same rows as schema version 2 wrote them: no speaker column, every speaker unknown.
    older = tmp_path / "older"
    older.mkdir()
    for path in sorted(named.glob("*.parquet")):
        pq.write_table(pq.read_table(path).drop_columns(["speaker"]), older / path.name)
    info = datasets.inspect_shards(str(older))
    assert datasets.speaker_table(info, ("train", "valid")) is None
    local = datasets.LocalBatches(info, "test", 8, speaker_statistics=True)
    assert local.speakers is None and next(iter(local)).functionals_centre is None
