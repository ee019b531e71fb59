"""A new local cluster is used only once it reports its CPUs (a Dataset run before that plans
for 0 CPUs and warns that it will hang), and its background sampling is kept light."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pipelines.ray_session import (
    LOCAL_REPORTER_INTERVAL_MS,
    REPORTER_INTERVAL_ENV,
    _quiet_local_start,
    wait_for_cpus,
)


def test_waits_until_cpus_are_reported() -> None:
    reports = iter([{}, {"CPU": 0.0}, {"memory": 1.0}, {"CPU": 2.0}])
    polled: list[dict[str, float]] = []

    def available() -> dict[str, float]:
        polled.append(next(reports))
        return polled[-1]

    assert wait_for_cpus(available, timeout_s=10.0)
    assert polled[-1] == {"CPU": 2.0} and len(polled) == 4


def test_gives_up_after_the_timeout() -> None:
    started = time.monotonic()
    assert not wait_for_cpus(dict, timeout_s=0.2)
    assert 0.2 <= time.monotonic() - started < 2.0


_AGENT_ENV = r"""
import os, sys
from pipelines.ray_session import ensure_ray

def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found

ensure_ray(None, 1, SystemExit)
# the raylet starts the dashboard agent with its own environment (the agent's own /proc environ
# is overwritten by its process title)
for child in children(os.getpid()):
    with open(f"/proc/{child}/cmdline", "rb") as cmd:
        if os.path.basename(cmd.read().split(b"\0")[0]) == b"raylet":
            with open(f"/proc/{child}/environ", "rb") as env:
                values = dict(v.split(b"=", 1) for v in env.read().split(b"\0") if b"=" in v)
            print(values.get(b"REPORTER_UPDATE_INTERVAL_MS", b"unset").decode())
            sys.exit(0)
print("no raylet")
"""


def test_a_local_cluster_samples_its_processes_seldom_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The dashboard agent of a cluster avemo starts samples the node every 60 s, not Ray's 5 s
    (its CPU on one or two cores is taken from the extraction); a user's own setting wins.
    Checked in the environment of the raylet, which starts the agent."""
    env = {k: v for k, v in os.environ.items() if k != REPORTER_INTERVAL_ENV}
    out = subprocess.run(
        [sys.executable, "-c", _AGENT_ENV], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == LOCAL_REPORTER_INTERVAL_MS
    monkeypatch.setenv(REPORTER_INTERVAL_ENV, "7000")
    _quiet_local_start(None)
    assert os.environ[REPORTER_INTERVAL_ENV] == "7000"
