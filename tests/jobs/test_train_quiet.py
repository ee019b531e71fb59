"""A normal `avemo train --register` and `avemo label`, each starting its own local Ray while the
test session's cluster runs too, leave stderr free of tracebacks, warnings and error-level Ray
logs (the known noise: a "multiple active Ray instances" traceback, the token-auth notice, Ray
Train's internal deprecation warning and preemption-watcher caveat); progress lines stay."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from avemo_core.synth.shards import ShardSpec, write_clip_shards

# Lines a normal run may print that the checks below would catch, each with why.
ALLOWED = (
    # Ray's caveat, logged at error level for every restartable actor built with arguments; the
    # labeller's actors restart on purpose (a lost actor is replaced, the job goes on).
    "has constructor arguments in the object store and max_restarts > 0",
)
WARNING = re.compile(r"WARNING|Warning")
RAY_ERROR_LOG = re.compile(r" E \d+ \d+\] ")  # Ray's C++ error-level log lines


def _avemo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # start a local cluster
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
        env=env,
    )


def _noise(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if ("Traceback" in line or RAY_ERROR_LOG.search(line) or WARNING.search(line))
        and not any(allowed in line for allowed in ALLOWED)
    ]


def test_train_and_label_consoles_are_quiet(
    ray_cluster: None, mlflow_uri: str, tmp_path: Path
) -> None:
    shards = tmp_path / "shards"
    write_clip_shards(
        shards, ShardSpec(clips=48, seed=3, audio_frames=(16, 32), visual_frames=(2, 4))
    )
    trained = _avemo(
        "train", str(shards), "--model-size", "tiny", "--epochs", "1", "--batch-size", "8",
        "--storage", str(tmp_path / "runs"), "--run-name", "quiet", "--mlflow-uri", mlflow_uri,
        "--experiment", "test-quiet", "--register", "test-quiet-model",
        cwd=tmp_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "epoch 1/1  loss " in trained.stdout + trained.stderr  # the progress line stays
    assert "registered test-quiet-model v1" in trained.stdout
    assert _noise(trained.stderr) == [], trained.stderr[-5000:]

    labelled = _avemo(
        "label", str(shards), str(tmp_path / "labels"),
        "--model", "models:/test-quiet-model@champion", "--mlflow-uri", mlflow_uri,
        cwd=tmp_path,
    )  # fmt: skip
    assert labelled.returncode == 0, labelled.stderr[-3000:]
    assert "48 media labelled (48 clips), 0 skipped, 0 failed" in labelled.stdout
    assert _noise(labelled.stderr) == [], labelled.stderr[-5000:]


@pytest.mark.parametrize("line", ["x WARNING y", "Traceback (most recent call last):"])
def test_noise_is_recognised(line: str) -> None:
    assert _noise(f"ok\n{line}\n") == [line]
