"""The per-media summary of a labelling run: tags over a whole media file from its clips' labels.

For each clip the probabilities of its fullest condition count (av when it has both streams, else
the one it has). Per emotion the table holds the max and mean of those over the file's clips and
the share of clips tagged with it; the file's `tags` are the emotions tagged in at least one clip.
One row per media file and labelling, so it is also the record of what a run has finished.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from avemo_core.labels import CONDITIONS, EMOTIONS
from avemo_core.schema import MEDIA_SCHEMA_VERSION, media_schema, prob_column


def fullest_probabilities(labels: pa.Table) -> np.ndarray:
    """(N, E) probabilities of each clip's `tags_condition`."""
    condition = np.asarray(labels.column("tags_condition").to_pylist())  # (N,)
    out = np.full((labels.num_rows, len(EMOTIONS)), np.nan, np.float32)  # (N, E)
    for c in CONDITIONS:
        rows = condition == c
        if rows.any():
            probs = np.stack(
                [labels.column(prob_column(c, e)).to_numpy(zero_copy_only=False) for e in EMOTIONS],
                axis=1,
            )  # (N, E)
            out[rows] = probs[rows]
    return out


def _media_modalities(modalities: list[str]) -> str:
    has_audio = any(m in ("audio+visual", "audio") for m in modalities)
    has_visual = any(m in ("audio+visual", "visual") for m in modalities)
    return "audio+visual" if has_audio and has_visual else "audio" if has_audio else "visual"


def summarise_media(labels: pa.Table, labelled_at_s: int, config: dict[str, Any]) -> pa.Table:
    """One summary row per media file in `labels` (all of each file's clips must be present)."""
    probs = fullest_probabilities(labels)  # (N, E)
    tagged = np.array(
        [[e in tags for e in EMOTIONS] for tags in labels.column("tags").to_pylist()], dtype=bool
    ).reshape(labels.num_rows, len(EMOTIONS))  # (N, E)
    media_ids = labels.column("media_id").to_pylist()
    order: dict[str, list[int]] = {}
    for i, media_id in enumerate(media_ids):
        order.setdefault(media_id, []).append(i)
    column = {name: labels.column(name).to_pylist() for name in ("source_uri", "modalities")}
    starts = labels.column("start_s").to_numpy()
    ends = labels.column("end_s").to_numpy()
    rows = []
    for media_id, index in order.items():
        first = index[0]
        row: dict[str, Any] = {
            "media_id": media_id,
            "source_uri": column["source_uri"][first],
            "modalities": _media_modalities([column["modalities"][i] for i in index]),
            "clips": len(index),
            "start_s": float(starts[index].min()),
            "end_s": float(ends[index].max()),
        }
        for e, emotion in enumerate(EMOTIONS):
            row[f"max_prob_{emotion}"] = float(probs[index, e].max())
            row[f"mean_prob_{emotion}"] = float(probs[index, e].mean())
            row[f"tag_share_{emotion}"] = float(tagged[index, e].mean())
        row["tags"] = [emotion for e, emotion in enumerate(EMOTIONS) if tagged[index, e].any()]
        for key in ("model_name", "model_version", "model_run_id"):
            row[key] = labels.column(key)[first].as_py()
        row["labelled_at"] = labelled_at_s
        row["schema_version"] = MEDIA_SCHEMA_VERSION
        rows.append(row)
    table = pa.Table.from_pylist(rows, schema=media_schema(config).remove_metadata())
    return table.replace_schema_metadata(media_schema(config).metadata)
