"""The test shard factory writes schema-valid clip shards whose labels the features predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from avemo_core.data import batch_from_columns
from avemo_core.labels import EMOTIONS
from avemo_core.schema import META_CONFIG, clip_schema
from avemo_core.synth.shards import AUDIO_CUED, VISUAL_CUED, ShardSpec, write_clip_shards


def _pooled(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    table = pq.read_table(path)
    columns = {
        name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names
    }
    batch = batch_from_columns(columns)
    audio = (batch.audio * batch.audio_mask[..., None]).sum(1) / batch.audio_mask.sum(1).clamp(
        min=1
    )[:, None]
    visual = batch.visual.flatten(2)  # (B, Tv, H*W)
    visual = (visual * batch.visual_mask[..., None]).sum(1) / batch.visual_mask.sum(1).clamp(min=1)[
        :, None
    ]
    return columns, audio.numpy(), visual.numpy(), batch.labels.numpy()


def test_shards_follow_schema_and_splits(tmp_path: Path) -> None:
    spec = ShardSpec(clips=60, audio_only_share=0.15, visual_only_share=0.15, unlabelled_share=0.1)
    counts = write_clip_shards(tmp_path, spec)
    assert counts == {"train": 36, "valid": 12, "test": 12}
    files = sorted(tmp_path.glob("part-*.parquet"))
    assert len(files) == spec.files
    table = pq.read_table(files)
    assert table.schema.remove_metadata() == clip_schema().remove_metadata()
    assert b"avemo_core.synth.shards" in pq.read_schema(files[0]).metadata[META_CONFIG]
    rows = table.to_pylist()
    assert len({r["clip_id"] for r in rows}) == 60
    assert any(r["has_audio"] and not r["has_visual"] for r in rows)
    assert any(r["has_visual"] and not r["has_audio"] for r in rows)
    assert any(r["happiness"] is None for r in rows)
    for r in rows:
        assert r["has_audio"] == (r["audio_frames"] > 0) == (len(r["audio_features"]) > 0)
        assert len(r["audio_features"]) == r["audio_frames"] * r["audio_dims"] * 2
        assert len(r["visual_features"]) == r["visual_frames"] * 64 * 64


def test_labels_are_learnable_from_each_cued_modality(tmp_path: Path) -> None:
    write_clip_shards(
        tmp_path / "a",
        ShardSpec(clips=300, seed=1, audio_only_share=0, visual_only_share=0, files=1),
    )
    write_clip_shards(
        tmp_path / "b",
        ShardSpec(clips=200, seed=2, audio_only_share=0, visual_only_share=0, files=1),
    )
    _, audio_tr, visual_tr, y_tr = _pooled(tmp_path / "a" / "part-00000.parquet")
    _, audio_te, visual_te, y_te = _pooled(tmp_path / "b" / "part-00000.parquet")
    for features_tr, features_te, cued in (
        (audio_tr, audio_te, AUDIO_CUED),
        (visual_tr, visual_te, VISUAL_CUED),
    ):
        for e, name in enumerate(EMOTIONS):
            clf = LogisticRegression(max_iter=2000).fit(features_tr, y_tr[:, e])
            score = f1_score(y_te[:, e], clf.predict(features_te))
            if name in cued:
                assert score > 0.8, (name, score)
            else:
                assert score < 0.6, (name, score)
