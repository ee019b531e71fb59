"""The registered model stands alone: in a process where neither this project nor its editable
install can be imported, plain `mlflow.pyfunc.load_model` loads and runs it, and `mlflow models
serve --env-manager local` answers the logged input example over HTTP on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avemo_core.colearning import CoLearningConfig
from avemo_core.model import ModelConfig
from avemo_core.schema import FEATURE_COLUMNS
from avemo_core.synth.shards import ShardSpec, write_clip_shards
from avemo_core.training import TrainConfig
from pipelines.train import datasets, registry
from pipelines.train.run import RunSettings, run_training
from tests.services import free_port, running

REPO = Path(__file__).resolve().parents[2]
NAME = "test-standalone-model"

# Imported first by every Python process started with PYTHONPATH=<this folder> (and by the
# servers `mlflow models serve` starts, which inherit it): drops the project's editable-install
# finder and every path into a checkout, so only the model's own code can provide avemo_core.
SITECUSTOMIZE = """
import sys

def _editable(obj):
    return getattr(obj, "__module__", "").startswith("__editable__")

sys.meta_path[:] = [f for f in sys.meta_path if not _editable(f)]
sys.path_hooks[:] = [h for h in sys.path_hooks if not _editable(h)]
sys.path_importer_cache.clear()
def _in_checkout(path):
    return "site-packages" not in path and any(path.startswith(r) for r in {roots!r})

sys.path[:] = [p for p in sys.path if p and not _in_checkout(p)]
"""

LOAD_AND_PREDICT = """
import importlib.util, sys
import pandas as pd
import mlflow

for name in ("avemo_core", "pipelines", "jobs"):
    assert importlib.util.find_spec(name) is None, f"{name} is importable before loading"
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
model.predict(pd.read_parquet(sys.argv[3])).to_parquet(sys.argv[4])
print(sys.modules["avemo_core"].__file__)
"""


def _roots() -> list[str]:
    """The checkouts an `import avemo_core` could reach: this one and the editable install's."""
    import avemo_core

    return sorted({str(REPO), str(Path(avemo_core.__file__).resolve().parents[1])})


@pytest.fixture(scope="module")
def isolated_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("isolated-site")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(roots=_roots()))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    path = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # uvicorn
    isolated = {"PYTHONPATH": str(site), "PYTHONSAFEPATH": "1", "PYTHONNOUSERSITE": "1"}
    return {**env, **isolated, "PATH": path}


@pytest.fixture(scope="module")
def registered(
    ray_cluster: None, mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, pd.DataFrame]:
    """A tiny model trained for one epoch on generated shards and registered: (URI, example)."""
    root = tmp_path_factory.mktemp("standalone-shards")
    write_clip_shards(
        root, ShardSpec(clips=48, seed=11, audio_frames=(16, 32), visual_frames=(2, 4))
    )
    settings = RunSettings(
        data_uri=str(root),
        run_name="standalone",
        storage_uri=str(tmp_path_factory.mktemp("standalone-runs")),
        tracking_uri=mlflow_uri,
        experiment="test-standalone",
    )
    outcome = run_training(
        settings,
        ModelConfig.named("tiny"),
        TrainConfig(epochs=1, batch_size=8),
        CoLearningConfig(),
    )
    info = datasets.inspect_shards(str(root))
    example = datasets.sample_rows(info, "valid", 3, list(FEATURE_COLUMNS))
    result = registry.register(mlflow_uri, NAME, outcome.run_id, outcome.checkpoint_dir, example)
    return f"models:/{NAME}/{result.version}", example


def _in_process(uri: str, mlflow_uri: str, rows: pd.DataFrame) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(mlflow_uri)
    return mlflow.pyfunc.load_model(uri).predict(rows)


def _assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns) and len(got) == len(want)
    probs = [c for c in want.columns if c.startswith("prob_")]
    np.testing.assert_allclose(
        got[probs].to_numpy(np.float64), want[probs].to_numpy(np.float64), rtol=1e-5, atol=1e-6
    )
    for column in ("tags", "conditions"):
        assert [list(v) for v in got[column]] == [list(v) for v in want[column]], column
    assert list(got["tags_condition"]) == list(want["tags_condition"])


def test_the_model_loads_where_the_project_is_not_importable(
    registered: tuple[str, pd.DataFrame],
    mlflow_uri: str,
    isolated_env: dict[str, str],
    tmp_path: Path,
) -> None:
    uri, example = registered
    rows = example.reset_index(drop=True)
    rows.to_parquet(tmp_path / "rows.parquet")
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, mlflow_uri, uri]
        + [str(tmp_path / "rows.parquet"), str(tmp_path / "out.parquet")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=isolated_env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded_from = done.stdout.strip().splitlines()[-1]
    assert f"{os.sep}code{os.sep}avemo_core{os.sep}" in loaded_from  # the model's own copy
    assert not any(loaded_from.startswith(root) for root in _roots())
    _assert_same(pd.read_parquet(tmp_path / "out.parquet"), _in_process(uri, mlflow_uri, rows))


def test_mlflow_models_serve_answers_the_logged_input_example(
    registered: tuple[str, pd.DataFrame],
    mlflow_uri: str,
    isolated_env: dict[str, str],
    tmp_path: Path,
) -> None:
    from mlflow.models.utils import load_serving_example

    uri, example = registered
    env = {**isolated_env, "MLFLOW_TRACKING_URI": mlflow_uri}
    probe = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('avemo_core'))"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert probe.stdout.strip() == "None", probe  # the server's processes cannot import it either
    import mlflow

    mlflow.set_tracking_uri(mlflow_uri)
    payload = load_serving_example(uri)  # the input example as logged: {"dataframe_split": ...}
    assert "dataframe_split" in json.loads(payload)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri]
    serve += ["--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"]
    with running(serve, f"{url}/ping", tmp_path / "serve.log", env, cwd=tmp_path):
        request = urllib.request.Request(
            f"{url}/invocations",
            data=payload.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
    served = pd.DataFrame(answer["predictions"])
    want = _in_process(uri, mlflow_uri, example.reset_index(drop=True))
    assert "No module named" not in (tmp_path / "serve.log").read_text()
    _assert_same(served[list(want.columns)], want)
