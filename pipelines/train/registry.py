"""Register a trained checkpoint as a new model version; move `champion` only through a gate.

Every registration becomes a new version of the registered model, logged as a pyfunc model from
code (`pipelines/train/pyfunc_model.py`, nothing pickled) with the checkpoint as its artifact, a
signature and an input example, and gets the alias `candidate`. The model stands alone: it carries
the `avemo_core` package it runs (`code_paths`; pure, Ray-free) and the exact versions of the
packages it imports, so `mlflow.pyfunc.load_model` and `mlflow models serve` need neither this
project nor Ray installed. It takes `champion` only when its
validation score beats the current champion's; the decision is one line the user sees, naming the
conditions each score averages (only those the validation data can form). Scores are compared on
equal terms: when the champion was scored on other data, under another mode's score or over other
conditions, it is scored again on the candidate's validation data (`rescore`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import warnings
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pandas as pd

import avemo_core
from avemo_core.checkpoint import CONDITIONS_KEY, META_FILE, WEIGHTS_FILE, load_checkpoint
from avemo_core.selection import Selection
from pipelines import tracking
from pipelines.model_uri import CHECKPOINT_ARTIFACT

CANDIDATE = "candidate"
CHAMPION = "champion"
SCORE_TAG = "avemo.val_score"
FINGERPRINT_TAG = "avemo.data_fingerprint"
MODE_TAG = "avemo.mode"
CONDITIONS_TAG = "avemo.score_conditions"  # comma-separated conditions the score averages
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
CODE_PACKAGE = Path(avemo_core.__file__).parent  # shipped inside the model (code/avemo_core)
REQUIRED_PACKAGES = ("torch", "numpy", "pandas", "safetensors", "mlflow")  # what the model imports


def pinned_requirements() -> list[str]:
    """`name==version` of each package the model imports, as installed here. A local version
    label (torch's `+cpu`) is dropped: package indexes serve `torch==2.13.0` to CPU hosts."""
    return [f"{name}=={version(name).split('+')[0]}" for name in REQUIRED_PACKAGES]


@dataclasses.dataclass(frozen=True)
class Registration:
    name: str  # registered model
    version: str  # the new version
    score: float  # its validation score
    champion_version: str  # champion after the gate
    promoted: bool  # whether the new version became champion
    gate: str  # the one-line decision shown to the user


# MLflow warns on every integer input column that missing values would break it; ours are frame
# counts and shapes, never missing, so the hint is noise a user would read as failure.
_INTEGER_HINT = "Hint: Inferred schema contains integer column"


def _signature(checkpoint_dir: Path, example: pd.DataFrame) -> object:
    from mlflow.models import infer_signature

    from pipelines.train.pyfunc_model import AvemoEmotionModel

    model = AvemoEmotionModel()
    model.checkpoint = load_checkpoint(checkpoint_dir)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_INTEGER_HINT)
        return infer_signature(example, model.predict(None, example))


def register(
    tracking_uri: str,
    name: str,
    run_id: str,
    checkpoint_dir: str | Path,
    example: pd.DataFrame,
    rescore: Callable[[Path], Selection] | None = None,
) -> Registration:
    """Log `checkpoint_dir` into `run_id` as a new version of `name`, alias it, apply the gate."""
    import mlflow
    from mlflow.exceptions import MlflowException

    checkpoint_dir = Path(checkpoint_dir)
    metadata = json.loads((checkpoint_dir / META_FILE).read_text())["metadata"]
    score = float(metadata["metrics"]["val_score"])
    mode, fingerprint = metadata["mode"], metadata["data_fingerprint"]
    conditions = ",".join(metadata.get(CONDITIONS_KEY, {}).get("scored", []))
    tracking.check_reachable(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = tracking.client(tracking_uri)
    staging = tempfile.TemporaryDirectory(prefix="avemo-register-")
    try:
        # Only the model files (no optimizer state), under the artifact's own name.
        model_dir = Path(staging.name) / CHECKPOINT_ARTIFACT
        model_dir.mkdir()
        for file in (WEIGHTS_FILE, META_FILE):
            shutil.copy2(checkpoint_dir / file, model_dir / file)
        code = Path(staging.name) / "code" / CODE_PACKAGE.name  # the package, no bytecode
        shutil.copytree(CODE_PACKAGE, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_INTEGER_HINT)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(PYFUNC_CODE),
                artifacts={CHECKPOINT_ARTIFACT: str(model_dir)},
                signature=_signature(checkpoint_dir, example),
                input_example=example,
                code_paths=[str(code)],
                pip_requirements=pinned_requirements(),
            )
        try:
            client.create_registered_model(name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        tags = {
            SCORE_TAG: str(score),
            FINGERPRINT_TAG: fingerprint,
            MODE_TAG: mode,
            CONDITIONS_TAG: conditions,
        }
        created = client.create_model_version(
            name, info.model_uri, run_id, tags=tags, await_creation_for=0, model_id=info.model_id
        )
        version = str(created.version)
        client.set_registered_model_alias(name, CANDIDATE, version)
        candidate = Selection(score, tuple(c for c in conditions.split(",") if c))
        promoted, champion, gate = _gate(tracking_uri, name, version, candidate, tags, rescore)
        if promoted:
            client.set_registered_model_alias(name, CHAMPION, version)
    except MlflowException as err:
        raise tracking.TrackingError(f"registering {name}: {err.message}") from None
    finally:
        staging.cleanup()
    return Registration(name, version, score, champion, promoted, gate)


def _on(conditions: tuple[str, ...] | str) -> str:
    """`on a, v` (or `on -` when unknown): which conditions a score averages."""
    names = conditions.split(",") if isinstance(conditions, str) else list(conditions)
    return "on " + (", ".join(n for n in names if n) or "-")


def _gate(
    tracking_uri: str,
    name: str,
    version: str,
    candidate: Selection,
    tags: dict[str, str],
    rescore: Callable[[Path], Selection] | None,
) -> tuple[bool, str, str]:
    """(promote?, champion version after the gate, the decision line)."""
    from mlflow.exceptions import MlflowException

    client = tracking.client(tracking_uri)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champion = None
    score = candidate.score
    if champion is None:
        return (
            True,
            version,
            f"gate: {name} has no champion yet -> v{version} ({score:.4f} "
            f"{_on(candidate.conditions)}) is champion",
        )
    held = champion.tags
    comparable = all(held.get(k) == tags[k] for k in (FINGERPRINT_TAG, MODE_TAG, CONDITIONS_TAG))
    if comparable or rescore is None:
        champion_score = float(held.get(SCORE_TAG, "nan"))
        champion_on = _on(held.get(CONDITIONS_TAG, ""))
        how = "as registered"
    else:
        from pipelines import model_uri

        resolved = model_uri.resolve_model(f"models:/{name}/{champion.version}", tracking_uri)
        rescored = rescore(resolved.checkpoint_dir)
        champion_score, champion_on = rescored.score, _on(rescored.conditions)
        how = "rescored on this validation data"
    promoted = math.isnan(champion_score) or score > champion_score
    verdict = (
        f"v{version} is the new champion" if promoted else f"champion stays v{champion.version}"
    )
    sign = ">" if promoted else "<="
    line = (
        f"gate: v{version} val_score {score:.4f} {_on(candidate.conditions)} {sign} champion "
        f"v{champion.version} {champion_score:.4f} {champion_on} ({how}) -> {verdict}"
    )
    return promoted, version if promoted else str(champion.version), line
