"""The labelling output root without Ray: commits, what a killed run leaves and how it is cleaned,
newest-labelling reads, model-version ordering, and the per-media summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from avemo_core.labels import CONDITIONS, EMOTIONS
from avemo_core.schema import LABEL_SCHEMA_VERSION, label_schema, prob_column
from pipelines.label.store import LABELS_DIR, MEDIA_DIR, LabelStore, ModelKey
from pipelines.label.summary import summarise_media


def _labels(media: dict[str, list[tuple[str, list[float]]]], version: str) -> pa.Table:
    """Label rows: media id -> clips as (modalities, fullest-condition probabilities)."""
    rows = []
    for media_id, clips in media.items():
        for k, (modalities, probs) in enumerate(clips):
            condition = {"audio+visual": "av", "audio": "a", "visual": "v"}[modalities]
            row = {
                "clip_id": f"{media_id}-{k}", "media_id": media_id,
                "source_uri": f"/m/{media_id}.mp4",
                "start_s": float(k), "end_s": k + 1.0, "modalities": modalities,
                "tags": [e for e, p in zip(EMOTIONS, probs, strict=True) if p >= 0.5],
                "tags_condition": condition, "model_name": "m", "model_version": version,
                "model_run_id": "r", "schema_version": LABEL_SCHEMA_VERSION,
            }  # fmt: skip
            for c in CONDITIONS:
                for e, emotion in enumerate(EMOTIONS):
                    row[prob_column(c, emotion)] = probs[e] if c == condition else None
            rows.append(row)
    return pa.Table.from_pylist(rows, schema=label_schema())


def test_summary_takes_max_mean_and_union_over_clips() -> None:
    high, low = [0.9, 0.1, 0.6, 0.2, 0.0, 0.3], [0.3, 0.7, 0.2, 0.2, 0.0, 0.1]
    labels = _labels({"x": [("audio", high), ("audio", low)], "y": [("visual", low)]}, "1")
    summary = {row["media_id"]: row for row in summarise_media(labels, 0, {}).to_pylist()}
    x = summary["x"]
    assert (x["modalities"], x["clips"], x["start_s"], x["end_s"]) == ("audio", 2, 0.0, 2.0)
    assert x["tags"] == ["happiness", "sadness", "anger"]
    np.testing.assert_allclose(
        [x[f"max_prob_{e}"] for e in EMOTIONS], np.maximum(high, low), rtol=1e-6
    )
    np.testing.assert_allclose(
        [x[f"mean_prob_{e}"] for e in EMOTIONS], (np.array(high) + np.array(low)) / 2, rtol=1e-6
    )
    assert x["tag_share_happiness"] == 0.5 and x["tag_share_fear"] == 0.0
    assert summary["y"]["tags"] == ["sadness"] and summary["y"]["modalities"] == "visual"


def test_a_label_part_without_its_media_part_is_a_leftover(tmp_path: Path) -> None:
    store = LabelStore(str(tmp_path))
    store.recover()
    first = _labels({"a": [("audio+visual", [0.6] * 6)]}, "1")
    store.commit("20260101T000000Z-aaaa-00000", first, summarise_media(first, 0, {}))
    # A run killed between its two writes leaves a label part only.
    orphan = _labels({"b": [("audio", [0.1] * 6)]}, "1")
    store.files.write_bytes(f"{LABELS_DIR}/part-20260101T000001Z-bbbb-00000.parquet", b"partial")
    (tmp_path / MEDIA_DIR / ".part-x.parquet.tmp-123").write_bytes(b"half-written")
    assert store.labelled_media() == {"a": ModelKey("m", "1")}
    removed = store.recover()
    assert sorted(removed) == [
        f"{LABELS_DIR}/part-20260101T000001Z-bbbb-00000.parquet",
        f"{MEDIA_DIR}/.part-x.parquet.tmp-123",
    ]
    assert store.read_labels().num_rows == 1
    store.commit("20260101T000002Z-cccc-00000", orphan, summarise_media(orphan, 0, {}))
    assert set(store.labelled_media()) == {"a", "b"}


def test_newest_labelling_wins(tmp_path: Path) -> None:
    store = LabelStore(str(tmp_path))
    store.recover()
    old = _labels({"a": [("audio", [0.2] * 6)] * 2, "b": [("visual", [0.2] * 6)]}, "1")
    store.commit("20260101T000000Z-aaaa-00000", old, summarise_media(old, 0, {}))
    new = _labels({"a": [("audio", [0.8] * 6)] * 2}, "2")
    store.commit("20260102T000000Z-bbbb-00000", new, summarise_media(new, 0, {}))
    latest = store.read_labels()
    versions = dict(
        zip(
            latest.column("clip_id").to_pylist(),
            latest.column("model_version").to_pylist(),
            strict=True,
        )
    )
    assert versions == {"a-0": "2", "a-1": "2", "b-0": "1"}
    assert store.read_labels(latest=False).num_rows == 5
    assert store.labelled_media() == {"a": ModelKey("m", "2"), "b": ModelKey("m", "1")}


@pytest.mark.parametrize(
    ("current", "previous", "relabel"),
    [
        (ModelKey("m", "3"), ModelKey("m", "2"), True),  # older version of the same model
        (ModelKey("m", "2"), ModelKey("m", "3"), False),  # never go back to an older one
        (ModelKey("m", "2"), ModelKey("m", "2"), False),
        (ModelKey("m", "1"), ModelKey("other", "5"), True),  # another model: not comparable
        (ModelKey("/ckpt", "sha256:aa"), ModelKey("/ckpt", "sha256:bb"), True),
    ],
)
def test_which_labellings_a_model_supersedes(
    current: ModelKey, previous: ModelKey, relabel: bool
) -> None:
    assert current.supersedes(previous) is relabel
