"""Real services for the tests, started once per session on loopback: a Ray cluster, an `mlflow
server` with a SQLite backend, and moto's S3 server for s3fs. Nothing here is mocked."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout_s: float = 240.0) -> None:
    """Poll url until it answers 2xx, failing fast if the server process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}: {url}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if 200 <= resp.status < 300:
                return
        time.sleep(0.3)
    raise TimeoutError(f"server did not answer at {url} within {timeout_s}s")


@contextlib.contextmanager
def running(
    cmd: list[str],
    health_url: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[None]:
    """Start a server process, wait until healthy, and stop it on exit."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
        try:
            wait_http(health_url, proc)
            yield
        finally:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop the server and every process it started (its own session): mlflow's uvicorn workers
    outlive a terminated parent otherwise."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """A real `mlflow server` on loopback, SQLite backend and local artifacts; yields its URI."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    cmd = [
        mlflow_bin,
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    uri = f"http://127.0.0.1:{port}"
    # No MLflow job runners (GenAI evaluation jobs, unused here): they start a dozen processes.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with running(cmd, f"{uri}/health", root / "server.log", env):
        yield uri


@contextlib.contextmanager
def s3_server(root: Path) -> Iterator[str]:
    """moto's S3 server mode on loopback (as s3fs's own suite runs it); yields the endpoint URL."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    endpoint = f"http://127.0.0.1:{port}"
    with running(cmd, f"{endpoint}/moto-api/", root / "moto.log"):
        yield endpoint


S3_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def set_env(values: dict[str, str]) -> dict[str, str | None]:
    """Set environment variables; returns the previous values for `restore_env`."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    return previous


def restore_env(previous: dict[str, str | None]) -> None:
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
