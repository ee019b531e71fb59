"""The pieces under the Ray Train wrapper: `fit` through DDP across two real gloo processes,
optimizer state round-trip without pickle, shard discovery, fingerprint, split datasets and the
cross-fit folds of the valid speakers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from avemo_core import training
from avemo_core.colearning import CoLearningConfig
from avemo_core.config import ConfigError
from avemo_core.crossfit import Folds
from avemo_core.ensemble import build_model
from avemo_core.labels import EMOTIONS
from avemo_core.model import ModelConfig
from avemo_core.schema import SPEAKER_COLUMN
from avemo_core.selection import TRAINED_CONDITIONS, Selection
from avemo_core.synth.shards import ShardSpec, write_clip_shards
from pipelines.train import datasets
from pipelines.train.run import (
    _load_optimizer,
    _save_optimizer,
    epoch_line,
    find_unused_parameters,
    plan_conditions,
)
from tests.avemo_core.model_batches import learnable_batch
from tests.services import free_port


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(8, 4, generator=generator), torch.randn(8, 1, generator=generator)


def _fit_worker(rank: int, port: int, mode: str, out: str, functionals: bool, members: int) -> None:
    """One of two gloo processes: `fit` on this rank's own batches through DDP, as a Ray Train
    worker does after `prepare_model`."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    training.seed_everything(rank)  # different starting weights: DDP must broadcast rank 0's
    config = ModelConfig.named("tiny", utterance_functionals=functionals, members=members)
    model = build_model(config)
    trained = list(TRAINED_CONDITIONS[mode])
    wrapped = DistributedDataParallel(model, find_unused_parameters=find_unused_parameters(trained))
    batches = [learnable_batch(10 * rank + i, size=4) for i in range(2)]  # this rank's share
    training.fit(
        wrapped,
        batches,
        [],
        CoLearningConfig(mode=mode),
        training.TrainConfig(epochs=1),
        torch.device("cpu"),
    )
    torch.save(model.state_dict(), f"{out}/{mode}{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.parametrize(
    ("mode", "functionals", "members"),
    [("colearn", False, 1), ("audio", False, 1), ("audio", True, 1), ("audio", True, 2)],
)
def test_fit_through_ddp_keeps_the_workers_identical(
    mode: str, functionals: bool, members: int, tmp_path: Path
) -> None:
    """Gradients are averaged over ranks with different data (colearn uses every branch; audio
    leaves the visual one idle, which DDP accepts only when told to look for unused ones). Each
    rank fits its normalisation (and functionals statistics) on its own share; rank 0's win. An
    ensemble's members train through the one wrapper alike."""
    args = (free_port(), mode, str(tmp_path), functionals, members)
    mp.spawn(_fit_worker, args=args, nprocs=2, join=True)
    states = [torch.load(tmp_path / f"{mode}{r}.pt", weights_only=True) for r in (0, 1)]
    training.seed_everything(0)
    config = ModelConfig.named("tiny", utterance_functionals=functionals, members=members)
    start = build_model(config).state_dict()
    for name, tensor in states[0].items():
        torch.testing.assert_close(states[1][name], tensor, msg=name)
    changed = [n for n in start if "audio_encoder" in n and not torch.equal(start[n], states[0][n])]
    assert changed  # it trained
    trained_members = {n.split(".")[1] for n in changed if n.startswith("members.")}
    assert len(trained_members) == (members if members > 1 else 0)  # every member trained


def test_unused_parameters_are_looked_for_only_without_the_fused_view() -> None:
    assert not find_unused_parameters(["av", "a", "v"]) and not find_unused_parameters(["av"])
    assert find_unused_parameters(["a"]) and find_unused_parameters(["v"])


def test_optimizer_state_round_trips_through_safetensors(tmp_path: Path) -> None:
    model = _net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    x, y = _data()
    for _ in range(2):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    groups = _save_optimizer(optimizer, tmp_path)
    restored = torch.optim.AdamW(model.parameters(), lr=0.5)
    _load_optimizer(restored, tmp_path, json.loads(json.dumps(groups)))
    assert restored.param_groups[0]["lr"] == 0.1
    before, after = optimizer.state_dict()["state"], restored.state_dict()["state"]
    assert before.keys() == after.keys()
    for index in before:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(before[index][name], after[index][name])


def test_plan_conditions_on_single_modality_data(tmp_path: Path) -> None:
    write_clip_shards(
        tmp_path / "audio", ShardSpec(clips=60, audio_only_share=1.0, visual_only_share=0.0)
    )
    info = datasets.inspect_shards(str(tmp_path / "audio"))
    assert plan_conditions(info, "colearn") == {"trained": ["a"], "scored": ["a"]}
    assert plan_conditions(info, "audio") == {"trained": ["a"], "scored": ["a"]}
    with pytest.raises(datasets.DataError, match="cannot score any condition mode 'visual'"):
        plan_conditions(info, "visual")
    write_clip_shards(tmp_path / "both", ShardSpec(clips=60))
    both = datasets.inspect_shards(str(tmp_path / "both"))
    assert plan_conditions(both, "colearn") == {
        "trained": ["av", "a", "v"],
        "scored": ["av", "a", "v"],
    }
    assert plan_conditions(both, "av") == {"trained": ["av"], "scored": ["av"]}


def test_epoch_line_names_loss_parts_conditions_and_seconds() -> None:
    stats = {"bce_av": 0.5, "bce_a": 0.25, "loss": 0.75, "samples": 32.0}
    valid = {"a/f1": 0.4, "a/wa": 0.625, "a/samples": 12.0, "v/f1": float("nan"), "v/samples": 3.0}
    line = epoch_line(2, 10, stats, valid, Selection(0.4, ("a",)), 3.25)
    assert line == (
        "epoch 3/10  loss 0.750 (bce_av 0.500 bce_a 0.250)  "
        "valid a F1 0.400 WA 0.625 | v F1 - WA -  val_score 0.400 (a)  3.2 s"
    )
    cross_fitted = epoch_line(2, 10, stats, valid, Selection(0.4, ("a",)), 3.25, out_of_fold=True)
    assert "(bce_av 0.500 bce_a 0.250)  valid (out-of-fold) a F1 0.400 WA 0.625 |" in cross_fitted


def test_single_modal_columns_mark_the_other_modality_absent() -> None:
    columns = {"has_audio": np.array([True, False]), "has_visual": np.array([True, True])}
    filled = datasets.fill_missing_modality(
        {**columns, "audio_features": np.array([b"x", b""], object)}
    )
    assert not filled["has_visual"].any() and list(filled["visual_features"]) == [b"", b""]
    assert list(filled["has_audio"]) == [True, False]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("parts-shards")
    write_clip_shards(root, ShardSpec(clips=30, audio_frames=(4, 8), visual_frames=(1, 2)))
    (root / "_errors").mkdir()
    shutil.copy(root / "part-00000.parquet", root / "_errors" / "not-a-shard.parquet")
    return root


def test_inspect_skips_side_files_and_fingerprints_the_split_assignment(
    shards: Path, tmp_path: Path
) -> None:
    info = datasets.inspect_shards(str(shards))
    assert [Path(f).name for f in info.files] == ["part-00000.parquet", "part-00001.parquet"]
    assert info.counts == {"train": 18, "valid": 6, "test": 6}
    assert info.feature_config["source"] == "avemo_core.synth.shards"
    assert datasets.inspect_shards(str(shards)).fingerprint == info.fingerprint
    other = tmp_path / "other"
    write_clip_shards(other, ShardSpec(clips=30, audio_frames=(4, 8), visual_frames=(1, 2), seed=1))
    assert datasets.inspect_shards(str(other)).fingerprint != info.fingerprint
    with pytest.raises(datasets.DataError, match="no clip shards"):
        datasets.inspect_shards(str(tmp_path / "empty"))


def test_split_dataset_reads_one_split_and_only_the_mode_columns(
    ray_cluster: None, shards: Path
) -> None:
    info = datasets.inspect_shards(str(shards))
    train = datasets.training_datasets(info, "audio")["train"]
    assert set(train.columns()) == {
        *datasets.SHAPE_COLUMNS, "audio_features", *EMOTIONS, SPEAKER_COLUMN
    }  # fmt: skip
    assert train.count() == info.counts["train"]
    valid = datasets.split_dataset(info, "valid", datasets.batch_columns())
    assert "visual_features" in valid.columns() and valid.count() == info.counts["valid"]
    local = datasets.LocalBatches(info, "test", 4)
    assert local.rows == 6 and sum(len(batch) for batch in local) == 6


def test_many_small_shard_files_stream_every_row_and_leave_ray_data_settings(
    ray_cluster: None, tmp_path: Path
) -> None:
    import ray.data

    write_clip_shards(tmp_path, ShardSpec(clips=120, files=40))  # 3 rows per file
    info = datasets.inspect_shards(str(tmp_path))
    assert len(info.files) == 40
    context = ray.data.DataContext.get_current()
    before = context.use_datasource_v2
    train = datasets.training_datasets(info, "colearn", shuffle_seed=3)["train"]
    assert context.use_datasource_v2 == before  # the reader choice is this read's alone
    first = next(iter(train.iter_batches(batch_size=4, batch_format="numpy")))
    assert len(first["audio_frames"]) == 4
    assert train.count() == info.counts["train"]


def test_cross_fit_folds_split_the_valid_speakers_and_need_valid_clips(tmp_path: Path) -> None:
    write_clip_shards(tmp_path / "named", ShardSpec(clips=40, speakers=5, audio_frames=(4, 8)))
    info = datasets.inspect_shards(str(tmp_path / "named"))
    folds, clips = datasets.cross_fit_folds(info, 2)
    valid = datasets.LocalBatches(info, "valid", 64)
    named = sorted({s for chunk in valid.chunks for s in chunk[SPEAKER_COLUMN]})
    assert folds == Folds.of(named, 2) and len(named) >= 3
    assert clips.sum() == info.counts["valid"] and (clips > 0).all()
    with pytest.raises(ConfigError, match="members must be >= 2"):
        datasets.cross_fit_folds(info, 1)
    no_valid = ShardSpec(clips=20, split_shares=(0.8, 0.0, 0.2), audio_frames=(4, 8))
    write_clip_shards(tmp_path / "no-valid", no_valid)
    with pytest.raises(datasets.DataError, match="cross-fitting needs valid clips"):
        datasets.cross_fit_folds(datasets.inspect_shards(str(tmp_path / "no-valid")), 2)


def test_cross_fit_reads_the_valid_rows_for_training_with_their_fold_columns(
    ray_cluster: None, shards: Path
) -> None:
    info = datasets.inspect_shards(str(shards))
    splits = datasets.training_datasets(info, "audio", cross_fit=True)
    assert splits["train"].count() == info.counts["train"] + info.counts["valid"]
    assert {"split", "clip_id"} <= set(splits["train"].columns())
    assert {"split", "clip_id"} <= set(splits["valid"].columns())
    assert splits["valid"].count() == info.counts["valid"]
    plain = datasets.plan_cache(info, "audio", 1e12, 0.5, True)
    crossed = datasets.plan_cache(info, "audio", 1e12, 0.5, True, cross_fit=True)
    assert crossed.needed_bytes > plain.needed_bytes  # the valid rows are held twice
