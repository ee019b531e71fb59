"""The processes of this machine as /proc lists them, for benchmarks and tests that watch the
children a job starts (ffmpeg decoders, Ray workers) or their memory. Linux only."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Process:
    pid: int
    name: str  # the executable's name, e.g. ffmpeg (at most 15 characters)
    state: str  # R, S, Z (zombie: exited, not yet reaped), ...
    ppid: int
    session: int

    @property
    def alive(self) -> bool:
        return self.state != "Z"


def processes() -> Iterator[Process]:
    """Every process /proc lists now; one that exits while being read is skipped."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)  # the name may hold spaces and ')'
        fields = rest.split()  # state, ppid, pgrp, session, ...
        yield Process(int(entry), name, fields[0], int(fields[1]), int(fields[3]))
