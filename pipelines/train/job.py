"""`avemo train` as one call: check the services and the run name, join or start Ray, train (or
resume), and register the best checkpoint behind the champion gate when asked.

Every check that can fail on the user's input runs before Ray starts, so a wrong URI, a missing
corpus or a reused run name costs no cluster start-up.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from avemo_core.checkpoint import load_checkpoint
from avemo_core.colearning import CoLearningConfig
from avemo_core.crossfit import require_ensemble
from avemo_core.model import ModelConfig
from avemo_core.schema import FEATURE_COLUMNS
from avemo_core.selection import Selection
from avemo_core.training import TrainConfig
from pipelines import tracking
from pipelines.ray_session import ensure_ray
from pipelines.train import datasets, registry
from pipelines.train.evaluation import validation_score
from pipelines.train.run import (
    RunExistsError,
    RunSettings,
    TrainOutcome,
    latest_run_name,
    load_run_record,
    run_training,
)


class TrainJobError(RuntimeError):
    """A problem with the user's input or services (one line, no traceback)."""


@dataclasses.dataclass(frozen=True)
class TrainJobResult:
    outcome: TrainOutcome
    registration: registry.Registration | None  # when a registered model name was given


def run_name(mode: str, storage_uri: str, name: str | None, resume: bool) -> str:
    """`name`, else with `resume` the latest run in storage, else avemo-MODE-TIMESTAMP."""
    if name:
        return name
    if resume:
        latest = latest_run_name(storage_uri)
        if latest is None:
            raise TrainJobError(f"--resume: no run in {storage_uri}; pass --run-name")
        return latest
    return f"avemo-{mode}-{time.strftime('%Y%m%d-%H%M%S')}"


def _connect_ray(workers: int, gpu: bool) -> None:
    """Join RAY_ADDRESS's cluster or start a local one; refuse --gpu without enough GPUs."""
    import ray

    ensure_ray(None, None, TrainJobError, dashboard=True)
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpu and gpus < workers:
        raise TrainJobError(f"--gpu asks for {workers} GPU(s); the Ray cluster has {gpus:g}")


def run_train_job(
    settings: RunSettings,
    model_config: ModelConfig,
    train_config: TrainConfig,
    colearning: CoLearningConfig,
    register_as: str | None = None,
    log: Callable[[str], None] = print,
) -> TrainJobResult:
    """Train the run `settings` names and register its best checkpoint as `register_as`."""
    from pipelines.model_uri import ModelURIError

    if train_config.cross_fit:
        require_ensemble(model_config.members)
    try:
        tracking.check_reachable(settings.tracking_uri)
        info = datasets.inspect_shards(settings.data_uri)
        load_run_record(settings)  # a reused name without --resume fails before Ray starts
        _connect_ray(settings.workers, settings.use_gpu)
        log(
            f"run {settings.run_name}: {info.counts['train']} train / "
            f"{info.counts['valid']} valid clips, {settings.workers} worker(s), "
            f"mode {colearning.mode}"
        )
        outcome = run_training(settings, model_config, train_config, colearning, log=log)
        log(
            f"run {settings.run_name}: {outcome.epochs} epoch(s); best val_score "
            f"{outcome.score:.4f} at {outcome.checkpoint_dir}; MLflow run {outcome.run_id}"
        )
        if register_as is None:
            return TrainJobResult(outcome, None)
        valid = datasets.LocalBatches(
            info, "valid", train_config.batch_size, speaker_statistics=True
        )
        example = datasets.sample_rows(info, "valid", 2, list(FEATURE_COLUMNS))

        def rescore(checkpoint_dir: Path) -> Selection:
            return validation_score(load_checkpoint(checkpoint_dir), valid, colearning.mode)

        registration = registry.register(
            settings.tracking_uri,
            register_as,
            outcome.run_id,
            outcome.checkpoint_dir,
            example,
            rescore,
        )
    except (datasets.DataError, tracking.TrackingError, RunExistsError, ModelURIError) as err:
        raise TrainJobError(str(err)) from None
    return TrainJobResult(outcome, registration)
