"""Resolve a model reference once to a pinned version and a local avemo checkpoint directory.

Accepted: `models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/RUN_ID/PATH` (a logged checkpoint
or pyfunc model) and a local directory (a checkpoint, or a saved pyfunc model). An alias is looked
up exactly once, so a job that labels for hours uses one version even if `champion` moves meanwhile,
and records that version's name, number and run id beside its outputs.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path

from avemo_core.checkpoint import META_FILE

_MODELS_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_MODELS_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
_RUNS = re.compile(r"^runs:/(?P<run>[^/]+)/(?P<path>.+)$")
CHECKPOINT_ARTIFACT = "checkpoint"  # the pyfunc model's artifact key (and the run's artifact dir)


class ModelURIError(ValueError):
    """The reference is malformed, unknown to the registry, or holds no avemo checkpoint."""


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    uri: str  # the reference as given
    name: str  # registered model name ("" for runs:/ and local references)
    version: str  # pinned version number ("" when not from the registry)
    run_id: str  # run that produced it ("" when unknown)
    checkpoint_dir: Path  # local directory holding model.safetensors + avemo.json


def _find_checkpoint(root: Path, uri: str) -> Path:
    """`root` itself, a pyfunc model's `artifacts/checkpoint`, or a run's `checkpoint/`."""
    for candidate in (root, root / "artifacts" / CHECKPOINT_ARTIFACT, root / CHECKPOINT_ARTIFACT):
        if (candidate / META_FILE).is_file():
            return candidate
    found = sorted(root.glob(f"artifacts/*/{META_FILE}"))
    if len(found) == 1:
        return found[0].parent
    raise ModelURIError(f"{uri} holds no avemo checkpoint ({META_FILE} not found)")


def resolve_model(
    uri: str, tracking_uri: str | None = None, dst: str | Path | None = None
) -> ResolvedModel:
    """Pin `uri` to one version and download its checkpoint into `dst` (a new temp dir if None)."""
    local = Path(uri)
    if "://" not in uri and ":/" not in uri:
        if not local.is_dir():
            raise ModelURIError(f"{uri} is not a directory or a models:/ or runs:/ URI")
        return ResolvedModel(uri, "", "", _local_run_id(local), _find_checkpoint(local, uri))

    import mlflow
    from mlflow.exceptions import MlflowException

    from pipelines import tracking

    resolved_tracking = tracking.resolve_tracking_uri(tracking_uri)
    try:
        tracking.check_reachable(resolved_tracking)
    except tracking.TrackingError as err:
        raise ModelURIError(f"{uri}: {err}") from None
    client = tracking.client(resolved_tracking)
    mlflow.set_tracking_uri(resolved_tracking)  # models:/ downloads read the global registry URI
    mlflow.set_registry_uri(resolved_tracking)
    target = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="avemo-model-"))
    try:
        if match := _MODELS_ALIAS.match(uri):
            version = client.get_model_version_by_alias(match["name"], match["alias"])
        elif match := _MODELS_VERSION.match(uri):
            version = client.get_model_version(match["name"], match["version"])
        elif match := _RUNS.match(uri):
            path = mlflow.artifacts.download_artifacts(
                run_id=match["run"],
                artifact_path=match["path"],
                dst_path=str(target),
                tracking_uri=resolved_tracking,
            )
            return ResolvedModel(uri, "", "", match["run"], _find_checkpoint(Path(path), uri))
        else:
            raise ModelURIError(
                f"{uri}: expected models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN/PATH"
            )
        pinned = f"models:/{version.name}/{version.version}"
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=pinned, dst_path=str(target), tracking_uri=resolved_tracking
        )
    except MlflowException as err:
        raise ModelURIError(f"{uri}: {err.message}") from None
    checkpoint_dir = _find_checkpoint(Path(path), uri)
    return ResolvedModel(
        uri, version.name, str(version.version), version.run_id or "", checkpoint_dir
    )


def _local_run_id(directory: Path) -> str:
    """The MLflow run id a training checkpoint recorded in its metadata, if any."""
    import json

    try:
        meta = json.loads((_find_checkpoint(directory, str(directory)) / META_FILE).read_text())
    except (ModelURIError, ValueError):
        return ""
    return str(meta.get("metadata", {}).get("mlflow_run_id", ""))
