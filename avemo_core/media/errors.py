"""The one error type for a media file that cannot be extracted, carrying the stage that failed,
and the one record of it (`ErrorRecord`) that extraction and labelling write to `_errors/`.

The kind and message must say specifically what was wrong with the file, not just that something
failed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from avemo_core.schema import media_id_for

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


# The fields of every `_errors/` record, in order (a partial decode adds `stopped_at_s`).
ERROR_FIELDS = ("uri", "media_id", "stage", "kind", "message")


@dataclasses.dataclass(frozen=True)
class ErrorRecord:
    """What `_errors/` and `_SUCCESS.json` say about a file that failed: one shape for every job."""

    uri: str
    media_id: str
    stage: str  # one of STAGES
    kind: str  # a short stable word, e.g. not_found, ffmpeg_failed
    message: str
    stopped_at_s: float | None = None  # a decode that stopped part-way: where

    @classmethod
    def of(cls, uri: str, err: MediaError, media_id: str | None = None) -> ErrorRecord:
        """The record of `err` raised for `uri` (a partial decode keeps where it stopped)."""
        return cls(
            uri,
            media_id or media_id_for(uri),
            err.stage,
            err.kind,
            err.message,
            getattr(err, "stopped_at_s", None),
        )

    @classmethod
    def unexpected(cls, uri: str, stage: str, err: BaseException) -> ErrorRecord:
        """The record of an exception no avemo code anticipated, named by its type."""
        return cls(uri, media_id_for(uri), stage, type(err).__name__, str(err) or repr(err))

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {name: getattr(self, name) for name in ERROR_FIELDS}
        if self.stopped_at_s is not None:
            record["stopped_at_s"] = self.stopped_at_s
        return record
