"""Joining Ray for a pipeline, explicitly: the cluster at the given address (or RAY_ADDRESS), else a
new local one. Never "whichever Ray runs on this machine": with another instance running, Ray's
own guess fails with a traceback.

Ray's notices that are not about the user's run (token authentication on by default, a missing
tqdm) and the deprecation warning Ray Train raises inside its own actors are filtered by their
message, nothing else. With `dashboard`
(Ray Train needs it: its placement-group cleaner watches the controller through the state API the
dashboard serves) the dashboard listens on a free loopback port that every Ray process is told
(RAY_API_SERVER_ADDRESS), so the cleaner does not have to guess between Ray instances either.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

ADDRESS_ENV = "RAY_ADDRESS"
API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"
PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
# How often the dashboard agent samples every process on the node (psutil) for the dashboard's
# node view; Ray's 5 s cost 0.09 CPU-s per 10 s on an idle 1-CPU local cluster, 60 s 0.01 s.
REPORTER_INTERVAL_ENV = "REPORTER_UPDATE_INTERVAL_MS"
LOCAL_REPORTER_INTERVAL_MS = "60000"
# (logger, message prefix) of driver-side notices: token auth is on by default since Ray 2.60 and
# needs nothing on a local cluster; Ray Data's remote progress bars want tqdm, which avemo does not
# install (progress is logged instead).
DRIVER_NOTICES = (
    (
        "ray._private.authentication.authentication_token_setup",
        "Token authentication is enabled for this Ray cluster",
    ),
    ("ray.experimental.tqdm_ray", "tqdm is not installed. Progress bars will be disabled."),
)
# Raised by Ray Train's own DatasetManager actor reading a deprecated Ray Data option.
RAY_INTERNAL_WARNINGS = ("ignore:`ExecutionOptions.exclude_resources` is deprecated",)


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def cluster_address(address: str | None) -> str:
    """The address to join: `address`, else RAY_ADDRESS, else "local" (start a new cluster)."""
    return address or os.environ.get(ADDRESS_ENV) or "local"


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def quiet_driver_logs() -> None:
    """Drop Ray's notices that are about neither the user's input nor their run, by message."""
    for logger, prefix in DRIVER_NOTICES:
        logging.getLogger(logger).addFilter(_DropMessage(prefix))


def _quiet_local_start(dashboard_port: int | None) -> None:
    """Environment the local cluster's processes inherit (they start from this one's)."""
    warnings = [w for w in os.environ.get("PYTHONWARNINGS", "").split(",") if w]
    os.environ["PYTHONWARNINGS"] = ",".join([*warnings, *RAY_INTERNAL_WARNINGS])
    # A cluster on this machine has no node to be preempted; Ray Train's watcher for that only
    # logs, at error level, a caveat about restarting itself. The user's own setting wins.
    os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")
    # A local cluster is avemo's own worker pool: its node graphs need no 5 s refresh, and on
    # one or two CPUs that sampling takes from the extraction. The user's own setting wins.
    os.environ.setdefault(REPORTER_INTERVAL_ENV, LOCAL_REPORTER_INTERVAL_MS)
    if dashboard_port is not None:
        os.environ[API_SERVER_ENV] = f"http://127.0.0.1:{dashboard_port}"


def wait_for_cpus(available: Callable[[], dict[str, float]], timeout_s: float) -> bool:
    """Poll `available` until it reports a CPU or `timeout_s` passes; True once one is reported.
    On a loaded machine Ray's resource view can show no free CPU for a moment after its start: a
    Dataset run executed then plans as if the cluster were full and warns that it "will hang"."""
    deadline = time.monotonic() + timeout_s
    while not available().get("CPU"):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def ensure_ray(
    address: str | None,
    num_cpus: int | None,
    error: type[Exception],
    dashboard: bool = False,
    **local_options: object,
) -> None:
    """Init Ray once: join `address` / RAY_ADDRESS, else start a local cluster (with `dashboard`,
    one on loopback; `local_options`: further `ray.init` settings of a local cluster, such as
    `log_to_driver` or `object_store_memory`). An unreachable cluster raises `error`."""
    import ray

    if ray.is_initialized():
        return
    quiet_driver_logs()
    target = cluster_address(address)
    options: dict[str, object] = {}
    if target == "local":
        port = _free_loopback_port() if dashboard else None
        _quiet_local_start(port)
        options = {"num_cpus": num_cpus, "include_dashboard": port is not None, **local_options}
        if port is not None:
            options.update(dashboard_host="127.0.0.1", dashboard_port=port)
    try:
        ray.init(address=target, **options)
    except (ConnectionError, ValueError, RuntimeError) as err:
        shown = "a new local cluster" if target == "local" else target
        raise error(f"cannot start or reach Ray ({shown}): {err}") from None
