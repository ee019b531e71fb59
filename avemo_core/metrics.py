"""Multi-label emotion metrics per emotion and averaged: WA, F1, AUC, micro-F1, Jaccard; thresholds.

INTERFACE STUB, owned by the metrics helper: implement, keep the public names.
"""

from __future__ import annotations

import numpy as np


def tune_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, E) probabilities and 0/1 labels -> (E,) per-emotion thresholds chosen on validation data."""
    raise NotImplementedError


def emotion_metrics(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """Flat dict: `wa/<emotion>`, `f1/<emotion>`, `auc/<emotion>`, `wa`, `f1` (macro), `auc`, `micro_f1`, `jaccard`."""
    raise NotImplementedError
