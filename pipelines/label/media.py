"""Media files to clip rows inside the labelling stream: extraction without writing shards.

One Ray Data task per file fetches, probes and decodes it with the extraction code
(`pipelines.extract.media.local_copy`, `avemo_core.media`), and yields its clip rows in small
tables as they are decoded, so memory holds a few clips, not the file. The rows of the last table
carry the file's clip count in `media_clips` (the others 0): that is how the driver knows a file is
complete. A file that fails becomes an `_errors/` record, as in extraction, and yields nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from avemo_core.media.clips import MediaStats
from avemo_core.media.errors import ErrorRecord, MediaError
from avemo_core.media.probe import probe
from pipelines.extract.media import local_copy, worker_state
from pipelines.label.labeller import MEDIA_CLIPS_COLUMN
from pipelines.label.store import LabelStore

# Clip rows per table handed to the next stage.
ROWS_PER_TABLE = 8
# Memory reserved per decoding task (ffmpeg pipes, one clip's samples and frames). Asking for it
# also keeps decoding a task stage of its own instead of being fused into the inference actors.
DECODE_MEMORY_BYTES = 1024**3


def _table(rows: list[dict[str, Any]], schema: pa.Schema, media_clips: int) -> pa.Table:
    table = pa.Table.from_pylist(rows, schema=schema)
    return table.append_column(
        MEDIA_CLIPS_COLUMN, pa.array(np.full(len(rows), media_clips, np.int64))
    )


def media_rows(
    uri: str, setup: Mapping[str, Any], extractor: Any, schema: pa.Schema
) -> Iterator[pa.Table]:
    """Clip-row tables of one file; raises MediaError when it cannot be read or has no clips."""
    stats = MediaStats()
    pending: list[dict[str, Any]] = []
    with local_copy(uri, setup["storage_options"]) as local:
        info = probe(local)
        for row in extractor.rows(local, uri, info, None, stats):
            if len(pending) == ROWS_PER_TABLE:
                yield _table(pending, schema, 0)
                pending = []
            pending.append(row)
    if not pending:
        raise MediaError("decode", "no_clips", f"no clip with audio or video frames in {uri}")
    yield _table(pending, schema, stats.clips)


def clip_tables(batch: dict[str, np.ndarray], setup_json: str) -> Iterator[pa.Table]:
    """Ray Data generator UDF: a batch of one media URI in, its clip-row tables out."""
    extractor, store, schema = worker_state(setup_json, LabelStore)
    setup = json.loads(setup_json)
    for uri in batch["uri"]:
        uri = str(uri)
        try:
            yield from media_rows(uri, setup, extractor, schema)
        except MediaError as err:
            store.write_error(ErrorRecord.of(uri, err).to_dict())
        except Exception as err:  # an unexpected failure of one file must not stop the job
            store.write_error(ErrorRecord.unexpected(uri, "decode", err).to_dict())
