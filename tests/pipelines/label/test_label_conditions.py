"""A model that lacks a condition labels the same through both doors, the Ray labeller and the
MLflow pyfunc model (one inference core): probabilities and tags only for the conditions it was
trained and validated on, null for the others, and each row says which conditions ran."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from avemo_core.checkpoint import load_checkpoint
from avemo_core.labels import CONDITIONS, EMOTIONS
from avemo_core.schema import FEATURE_COLUMNS, label_schema
from avemo_core.synth.shards import ShardSpec, write_clip_shards
from pipelines.label.run import LabelConfig, run_label
from pipelines.label.store import LabelStore
from pipelines.model_uri import CHECKPOINT_ARTIFACT
from pipelines.train.registry import PYFUNC_CODE, pinned_requirements
from tests.pipelines.label.helpers import check_label_rows, write_checkpoint

# The case: colearn trained and validated on audio-only data; only `a` has thresholds.
AUDIO_ONLY = {"trained": ["a"], "validated": ["a"], "scored": ["a"]}
SPEC = ShardSpec(clips=24, files=2, audio_only_share=0.3, visual_only_share=0.3)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mixed-shards")
    write_clip_shards(root, SPEC)
    return root


def _pyfunc(checkpoint: Path, tmp_path: Path) -> object:
    """The pyfunc model saved as registration logs it (code + checkpoint artifact), loaded back."""
    path = tmp_path / "pyfunc"
    mlflow.pyfunc.save_model(
        str(path),
        python_model=str(PYFUNC_CODE),
        artifacts={CHECKPOINT_ARTIFACT: str(checkpoint)},
        pip_requirements=pinned_requirements(),
    )
    return mlflow.pyfunc.load_model(str(path))


@pytest.mark.usefixtures("ray_cluster")
def test_model_without_av_and_v_labels_alike_through_ray_and_pyfunc(
    shards: Path, tmp_path: Path
) -> None:
    checkpoint = write_checkpoint(tmp_path / "audio-model", conditions=AUDIO_ONLY)
    assert load_checkpoint(checkpoint).conditions == ("a",)
    config = LabelConfig(
        input_uri=str(shards), output_uri=str(tmp_path / "out"), model_uri=str(checkpoint)
    )
    run_label(config, lambda line: None)
    labels = LabelStore(str(tmp_path / "out")).read_labels()
    assert labels.schema.equals(label_schema(), check_metadata=False)
    assert labels.num_rows == SPEC.clips
    check_label_rows(labels, served=("a",))
    visual_only = [
        i for i, m in enumerate(labels.column("modalities").to_pylist()) if m == "visual"
    ]
    assert visual_only, "the spec must make video-only clips"
    for i in visual_only:  # nothing of this model can run there: no tags, not 0.5 guesses
        assert labels.column("tags")[i].as_py() == []
        assert labels.column("tags_condition")[i].as_py() is None
        assert labels.column("conditions")[i].as_py() == []
    for condition in ("av", "v"):
        assert labels.column(f"prob_{condition}_happiness").null_count == labels.num_rows

    # The pyfunc model on the same clips gives the same numbers, tags and conditions.
    rows = pq.read_table(shards, columns=["clip_id", *FEATURE_COLUMNS]).to_pandas()
    out = _pyfunc(checkpoint, tmp_path).predict(rows[list(FEATURE_COLUMNS)])
    ray_rows = labels.to_pandas().set_index("clip_id").loc[rows["clip_id"]]
    for condition in CONDITIONS:
        columns = [f"prob_{condition}_{e}" for e in EMOTIONS]
        got = out[columns].to_numpy(np.float64)
        np.testing.assert_allclose(got, ray_rows[columns].to_numpy(np.float64), atol=1e-6)
    assert [list(t) for t in out["tags"]] == [list(t) for t in ray_rows["tags"]]
    assert [list(c) for c in out["conditions"]] == [list(c) for c in ray_rows["conditions"]]
    pyfunc_from = [c if isinstance(c, str) else None for c in out["tags_condition"]]
    ray_from = [c if isinstance(c, str) else None for c in ray_rows["tags_condition"]]
    assert pyfunc_from == ray_from and None in ray_from


def test_old_checkpoint_serves_every_condition_it_has_thresholds_for(
    shards: Path, tmp_path: Path
) -> None:
    checkpoint = write_checkpoint(tmp_path / "old-model")
    rows = pq.read_table(shards, columns=list(FEATURE_COLUMNS)).to_pandas()
    out = _pyfunc(checkpoint, tmp_path).predict(rows)
    frame = pd.DataFrame({"modalities": _modalities(rows)})
    for column in out.columns:
        frame[column] = out[column]
    check_label_rows(pa.Table.from_pandas(frame, preserve_index=False))
    assert {tuple(c) for c in out["conditions"]} >= {("av", "a", "v"), ("a",), ("v",)}


def _modalities(rows: pd.DataFrame) -> list[str]:
    names = {(True, True): "audio+visual", (True, False): "audio", (False, True): "visual"}
    return [names[(a, v)] for a, v in zip(rows["has_audio"], rows["has_visual"], strict=True)]
