"""The level benchmark scores a labelling run's media table against the corpus labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from avemo_core.labels import EMOTIONS
from bench.level_robustness import score


def test_score_reads_tags_and_probabilities(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    probs = {f"mean_prob_{e}": [0.9 if e == "anger" else 0.1, 0.2] for e in EMOTIONS}
    table = {"source_uri": ["/m/a.flac", "/m/b.flac"], "tags": [["anger"], ["fear"]], **probs}
    pq.write_table(pa.table(table), tmp_path / "media" / "part-0.parquet")
    labels = {"a.flac": np.array([e == "anger" for e in EMOTIONS]), "b.flac": np.zeros(6, bool)}
    result = score(labels, tmp_path)
    assert result["files"] == 2 and result["tags_per_file"] == pytest.approx(1.0)
    # anger: one true positive; fear: one false positive; the rest: no positives, left out
    assert result["f1"] == pytest.approx(1.0)
    assert result["auc"] == pytest.approx(1.0)
