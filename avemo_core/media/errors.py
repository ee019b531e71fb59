"""The one error type for a media file that cannot be extracted, carrying the stage that failed.

The pipeline turns it into an `_errors/` record (uri, stage, kind, message), so the kind and message
must say specifically what was wrong with the file, not just that something failed.
"""

from __future__ import annotations

# Stages a media file goes through, in order; an error record names the one that failed.
STAGES = ("read", "probe", "decode", "features", "write")


class MediaError(Exception):
    """A media file failed at `stage` for reason `kind` (a short stable word), with a message."""

    def __init__(self, stage: str, kind: str, message: str) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        super().__init__(f"{stage}: {kind}: {message}")
        self.stage = stage
        self.kind = kind
        self.message = message
