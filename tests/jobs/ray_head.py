"""A real single-node Ray head for the job-submission tests, started in its own session.

It runs `ray start --head --block` with its own temp dir and ports, so it never meets the
in-process `ray_cluster` fixture. Teardown ends that session's process group, not `ray stop`,
which would stop every Ray cluster of this user on the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.services import free_port

BIN = Path(sys.executable).parent


@contextlib.contextmanager
def ray_head(auth_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A head (2 CPUs) started with auth_env; yields its GCS and Jobs API addresses and temp dir."""
    # Short temp dir: Ray's socket paths must stay under the 107-character limit.
    temp = tempfile.mkdtemp(prefix="avray-", dir="/tmp")
    port, dashboard = free_port(), free_port()
    cmd = [
        str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
        "--port", str(port), "--num-cpus", "2", "--temp-dir", temp,
        "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(dashboard), "--dashboard-agent-listen-port", str(free_port()),
    ]  # fmt: skip
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **auth_env}
    with open(Path(temp) / "head.log", "wb") as log:
        head = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield {"gcs": f"127.0.0.1:{port}", "jobs": f"http://127.0.0.1:{dashboard}", "temp": temp}
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # whatever of the session is still there
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def head_log(head: dict[str, str]) -> str:
    return (Path(head["temp"]) / "head.log").read_text(errors="replace")[-2000:]


def label_argv(shards: Path, out: Path, checkpoint: Path) -> list[str]:
    """`avemo label` as a job's entrypoint: it runs in the head's environment, so the venv's own
    `avemo`, by absolute path."""
    return [str(BIN / "avemo"), "label", str(shards), str(out), "--model", str(checkpoint)]
