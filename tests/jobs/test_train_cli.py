"""`avemo train` and `avemo evaluate` as a user runs them: a driver killed mid-run and started
again with --resume continues the same run (one MLflow run, each epoch once), registers the model,
and `avemo evaluate` scores it from the registry; bad services and names fail in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avemo_core.synth.shards import ShardSpec, write_clip_shards
from pipelines import tracking
from tests import services

SPEC = ShardSpec(clips=64, seed=7, audio_frames=(16, 32), visual_frames=(2, 4))


def _avemo(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-shards")
    write_clip_shards(root, SPEC)
    return root


def _ray_env() -> dict[str, str]:
    import ray

    return {"RAY_ADDRESS": ray.get_runtime_context().gcs_address}


def _wait_for_first_checkpoint(run_dir: Path, proc: subprocess.Popen, timeout_s: float) -> None:
    """Until Ray's checkpoint snapshot lists a checkpoint (so a restart finds it)."""
    deadline = time.monotonic() + timeout_s
    snapshot = run_dir / "checkpoint_manager_snapshot.json"
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if snapshot.is_file() and "checkpoint_2" in snapshot.read_text():
            return
        time.sleep(0.5)
    raise TimeoutError("no checkpoint appeared")


# Slow (about 100 s: four CLI processes, each starting Ray Train): the default suite covers
# resuming from a checkpoint at worker level (pipelines/train/test_train.py) and a killed job
# rerun (test_ray_job_submit.py); `make test-all` runs this driver-level one too.
@pytest.mark.slow
def test_killed_driver_resumes_into_the_same_mlflow_run(
    ray_cluster: None, mlflow_uri: str, shards: Path, tmp_path: Path
) -> None:
    storage = tmp_path / "runs"
    common = [
        "train", str(shards), "--workers", "2", "--epochs", "2", "--model-size", "tiny",
        "--batch-size", "8", "--run-name", "driver-dies", "--storage", str(storage),
        "--mlflow-uri", mlflow_uri, "--experiment", "test-cli", "--keep-checkpoints", "3",
    ]  # fmt: skip
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs", *common],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **_ray_env()},
        start_new_session=True,
    )
    try:
        _wait_for_first_checkpoint(storage / "driver-dies", proc, timeout_s=400)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    resumed = _avemo(*common, "--resume", "--register", "test-cli-model", env=_ray_env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "2 epoch(s)" in resumed.stdout
    console = resumed.stdout + resumed.stderr
    assert "selection: val_score = mean validation macro-F1 over av, a, v" in console
    assert "epoch 2/2  loss " in console  # rank 0's line for the epoch this driver trained
    assert "gate: test-cli-model has no champion yet -> v1" in resumed.stdout

    client = tracking.client(mlflow_uri)
    experiment = client.get_experiment_by_name("test-cli")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_name for r in runs] == ["driver-dies"]  # one run, reattached
    run_id = runs[0].info.run_id
    assert runs[0].info.status == "FINISHED"
    for key in ("epoch", "valid/av/f1", "val_score"):
        assert sorted(m.step for m in client.get_metric_history(run_id, key)) == [0, 1], key
    # The first driver's epoch-0 checkpoint was resumed from, not trained again.
    epochs = [
        json.loads((p / "avemo.json").read_text())["metadata"]["epoch"]
        for p in (storage / "driver-dies").glob("checkpoint_2*")
    ]
    assert epochs.count(0) == 1 and 1 in epochs

    out = tmp_path / "eval.json"
    evaluated = _avemo(
        "evaluate", str(shards), "--model", "models:/test-cli-model@champion",
        "--mlflow-uri", mlflow_uri, "--json", str(out),
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    table = evaluated.stdout.splitlines()
    assert table[0].startswith("test-cli-model v1 on test")
    assert [line.split()[0] for line in table[2:]] == ["av", "a", "v"]
    report = json.loads(out.read_text())
    assert report["model"]["version"] == "1" and report["model"]["run_id"] == run_id
    assert set(report["metrics"]) == {"av", "a", "v"}
    assert 0.0 <= report["metrics"]["av"]["f1"] <= 1.0

    again = _avemo(*common)
    assert again.returncode == 2
    assert "already exists" in again.stderr and "--resume" in again.stderr
    assert "Traceback" not in again.stderr


def test_unreachable_tracking_server_is_one_line(shards: Path, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{services.free_port()}"
    result = _avemo(
        "train", str(shards), "--model-size", "tiny", "--storage", str(tmp_path),
        "--mlflow-uri", dead, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        f"avemo train: error: MLflow tracking server {dead} is not reachable"
    )
    assert not (tmp_path / "mlflow.db").exists()


def test_missing_data_and_model_are_one_line(shards: Path, tmp_path: Path) -> None:
    result = _avemo("train", str(tmp_path / "nowhere"), "--storage", str(tmp_path), timeout=120)
    assert result.returncode == 2 and "no clip shards" in result.stderr
    result = _avemo("evaluate", str(shards), "--model", str(tmp_path), timeout=120)
    assert result.returncode == 2 and "no avemo checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_members_below_one_is_one_line(shards: Path, tmp_path: Path) -> None:
    result = _avemo(
        "train", str(shards), "--members", "0", "--storage", str(tmp_path), timeout=120
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == "avemo train: error: members must be >= 1"


def test_cross_fit_without_an_ensemble_is_one_line(shards: Path, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{services.free_port()}"  # refused before any service is asked
    result = _avemo(
        "train", str(shards), "--members", "1", "--cross-fit", "--storage", str(tmp_path),
        "--mlflow-uri", dead, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "avemo train: error: cross_fit needs an ensemble: members must be >= 2, got 1"
    )
