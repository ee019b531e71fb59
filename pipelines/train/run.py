"""Distributed co-learning: Ray Train's TorchTrainer around the plain loop of avemo_core.training.

Each worker runs `avemo_core.training.fit` on its share of the train split
(`get_dataset_shard`, padded per batch), with the model wrapped by `ray.train.torch.prepare_model`
(DistributedDataParallel over gloo on CPU, NCCL on GPU; `find_unused_parameters` where the trained
conditions leave a branch idle). Rank 0 validates every condition the mode serves on the whole
valid split, tunes the per-emotion thresholds; from `fit`'s epoch callback it logs the epoch to
MLflow (once), prints one console line and reports a checkpoint:

    model.safetensors + avemo.json    the avemo checkpoint (weights, configs, thresholds, metrics)
    optimizer.safetensors             AdamW state tensors, keys "<param index>/<name>"
    train_state.json                  epoch, history, optimizer param groups

With `TrainConfig.cross_fit` (an ensemble; `avemo_core/crossfit.py`) the train dataset holds the
train and valid splits, each batch carries its rows' holdout folds (the driver's speaker -> fold
map, passed in the loop config), the validation is out-of-fold, and the checkpoints and the run
record keep the folds.

Ray keeps the best `keep_checkpoints` by `val_score` (`avemo_core.selection`; plus the latest).
The driver says which conditions it averages before training (console line, MLflow param
`selection.conditions` and tag `avemo.score_conditions`). A worker that dies is replaced and all
workers restart from the latest checkpoint (`max_failures`): `fit` continues from the next epoch
with the saved history and optimizer state and keeps the saved normalisation statistics. A driver
started again with the same run name and storage resumes the same way (Ray Train restores the run
from its storage).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from avemo_core import inference, training
from avemo_core.checkpoint import CONDITIONS_KEY, Checkpoint, load_checkpoint, save_checkpoint
from avemo_core.colearning import CoLearningConfig
from avemo_core.config import FrozenConfig, require
from avemo_core.crossfit import Folds, holdout_tensor
from avemo_core.data import Batch, batch_from_columns
from avemo_core.ensemble import Model, build_model
from avemo_core.labels import CONDITIONS, EMOTIONS
from avemo_core.metrics import ThresholdConfig
from avemo_core.model import ModelConfig
from avemo_core.selection import SCORE_KEY, TRAINED_CONDITIONS, Selection
from avemo_core.speakers import SpeakerTable, speakers_of
from pipelines import tracking
from pipelines.ray_session import wait_for_cpus
from pipelines.train import datasets

SCORE_CONDITIONS_TAG = "avemo.score_conditions"  # MLflow run tag: conditions val_score averages
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "train_state.json"
RUN_FILE = "avemo_run.json"  # in the run's storage folder: the MLflow run id and the configs
FREE_CPU_WAIT_S = 10.0  # how long the driver waits for a free CPU before reading the shards
DIE_AT_ENV = "AVEMO_TEST_DIE_AT"  # test-only: "epoch:step[:rank]" makes that worker exit once


@dataclasses.dataclass(frozen=True)
class RunSettings(FrozenConfig):
    data_uri: str = ""  # clip shards: a local directory or s3:// prefix
    run_name: str = ""  # Ray Train run name, MLflow run name; resume by reusing it
    storage_uri: str = ""  # where Ray Train keeps runs and checkpoints (absolute path or s3://)
    workers: int = 1  # Ray Train workers (data-parallel)
    use_gpu: bool = False  # one GPU per worker, NCCL, bf16 autocast, pinned batches
    max_failures: int = 2  # worker-group restarts from the latest checkpoint before giving up
    keep_checkpoints: int = 2  # best checkpoints kept by val_score (the latest is kept too)
    tracking_uri: str = ""  # resolved MLflow tracking URI
    experiment: str = "avemo"  # MLflow experiment name
    resume: bool = False  # continue the run in storage instead of refusing to reuse its name
    cache_data: bool = True  # cache the splits in Ray's object store when they fit the budget
    cache_budget_share: float = 0.3  # share of the cluster's object store the cache may fill

    def validate(self) -> None:
        require(bool(self.data_uri), "data_uri is required")
        require(bool(self.run_name) and "/" not in self.run_name, "run_name must be a plain name")
        require(bool(self.storage_uri), "storage_uri is required")
        require(self.workers >= 1, "workers must be >= 1")
        require(self.max_failures >= 0, "max_failures must be >= 0")
        require(self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1")
        require(0.0 < self.cache_budget_share <= 1.0, "cache_budget_share must be in (0, 1]")


@dataclasses.dataclass
class TrainOutcome:
    run_id: str  # MLflow run
    checkpoint_dir: str  # best checkpoint: in Ray storage, or a local copy when that is remote
    score: float  # its val_score
    metrics: dict[str, float]  # its validation metrics
    epochs: int  # epochs in the history of the latest checkpoint
    history: list[dict[str, float]]  # per-epoch train and validation numbers


class RunExistsError(ValueError):
    """The run name is taken in this storage (and --resume was not asked for), or vice versa."""


def _save_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> list[dict[str, Any]]:
    """State tensors to safetensors; returns the param groups (JSON-able) for train_state.json."""
    state = optimizer.state_dict()
    tensors = {
        f"{index}/{name}": value.detach().cpu().contiguous()
        for index, slots in state["state"].items()
        for name, value in slots.items()
        if isinstance(value, torch.Tensor)
    }
    save_file(tensors, str(directory / OPTIMIZER_FILE))
    return state["param_groups"]


def _load_optimizer(optimizer: torch.optim.Optimizer, directory: Path, groups: list) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(directory / OPTIMIZER_FILE)).items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def split_conditions(info: datasets.ShardInfo, split: str) -> dict[str, tuple[int, bool]]:
    """condition -> (labelled clips of `split` that can form it, whether some emotion has both
    positives and negatives among them: only then can a macro-F1 be scored there)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipelines.storage import arrow_filesystem, storage_options_from_env

    arrow_fs, _ = arrow_filesystem(info.root, storage_options_from_env())
    table = pq.read_table(
        list(info.files),
        columns=["has_audio", "has_visual", *EMOTIONS],
        filters=pc.field("split") == split,
        filesystem=arrow_fs,
    )
    intensity = np.stack(
        [table.column(e).to_numpy(zero_copy_only=False).astype(np.float64) for e in EMOTIONS],
        axis=1,
    )  # (N, E), NaN where unlabelled
    known = ~np.isnan(intensity).all(axis=1)  # (N,): some emotion labelled
    has_audio = table.column("has_audio").to_numpy(zero_copy_only=False)
    has_visual = table.column("has_visual").to_numpy(zero_copy_only=False)
    out: dict[str, tuple[int, bool]] = {}
    for condition in CONDITIONS:
        rows = known & inference.can_form(has_audio, has_visual, condition)  # (N,)
        present = intensity[rows] > 0.0  # (n, E); NaN (unlabelled) is neither
        absent = intensity[rows] == 0.0
        both = bool((present.any(axis=0) & absent.any(axis=0)).any())
        out[condition] = (int(rows.sum()), both)
    return out


def plan_conditions(info: datasets.ShardInfo, mode: str) -> dict[str, list[str]]:
    """`trained`: conditions `mode` trains that the train split can form; `scored`: those the
    validation split can form and score, which `val_score` averages. No scored condition: an
    error before training, since no epoch could be told from another."""
    train, valid = split_conditions(info, "train"), split_conditions(info, "valid")
    trains = TRAINED_CONDITIONS[mode]
    trained = [c for c in trains if train[c][0] > 0]
    scored = [c for c in trains if valid[c][1]]
    if not scored:
        raise datasets.DataError(
            f"the valid split cannot score any condition mode {mode!r} trains "
            f"({', '.join(trains)}): it needs labelled clips with those modalities and "
            "an emotion both present and absent among them"
        )
    return {"trained": trained, "scored": scored}


def _cell(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"


def epoch_line(
    epoch: int,
    epochs: int,
    stats: dict[str, float],
    valid_metrics: dict[str, float],
    selection: Selection,
    seconds: float,
    out_of_fold: bool = False,
) -> str:
    """The console line of one epoch: loss parts, validation F1/WA per condition, val_score
    (`out_of_fold`: a cross-fitted ensemble's, each valid clip scored by the member that held it
    out)."""
    parts = " ".join(f"{k} {v:.3f}" for k, v in stats.items() if k not in ("loss", "samples"))
    valid = " | ".join(
        f"{c} F1 {_cell(valid_metrics.get(f'{c}/f1'))} WA {_cell(valid_metrics.get(f'{c}/wa'))}"
        for c in CONDITIONS
        if f"{c}/samples" in valid_metrics
    )
    scored = ", ".join(selection.conditions) or "-"
    which = "valid (out-of-fold)" if out_of_fold else "valid"
    return (
        f"epoch {epoch + 1}/{epochs}  loss {_cell(stats.get('loss'))} ({parts})  {which} {valid}  "
        f"val_score {_cell(selection.score)} ({scored})  {seconds:.1f} s"
    )


class _ShardBatches:
    """Re-iterable Batches of a Ray dataset shard (one streaming pass per `iter`), maybe pinned;
    shuffled in a local buffer of a few batches when given a seed."""

    def __init__(
        self,
        shard: Any,
        config: training.TrainConfig,
        pin: bool,
        seed: int | None,
        speakers: SpeakerTable | None = None,
        folds: Folds | None = None,
    ) -> None:
        self.shard, self.config, self.pin, self.seed = shard, config, pin, seed
        self.speakers, self.folds = speakers, folds
        self.on_step: Any = None

    def __iter__(self) -> Iterator[Batch]:
        columns_iter = self.shard.iter_batches(
            batch_size=self.config.batch_size,
            batch_format="numpy",
            local_shuffle_buffer_size=None if self.seed is None else 4 * self.config.batch_size,
            local_shuffle_seed=self.seed,
        )
        for step, columns in enumerate(columns_iter):
            if self.on_step is not None:
                self.on_step(step)
            yield _to_batch(columns, self.config, self.pin, self.speakers, self.folds)


class _CachedBatches:
    """The validation split read once (compact feature blobs) and padded again on every pass:
    validation runs one pass per condition and epoch, and each Ray Data pass costs a job start."""

    def __init__(
        self,
        shard: Any,
        config: training.TrainConfig,
        pin: bool,
        speakers: SpeakerTable | None = None,
        folds: Folds | None = None,
    ) -> None:
        self.chunks = list(shard.iter_batches(batch_size=config.batch_size, batch_format="numpy"))
        self.config, self.pin, self.speakers, self.folds = config, pin, speakers, folds

    def __iter__(self) -> Iterator[Batch]:
        for columns in self.chunks:
            yield _to_batch(columns, self.config, self.pin, self.speakers, self.folds)


def _to_batch(
    columns: dict[str, np.ndarray],
    config: training.TrainConfig,
    pin: bool,
    speakers: SpeakerTable | None = None,
    folds: Folds | None = None,
) -> Batch:
    batch = batch_from_columns(
        datasets.fill_missing_modality(columns), config.max_audio_frames, config.max_visual_frames
    )
    if speakers is not None:
        batch = speakers.attach(batch, speakers_of(columns))
    if folds is not None:
        batch.holdout = holdout_tensor(folds, columns)
    return batch.pin_memory() if pin else batch


def _die_hook(spec: str | None, marker: str | None, epoch: int, rank: int, world: int) -> Any:
    """Test-only: a step callback that kills this worker once at "epoch:step[:rank]".

    It first waits until Ray's checkpoint snapshot (beside the marker, in the run's storage)
    lists a checkpoint: a report the controller has not collected yet dies with its worker, and
    the test is about resuming from a checkpoint Ray knows.
    """
    if not spec or not marker:
        return None
    parts = [int(p) for p in spec.split(":")]
    target_rank = parts[2] if len(parts) > 2 else world - 1
    if parts[0] != epoch or rank != target_rank:
        return None
    snapshot = Path(marker).with_name("checkpoint_manager_snapshot.json")

    def on_step(step: int) -> None:
        if step != parts[1] or os.path.exists(marker):
            return
        deadline = time.monotonic() + 120.0
        while epoch > 0 and time.monotonic() < deadline:
            if snapshot.is_file() and "checkpoint_2" in snapshot.read_text():
                break
            time.sleep(0.2)
        Path(marker).write_text(f"worker rank {rank} exited at epoch {epoch} step {step}\n")
        os._exit(1)

    return on_step


def _restore(model: Model, optimizer: torch.optim.Optimizer) -> tuple[int, list[dict[str, float]]]:
    """Load the latest reported checkpoint if Ray has one: (next epoch, history so far)."""
    import ray.train

    restored = ray.train.get_checkpoint()
    if restored is None:
        return 0, []
    with restored.as_directory() as directory:
        saved = load_checkpoint(directory)
        model.load_state_dict(saved.model.state_dict())
        state = json.loads((Path(directory) / STATE_FILE).read_text())
        _load_optimizer(optimizer, Path(directory), state["param_groups"])
    return state["epoch"] + 1, state["history"]


def find_unused_parameters(trained_conditions: list[str]) -> bool:
    """Whether DDP must look for parameters a step leaves without gradient: every branch works
    only when the fused `av` view trains; `a` or `v` alone leaves the other encoder (and the
    cross-attention) idle."""
    return "av" not in trained_conditions


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: restore, wrap for data parallelism, then `fit` with a callback that
    (on rank 0) prints, logs and checkpoints each epoch and reports it to Ray."""
    import ray.data
    import ray.train
    import ray.train.torch

    ray.data.DataContext.get_current().enable_progress_bars = False
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    model_config = ModelConfig.from_dict(config["model"])
    train_config = training.TrainConfig.from_dict(config["train"])
    colearning = CoLearningConfig.from_dict(config["colearning"])
    threshold_config = ThresholdConfig.from_dict(config["thresholds"])
    device = ray.train.torch.get_device() if config["use_gpu"] else torch.device("cpu")
    training.seed_everything(train_config.seed)
    model = build_model(model_config).to(device)
    optimizer = training.make_optimizer(model, train_config)
    start, history = _restore(model, optimizer)
    wrapped = ray.train.torch.prepare_model(
        model,
        move_to_device=device,
        parallel_strategy_kwargs={
            "find_unused_parameters": find_unused_parameters(config["trained_conditions"])
        },
    )
    train_shard = ray.train.get_dataset_shard("train")
    pin = device.type == "cuda"
    speakers = SpeakerTable.from_dict(config["speakers"]) if config.get("speakers") else None
    folds = Folds.from_dict(config["cross_fit"]) if config.get("cross_fit") else None

    def train_batches(epoch: int) -> _ShardBatches:
        seed = train_config.seed + epoch
        batches = _ShardBatches(train_shard, train_config, pin, seed, speakers, folds)
        batches.on_step = _die_hook(
            config.get("die_at"), config.get("die_marker"), epoch, rank, world
        )
        return batches

    valid: Any = ()  # only rank 0 validates
    if rank == 0:  # held in memory when the splits fit the object store, else read every pass
        valid_shard = ray.train.get_dataset_shard("valid")
        valid = (
            _CachedBatches(valid_shard, train_config, pin, speakers, folds)
            if config["cached"]
            else _ShardBatches(valid_shard, train_config, pin, None, speakers, folds)
        )
    logger = (
        tracking.EpochLogger(config["tracking_uri"], config["mlflow_run_id"]) if rank == 0 else None
    )

    def on_epoch_end(end: training.EpochEnd) -> None:
        if logger is None:
            ray.train.report({}, checkpoint=None)
            return
        line = epoch_line(
            end.epoch,
            train_config.epochs,
            end.train_stats,
            end.valid_metrics,
            end.selection,
            end.seconds,
            out_of_fold=train_config.cross_fit,
        )
        print(line, flush=True)
        record = end.history[-1]
        logger.log_epoch(end.epoch, {k: v for k, v in record.items() if k != "epoch"})
        with tempfile.TemporaryDirectory(prefix="avemo-ckpt-") as tmp:
            directory = Path(tmp) / "checkpoint"
            _write_checkpoint(directory, model, optimizer, config, end)
            report = {SCORE_KEY: end.selection.score, "epoch": end.epoch}
            ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(directory))

    training.fit(
        wrapped,
        train_batches,
        valid,
        colearning,
        train_config,
        device,
        on_epoch_end,
        start_epoch=start,
        history=history,
        optimizer=optimizer,
        threshold_config=threshold_config,
    )


def _write_checkpoint(
    directory: Path,
    model: Model,
    optimizer: torch.optim.Optimizer,
    config: dict[str, Any],
    end: training.EpochEnd,
) -> None:
    record = end.history[-1]
    metrics = {k: v for k, v in record.items() if k.startswith("valid/") or k == SCORE_KEY}
    metadata = {
        "epoch": end.epoch,
        "metrics": metrics,
        CONDITIONS_KEY: {
            "trained": config["trained_conditions"],
            "validated": [c for c in CONDITIONS if c in end.thresholds],
            "scored": list(end.selection.conditions),
        },
        "mode": config["colearning"]["mode"],
        "colearning": config["colearning"],
        "train": config["train"],
        "threshold_config": config["thresholds"],
        "data_fingerprint": config["data_fingerprint"],
        "mlflow_run_id": config["mlflow_run_id"],
        "cross_fit": config["cross_fit"],  # members and the valid speakers each held out, or None
    }
    cpu_model = model if next(model.parameters()).device.type == "cpu" else _cpu_copy(model)
    save_checkpoint(
        directory,
        Checkpoint(
            model=cpu_model,
            model_config=cpu_model.config,
            thresholds={c: [float(x) for x in t] for c, t in end.thresholds.items()},
            labels=list(EMOTIONS),
            feature_config=config["feature_config"],
            metadata=metadata,
        ),
    )
    groups = _save_optimizer(optimizer, directory)
    state = {"epoch": end.epoch, "history": end.history, "param_groups": groups}
    (directory / STATE_FILE).write_text(json.dumps(state, indent=1, default=_json_default) + "\n")


def _cpu_copy(model: Model) -> Model:
    copy = build_model(model.config)
    copy.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    return copy


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _run_file(settings: RunSettings) -> tuple[Any, str]:
    from pipelines.storage import filesystem, storage_options_from_env

    fs, root = filesystem(settings.storage_uri, storage_options_from_env())
    return fs, f"{root.rstrip('/')}/{settings.run_name}/{RUN_FILE}"


def load_run_record(settings: RunSettings) -> dict[str, Any] | None:
    """The run's record in storage, checked against --resume: a name is reused only on purpose."""
    fs, path = _run_file(settings)
    exists = fs.exists(path)
    if exists and not settings.resume:
        raise RunExistsError(
            f"run {settings.run_name!r} already exists in {settings.storage_uri}; "
            "pass --resume to continue it or choose another --run-name"
        )
    if not exists and settings.resume:
        raise RunExistsError(f"no run {settings.run_name!r} in {settings.storage_uri} to resume")
    return json.loads(fs.cat_file(path)) if exists else None


def _save_run_record(settings: RunSettings, record: dict[str, Any]) -> None:
    fs, path = _run_file(settings)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def _materialize(data: Any) -> Any:
    """`data.materialize()` once Ray's resource view shows a free CPU. The only Ray Data runs the
    driver executes itself: Ray Data warns that a run "will hang" when the view shows no free
    CPU as it starts, which a loaded machine's lagging view did on CI right after Ray's start,
    and between the train split's run and the valid split's (the CPU the first held not yet
    shown free again)."""
    import ray

    wait_for_cpus(ray.available_resources, FREE_CPU_WAIT_S)
    return data.materialize()


def _datasets(
    info: datasets.ShardInfo,
    mode: str,
    settings: RunSettings,
    seed: int,
    cross_fit: bool = False,
) -> tuple[dict[str, Any], datasets.CachePlan]:
    """The train and valid datasets and the cache decision.

    Cached, each epoch reads the object store instead of starting Parquet reads again (on small
    data that start-up costs more than the epoch). Streamed, each epoch reads the train files in
    a new order drawn from `seed`, so no split has to fit in memory anywhere.
    """
    import ray

    store_bytes = float(ray.cluster_resources().get("object_store_memory", 0.0))
    plan = datasets.plan_cache(
        info, mode, store_bytes, settings.cache_budget_share, settings.cache_data, cross_fit
    )
    if plan.cache:
        splits = datasets.training_datasets(info, mode, cross_fit=cross_fit)
        return {name: _materialize(data) for name, data in splits.items()}, plan
    return datasets.training_datasets(info, mode, shuffle_seed=seed, cross_fit=cross_fit), plan


def latest_run_name(storage_uri: str) -> str | None:
    """The most recently started avemo run in `storage_uri` (for --resume without --run-name)."""
    from pipelines.storage import filesystem, storage_options_from_env

    fs, root = filesystem(storage_uri, storage_options_from_env())
    found = []
    for path in fs.glob(f"{root.rstrip('/')}/*/{RUN_FILE}"):
        found.append((json.loads(fs.cat_file(path)).get("started_at", 0.0), path.split("/")[-2]))
    return max(found)[1] if found else None


def _speaker_table(
    info: datasets.ShardInfo, model_config: ModelConfig, log: Callable[[str], None]
) -> SpeakerTable | None:
    """The train and valid speakers' statistics, for a model that standardises per speaker;
    None for any other model, or data without speakers (it says so)."""
    if not model_config.uses_speakers:
        return None
    table = datasets.speaker_table(info, ("train", "valid"))
    if table is None:
        log(
            "train: the shards name no speakers (a manifest with a speaker column does): the "
            "model standardises by the training split's statistics instead"
        )
        return None
    log(f"train: standardised per speaker ({len(table.speakers)} speakers)")
    return table


def _cross_fit_folds(
    info: datasets.ShardInfo, members: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """The folds of a cross-fitted run (ConfigError for fewer than two members), said once:
    which valid speakers each member holds out."""
    folds, clips = datasets.cross_fit_folds(info, members)
    log(
        f"train: cross-fitted over train + valid ({info.counts['train']} + "
        f"{info.counts['valid']} clips); valid scores are out-of-fold"
    )
    for k, speakers in enumerate(folds.held_out()):
        named = ", ".join(speakers) or "none"
        log(f"train: member {k} holds out {clips[k]} valid clips (speakers: {named})")
    return folds.to_dict()


def run_training(
    settings: RunSettings,
    model_config: ModelConfig,
    train_config: training.TrainConfig,
    colearning: CoLearningConfig,
    thresholds: ThresholdConfig | None = None,
    log: Callable[[str], None] = print,
) -> TrainOutcome:
    """Train (or resume) one run on the connected Ray cluster and track it in MLflow.

    `thresholds` says how rank 0 tunes the decision thresholds on validation each epoch;
    `train_config.cross_fit` trains an ensemble cross-fitted over the valid split's speakers.
    """
    thresholds = thresholds or ThresholdConfig()
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    info = datasets.inspect_shards(settings.data_uri)
    record = load_run_record(settings)
    if record is not None:
        model_config = ModelConfig.from_dict(record["model"])
        colearning = CoLearningConfig.from_dict(record["colearning"])
        train_config = training.TrainConfig.from_dict(record["train"])
        if record["data_fingerprint"] != info.fingerprint:
            raise RunExistsError(f"run {settings.run_name!r} was trained on other data")
    train_config = train_config.replace(mixed_precision=settings.use_gpu)
    tracking.check_reachable(settings.tracking_uri)
    plan = plan_conditions(info, colearning.mode)
    log(
        f"selection: val_score = mean validation macro-F1 over {', '.join(plan['scored'])} "
        f"(mode {colearning.mode} trains {', '.join(TRAINED_CONDITIONS[colearning.mode])}; "
        "the others cannot be formed or scored on the valid split)"
    )
    cross_fit = (
        _cross_fit_folds(info, model_config.members, log) if train_config.cross_fit else None
    )
    splits, cache_plan = _datasets(
        info, colearning.mode, settings, train_config.seed, train_config.cross_fit
    )
    log(cache_plan.line())
    speakers = _speaker_table(info, model_config, log)
    params = {
        **tracking.flat_params("model", model_config.to_dict()),
        **tracking.flat_params("train", train_config.to_dict()),
        **tracking.flat_params("colearning", colearning.to_dict()),
        **tracking.flat_params("thresholds", thresholds.to_dict()),
        **tracking.flat_params("features", info.feature_config),
        "data.uri": settings.data_uri,
        "data.fingerprint": info.fingerprint,
        **{f"data.{split}_clips": count for split, count in info.counts.items()},
        "ray.workers": settings.workers,
        "ray.use_gpu": settings.use_gpu,
        "ray.run_name": settings.run_name,
        "ray.storage": settings.storage_uri,
        "selection.conditions": ",".join(plan["scored"]),
        "selection.trained_conditions": ",".join(plan["trained"]),
        "data.cached": cache_plan.cache,
        "data.estimated_bytes": cache_plan.needed_bytes,
        "data.speakers": len(speakers.speakers) if speakers is not None else 0,
    }
    run_id = tracking.start_or_resume_run(
        settings.tracking_uri,
        settings.experiment,
        settings.run_name,
        record["mlflow_run_id"] if record else None,
        params,
    )
    tracking.client(settings.tracking_uri).set_tag(
        run_id, SCORE_CONDITIONS_TAG, ",".join(plan["scored"])
    )
    if record is None:
        record = {
            "mlflow_run_id": run_id,
            "tracking_uri": settings.tracking_uri,
            "model": model_config.to_dict(),
            "train": train_config.to_dict(),
            "colearning": colearning.to_dict(),
            "data_fingerprint": info.fingerprint,
            "cross_fit": cross_fit,
            "started_at": time.time(),
        }
        _save_run_record(settings, record)
    die_at = os.environ.get(DIE_AT_ENV)
    fs, run_file = _run_file(settings)
    loop_config = {
        "model": model_config.to_dict(),
        "train": train_config.to_dict(),
        "colearning": colearning.to_dict(),
        "thresholds": thresholds.to_dict(),
        "use_gpu": settings.use_gpu,
        "cached": cache_plan.cache,
        "feature_config": info.feature_config,
        "data_fingerprint": info.fingerprint,
        "trained_conditions": plan["trained"],
        "speakers": speakers.to_dict() if speakers is not None else None,
        "cross_fit": cross_fit,
        "tracking_uri": settings.tracking_uri,
        "mlflow_run_id": run_id,
        "die_at": die_at,
        "die_marker": f"{run_file.rsplit('/', 1)[0]}/.test-died-once" if die_at else None,
    }
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=settings.workers, use_gpu=settings.use_gpu),
        torch_config=TorchConfig(backend="nccl" if settings.use_gpu else "gloo"),
        run_config=RunConfig(
            name=settings.run_name,
            storage_path=settings.storage_uri,
            failure_config=FailureConfig(max_failures=settings.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=settings.keep_checkpoints,
                checkpoint_score_attribute=SCORE_KEY,
                checkpoint_score_order="max",
            ),
        ),
        datasets=splits,
        dataset_config=DataConfig(datasets_to_split=["train"]),
    )
    result = trainer.fit()
    best = result.get_best_checkpoint(metric=SCORE_KEY, mode="max")
    if best is None or result.checkpoint is None:
        raise RuntimeError(f"run {settings.run_name!r} reported no checkpoint")
    with result.checkpoint.as_directory() as latest:
        history = json.loads((Path(latest) / STATE_FILE).read_text())["history"]
    with best.as_directory() as best_dir:
        best_meta = json.loads((Path(best_dir) / "avemo.json").read_text())["metadata"]
        metrics = best_meta["metrics"]
        tracking.log_final(settings.tracking_uri, run_id, history, metrics, best_dir)
    local = best.filesystem.type_name == "local"
    return TrainOutcome(
        run_id=run_id,
        checkpoint_dir=best.path if local else best.to_directory(),
        score=float(metrics[SCORE_KEY]),
        metrics=metrics,
        epochs=len(history),
        history=history,
    )
