"""`avemo label` on a separately started Ray cluster: submitted through the Ray Jobs API, and run as
a driver that is SIGKILLed half-way and then resumes.

The cluster is a real head (tests/jobs/ray_head.py) without token auth; this test process never
connects a Ray driver to it (it talks HTTP to the Jobs API, and `avemo` runs as a subprocess).
test_ray_job_submit_token.py does the same against a token-authenticated head.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from avemo_core.synth.shards import ShardSpec, write_clip_shards
from pipelines.label.store import LabelStore
from tests.jobs.ray_head import head_log, label_argv
from tests.jobs.ray_head import ray_head as start_ray_head
from tests.pipelines.label.helpers import check_label_rows, write_checkpoint

# A loopback-only test cluster without token auth (a real one keeps Ray's default token auth).
HEAD_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def ray_head() -> Iterator[dict[str, str]]:
    """A real single-node Ray cluster (2 CPUs); yields its GCS and Jobs API addresses."""
    with start_ray_head(HEAD_ENV) as head:
        yield head


@pytest.fixture
def jobs_client(ray_head: dict[str, str]):  # noqa: ANN201
    """A Jobs API client of the head, retried until the head's dashboard answers."""
    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + 180
    while True:
        try:
            return JobSubmissionClient(ray_head["jobs"])
        except ConnectionError:
            if time.monotonic() > deadline:
                log = head_log(ray_head)
                raise TimeoutError(f"Ray head did not come up:\n{log}") from None
            time.sleep(2)


def _submit(client, entrypoint: str) -> str:  # noqa: ANN001 (JobSubmissionClient)
    """Submit, retrying while the head's job agent is still starting."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint)
        except RuntimeError as err:
            if "No available agent" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def _wait(client, job_id: str, timeout_s: float = 600) -> str:  # noqa: ANN001
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + timeout_s
    while (status := client.get_job_status(job_id)) not in {
        JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED,
    }:  # fmt: skip
        assert time.monotonic() < deadline, f"job {job_id} still {status}"
        time.sleep(1)
    return str(status)


def test_label_job_submitted_through_the_jobs_api(tmp_path: Path, jobs_client) -> None:  # noqa: ANN001
    write_clip_shards(tmp_path / "shards", ShardSpec(clips=12, seed=5))
    checkpoint = write_checkpoint(tmp_path / "checkpoint")
    out = tmp_path / "labels"
    argv = label_argv(tmp_path / "shards", out, checkpoint)
    job_id = _submit(jobs_client, shlex.join(argv))
    status = _wait(jobs_client, job_id)
    logs = jobs_client.get_job_logs(job_id)
    assert status == "SUCCEEDED", logs[-3000:]
    assert "12 media labelled" in logs
    success = json.loads((out / "_SUCCESS.json").read_text())
    assert (success["media_labelled"], success["clips_labelled"]) == (12, 12)
    labels = LabelStore(str(out)).read_labels()
    assert labels.num_rows == 12
    check_label_rows(labels)


def test_killed_run_resumes_where_it_stopped(
    tmp_path: Path, ray_head: dict[str, str], jobs_client
) -> None:  # noqa: ANN001
    spec = ShardSpec(clips=160, seed=6, files=4)
    write_clip_shards(tmp_path / "shards", spec)
    checkpoint = write_checkpoint(tmp_path / "checkpoint")
    out = tmp_path / "labels"
    argv = [
        *label_argv(tmp_path / "shards", out, checkpoint),
        "--ray-address", ray_head["gcs"], "--batch-size", "4", "--media-per-part", "4",
    ]  # fmt: skip
    env = {**os.environ, **HEAD_ENV}
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 400
    media_parts = out / "media"
    while not (media_parts.is_dir() and any(media_parts.glob("part-*.parquet"))):
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no part committed in time"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    committed = LabelStore(str(out)).read_media().num_rows
    assert 0 < committed < 160, "the kill must land mid-run"
    assert not (out / "_SUCCESS.json").exists()

    second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    success = json.loads((out / "_SUCCESS.json").read_text())
    assert success["media_skipped"] == committed
    assert success["media_labelled"] == 160 - committed
    store = LabelStore(str(out))
    ids = store.read_labels(latest=False).column("clip_id").to_pylist()
    assert len(ids) == len(set(ids)) == 160
    label_parts = {p.name for p in (out / "labels").glob("part-*.parquet")}
    assert label_parts == {p.name for p in media_parts.glob("part-*.parquet")}
    check_label_rows(store.read_labels())
