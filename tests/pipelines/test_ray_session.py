"""A new local cluster is used only once it reports its CPUs (a Dataset run before that plans
for 0 CPUs and warns that it will hang)."""

from __future__ import annotations

import time

from pipelines.ray_session import wait_for_cpus


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
