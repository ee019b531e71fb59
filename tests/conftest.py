"""Session-wide fixtures: one real Ray cluster, one `mlflow server`, one moto S3 server.

Each starts on first use and stops at the end of the session (Ray's test guide: share one cluster).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services

# S3 credentials and region must be set before Ray starts, so Ray workers inherit them too.
os.environ.update({k: v for k, v in services.S3_TEST_ENV.items() if k not in os.environ})
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """A real local Ray cluster for the session; 4 logical CPUs so 2-worker jobs fit on 2 cores."""
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=True, ignore_reinit_error=True)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Tracking URI of a real `mlflow server` on loopback (SQLite backend, local artifacts)."""
    with services.mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Endpoint URL of moto's S3 server on loopback; AWS_ENDPOINT_URL points at it while it runs."""
    with services.s3_server(tmp_path_factory.mktemp("moto")) as endpoint:
        previous = services.set_env({"AWS_ENDPOINT_URL": endpoint})
        try:
            yield endpoint
        finally:
            services.restore_env(previous)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
