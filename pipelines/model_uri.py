"""Resolve a model reference once to a pinned version and a local avemo checkpoint directory.

Accepted: `models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/RUN_ID/PATH` (a logged checkpoint
or pyfunc model) and a local directory (a checkpoint, or a saved pyfunc model). An alias is looked
up exactly once, so a job that labels for hours uses one version even if `champion` moves meanwhile,
and records that version's name, number and run id beside its outputs.

Downloads go to a cache on each node (`cached_download`), keyed by the tracking URI and the pinned
reference (a registry version or a run's artifact never changes): every process on a node that
loads the same version shares one copy, under a file lock, and no download is left behind in the
temp directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from avemo_core.checkpoint import META_FILE

_MODELS_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_MODELS_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
_RUNS = re.compile(r"^runs:/(?P<run>[^/]+)/(?P<path>.+)$")
CHECKPOINT_ARTIFACT = "checkpoint"  # the pyfunc model's artifact key (and the run's artifact dir)
CACHE_ENV = "AVEMO_MODEL_CACHE"  # per-node download cache; default ~/.cache/avemo/models
_COMPLETE = ".complete"  # written last inside a cache entry: the download finished


class ModelURIError(ValueError):
    """The reference is malformed, unknown to the registry, or holds no avemo checkpoint."""


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    uri: str  # the reference as given
    name: str  # registered model name ("" for runs:/ and local references)
    version: str  # pinned version number ("" when not from the registry)
    run_id: str  # run that produced it ("" when unknown)
    checkpoint_dir: Path  # local directory holding model.safetensors + avemo.json
    pinned_uri: str = ""  # the reference that always gives this checkpoint (version, run or path)


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
    uri: str,
    tracking_uri: str | None = None,
    dst: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> ResolvedModel:
    """Pin `uri` to one version and download its checkpoint: into `dst` when given, else into
    the node's cache (`cache_dir`, else $AVEMO_MODEL_CACHE, else ~/.cache/avemo/models)."""
    local = Path(uri)
    if "://" not in uri and ":/" not in uri:
        if not local.is_dir():
            raise ModelURIError(f"{uri} is not a directory or a models:/ or runs:/ URI")
        checkpoint_dir = _find_checkpoint(local, uri)
        return ResolvedModel(
            uri, "", "", _local_run_id(local), checkpoint_dir, str(local.resolve())
        )

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
    try:
        if match := _MODELS_ALIAS.match(uri):
            version = client.get_model_version_by_alias(match["name"], match["alias"])
        elif match := _MODELS_VERSION.match(uri):
            version = client.get_model_version(match["name"], match["version"])
        elif match := _RUNS.match(uri):
            path = _download(uri, resolved_tracking, dst, cache_dir)
            return ResolvedModel(uri, "", "", match["run"], _find_checkpoint(path, uri), uri)
        else:
            raise ModelURIError(
                f"{uri}: expected models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN/PATH"
            )
        pinned = f"models:/{version.name}/{version.version}"
        path = _download(pinned, resolved_tracking, dst, cache_dir)
    except MlflowException as err:
        raise ModelURIError(f"{uri}: {err.message}") from None
    checkpoint_dir = _find_checkpoint(path, uri)
    return ResolvedModel(
        uri, version.name, str(version.version), version.run_id or "", checkpoint_dir, pinned
    )


def load_pinned(
    pinned_uri: str, tracking_uri: str | None, cache_dir: str | Path | None = None
) -> Path:
    """The checkpoint directory of a pinned reference on this node (downloaded once per node)."""
    return resolve_model(pinned_uri, tracking_uri, cache_dir=cache_dir).checkpoint_dir


def _download(
    pinned: str, tracking_uri: str, dst: str | Path | None, cache_dir: str | Path | None
) -> Path:
    """Artifacts of a pinned models:/ or runs:/ reference, in `dst` or the node's cache."""
    import mlflow

    def fetch(target: Path) -> Path:
        if match := _RUNS.match(pinned):
            return Path(
                mlflow.artifacts.download_artifacts(
                    run_id=match["run"],
                    artifact_path=match["path"],
                    dst_path=str(target),
                    tracking_uri=tracking_uri,
                )
            )
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=pinned, dst_path=str(target), tracking_uri=tracking_uri
            )
        )

    if dst is not None:
        return fetch(Path(dst))
    return cached_download(f"{tracking_uri}\n{pinned}", fetch, cache_dir)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    chosen = cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "avemo" / "models"
    return Path(chosen).expanduser()


def cached_download(
    key: str, fetch: Callable[[Path], Path], cache_dir: str | Path | None = None
) -> Path:
    """`fetch(folder)`'s result for `key`, downloaded once per cache: the first process holding
    the lock downloads into a hidden folder and renames it into place; the others wait and reuse
    it. A failed download leaves nothing behind."""
    root = cache_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    entry = root / hashlib.sha256(key.encode()).hexdigest()[:24]
    with _locked(root / f"{entry.name}.lock"):
        if not (entry / _COMPLETE).is_file():
            shutil.rmtree(entry, ignore_errors=True)  # an entry some crash left half-made
            staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=root))
            try:
                fetched = fetch(staging / "files")
                (staging / _COMPLETE).write_text(os.path.relpath(fetched, staging) + "\n")
                os.replace(staging, entry)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return entry / (entry / _COMPLETE).read_text().strip()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _local_run_id(directory: Path) -> str:
    """The MLflow run id a training checkpoint recorded in its metadata, if any."""
    import json

    try:
        meta = json.loads((_find_checkpoint(directory, str(directory)) / META_FILE).read_text())
    except (ModelURIError, ValueError):
        return ""
    return str(meta.get("metadata", {}).get("mlflow_run_id", ""))
