"""MLflow tracking of a training run: one run per Ray Train run, reattached on resume.

The driver creates (or finds again) the MLflow run and logs the parameters; rank 0 of the Ray
Train workers logs each epoch's metrics with `step=epoch`, skipping an epoch that is already there,
so a run resumed after a crash ends with every epoch logged exactly once; the driver logs the best
checkpoint and the plots at the end. Default tracking is a SQLite file `./mlflow.db` with artifacts
beside it; `--mlflow-uri` or `MLFLOW_TRACKING_URI` point anywhere else, e.g. an `mlflow server`.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from avemo_core.labels import EMOTIONS

DEFAULT_DB = "mlflow.db"
EPOCH_KEY = "epoch"  # logged with every epoch's metrics; its history says which epochs are done


class TrackingError(RuntimeError):
    """The tracking server cannot be reached or refuses a request (the user can fix the URI)."""


def resolve_tracking_uri(uri: str | None = None) -> str:
    """`uri`, else MLFLOW_TRACKING_URI, else the local SQLite file ./mlflow.db (made absolute, so
    Ray workers with another working directory log to the same file)."""
    chosen = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_DB
    scheme = urllib.parse.urlparse(chosen).scheme
    if chosen == DEFAULT_DB or not scheme:
        return f"sqlite:///{Path(chosen).resolve()}"
    return chosen


def local_artifact_root(uri: str) -> str | None:
    """Artifact root beside a local SQLite store (`mlartifacts/`), None when the server decides."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast with one line when an HTTP tracking server does not answer its health check."""
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme == "sqlite":
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return
    if scheme not in ("http", "https"):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as resp:
            if resp.status == 200:
                return
            reason = f"HTTP {resp.status}"
    except (urllib.error.URLError, OSError) as err:
        reason = str(getattr(err, "reason", err))
    raise TrackingError(f"MLflow tracking server {uri} is not reachable ({reason})")


def client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def start_or_resume_run(
    uri: str, experiment: str, run_name: str, run_id: str | None, params: Mapping[str, Any]
) -> str:
    """The id of the run to log into: `run_id` when resuming (reopened), else a new run with
    `params` logged. Errors from the server become a TrackingError."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(uri)
    try:
        if run_id is not None:
            mlflow_client.update_run(run_id, status="RUNNING")
            return run_id
        found = mlflow_client.get_experiment_by_name(experiment)
        experiment_id = (
            found.experiment_id
            if found is not None
            else mlflow_client.create_experiment(experiment, local_artifact_root(uri))
        )
        run = mlflow_client.create_run(experiment_id, run_name=run_name)
        mlflow_client.log_batch(run.info.run_id, params=_params(params))
        return run.info.run_id
    except MlflowException as err:
        raise TrackingError(f"MLflow at {uri}: {err.message}") from None


def _params(params: Mapping[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(key, str(value)[:6000]) for key, value in sorted(params.items())]


def flat_params(prefix: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """`{prefix}.{field}` params of one config dict."""
    return {f"{prefix}.{key}": value for key, value in config.items()}


class EpochLogger:
    """Rank 0's per-epoch logging into an existing run; an epoch already logged is skipped."""

    def __init__(self, uri: str, run_id: str) -> None:
        self.client = client(uri)
        self.run_id = run_id

    def logged_epochs(self) -> set[int]:
        return {m.step for m in self.client.get_metric_history(self.run_id, EPOCH_KEY)}

    def log_epoch(self, epoch: int, values: Mapping[str, float]) -> bool:
        """Log `values` at step `epoch` unless that epoch is logged already; True when logged."""
        from mlflow.entities import Metric

        if epoch in self.logged_epochs():
            return False
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, epoch)
            for key, value in sorted(values.items())
            if math.isfinite(value)
        ]
        # The epoch marker goes last in the same batch: a batch is stored all or nothing.
        metrics.append(Metric(EPOCH_KEY, float(epoch), now, epoch))
        self.client.log_batch(self.run_id, metrics=metrics)
        return True


def _learning_curves(history: Sequence[Mapping[str, float]], path: Path) -> None:
    import matplotlib.pyplot as plt

    epochs = [int(record["epoch"]) for record in history]
    fig, (loss_ax, f1_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for key in sorted({k for record in history for k in record if k.startswith("train/")}):
        if key != "train/samples" and not key.endswith("_per_s"):
            loss_ax.plot(epochs, [r.get(key, math.nan) for r in history], label=key[6:])
    for key in sorted(
        {k for r in history for k in r if k.startswith("valid/") and k.endswith("/f1")}
    ):
        f1_ax.plot(epochs, [r.get(key, math.nan) for r in history], marker="o", label=key[6:])
    loss_ax.set(title="training loss parts", xlabel="epoch")
    f1_ax.set(title="validation macro-F1", xlabel="epoch", ylim=(0, 1))
    loss_ax.legend(fontsize=8)
    f1_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _emotion_f1(metrics: Mapping[str, float], path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    conditions = [c for c in ("av", "a", "v") if f"valid/{c}/f1" in metrics]
    width = 0.8 / max(len(conditions), 1)
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, condition in enumerate(conditions):
        values = [metrics.get(f"valid/{condition}/f1/{e}", math.nan) for e in EMOTIONS]
        ax.bar(np.arange(len(EMOTIONS)) + i * width, values, width, label=condition)
    ax.set_xticks(np.arange(len(EMOTIONS)) + width * (len(conditions) - 1) / 2, EMOTIONS)
    ax.set(title="best checkpoint: validation F1 per emotion", ylim=(0, 1))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def log_final(
    uri: str,
    run_id: str,
    history: Sequence[Mapping[str, float]],
    best_metrics: Mapping[str, float],
    checkpoint_dir: str | Path,
) -> None:
    """Best checkpoint under `checkpoint/`, plots under `plots/`, summary metrics; run FINISHED."""
    import matplotlib

    matplotlib.use("Agg")
    mlflow_client = client(uri)
    with tempfile.TemporaryDirectory(prefix="avemo-plots-") as tmp:
        plots = Path(tmp)
        _learning_curves(history, plots / "learning_curves.png")
        _emotion_f1(best_metrics, plots / "f1_per_emotion.png")
        mlflow_client.log_artifacts(run_id, str(plots), "plots")
    mlflow_client.log_artifacts(run_id, str(checkpoint_dir), "checkpoint")
    best = {f"best/{k}": v for k, v in best_metrics.items() if isinstance(v, int | float)}
    if best and not mlflow_client.get_metric_history(run_id, next(iter(sorted(best)))):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in sorted(best.items()) if math.isfinite(v)]
        mlflow_client.log_batch(run_id, metrics=metrics)
    mlflow_client.set_terminated(run_id, "FINISHED")
