"""The MLflow pyfunc model, logged as code ("models from code"): nothing is pickled.

MLflow stores this file as the model and runs it when the model is loaded; the weights come
from the `checkpoint` artifact (safetensors + avemo.json). Input: a DataFrame of clip-shard rows
(the feature blobs with their shape columns and modality flags). Output, through the same
inference core as the Ray labeller (`avemo_core.inference`): one probability column per condition
and emotion (`prob_av_happiness`, ...; NaN where the condition did not run: the clip lacks a
modality it needs or the model does not serve it), the `tags` over the saved thresholds, the
condition they come from (None when none ran) and the `conditions` that ran.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd

from avemo_core import inference
from avemo_core.checkpoint import load_checkpoint
from avemo_core.data import batch_from_columns
from avemo_core.labels import CONDITIONS
from avemo_core.schema import FEATURE_COLUMNS, prob_column


class AvemoEmotionModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.checkpoint = load_checkpoint(context.artifacts["checkpoint"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """Probabilities per condition the checkpoint serves, and tags from the fullest one."""
        columns = {  # version-1 input has no face flags: all its frames count
            name: model_input[name].to_numpy() for name in FEATURE_COLUMNS if name in model_input
        }
        batch = batch_from_columns(columns)
        checkpoint = self.checkpoint
        result = inference.infer(
            checkpoint.model, batch, checkpoint.conditions, checkpoint.thresholds, checkpoint.labels
        )
        not_run = np.full((len(batch), len(checkpoint.labels)), np.nan, np.float32)  # (B, E)
        out: dict[str, Any] = {}
        for condition in CONDITIONS:
            probs = result.probs.get(condition, not_run)  # (B, E)
            for e, emotion in enumerate(checkpoint.labels):
                out[prob_column(condition, emotion)] = probs[:, e]
        out["tags"] = result.tags
        out["tags_condition"] = result.tags_condition
        out["conditions"] = result.ran
        return pd.DataFrame(out, index=model_input.index)


mlflow.models.set_model(AvemoEmotionModel())
