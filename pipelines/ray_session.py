"""Joining Ray for a pipeline: reuse the running session, else start or reach one, clearly."""

from __future__ import annotations


def ensure_ray(address: str | None, num_cpus: int | None, error: type[Exception]) -> None:
    """Init Ray once (local when address is None); an unreachable cluster raises `error`."""
    import ray

    if ray.is_initialized():
        return
    try:
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise error(f"cannot start or reach Ray ({address or 'local'}): {err}") from None
