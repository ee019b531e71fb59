"""`ray job submit` against a token-authenticated Ray head, exactly as the README shows it.

Ray 2.60 turns token authentication on by default; a head started with `RAY_AUTH_MODE=token`
and `RAY_AUTH_TOKEN` accepts jobs only from clients that send the same token, and the
`ray job submit` CLI sends it when the same two variables are set in its environment.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from avemo_core.synth.shards import ShardSpec, write_clip_shards
from pipelines.label.store import LabelStore
from tests.jobs.ray_head import BIN, head_log, label_argv, ray_head
from tests.pipelines.label.helpers import check_label_rows, write_checkpoint

TOKEN = secrets.token_hex(16)
AUTH_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def token_head() -> Iterator[dict[str, str]]:
    with ray_head(AUTH_ENV) as head:
        yield head


def _ray_cli(args: list[str], env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ray"), *args], capture_output=True, text=True, env=env, timeout=timeout_s
    )


def _client_env(**auth: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0", **auth}


def _wait_for_jobs_api(head: dict[str, str]) -> None:
    deadline = time.monotonic() + 180
    while True:
        listed = _ray_cli(["job", "list", "--address", head["jobs"]], _client_env(**AUTH_ENV), 60)
        if listed.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Jobs API did not answer:\n{listed.stderr[-1500:]}\n{head_log(head)}"
            )
        time.sleep(2)


def test_submit_needs_the_token_and_runs_with_it(
    tmp_path: Path, token_head: dict[str, str]
) -> None:
    _wait_for_jobs_api(token_head)
    write_clip_shards(tmp_path / "shards", ShardSpec(clips=6, seed=7))
    checkpoint = write_checkpoint(tmp_path / "checkpoint")
    out = tmp_path / "labels"
    entry = label_argv(tmp_path / "shards", out, checkpoint)
    submit = ["job", "submit", "--address", token_head["jobs"], "--", *entry]

    refused = _ray_cli(submit, _client_env(), 120)
    assert refused.returncode != 0, refused.stdout[-2000:]
    assert "Missing authentication token" in refused.stderr, refused.stderr[-2000:]
    assert not out.exists(), "a client without the token must not start a job"

    done = _ray_cli(submit, _client_env(**AUTH_ENV), 600)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-3000:]
    assert "succeeded" in text, text[-3000:]
    success = json.loads((out / "_SUCCESS.json").read_text())
    assert (success["media_labelled"], success["clips_labelled"]) == (6, 6)
    check_label_rows(LabelStore(str(out)).read_labels())
