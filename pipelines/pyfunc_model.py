"""The MLflow pyfunc model, logged as code ("models from code"): nothing is pickled.

MLflow stores this file as the model and runs it when the model is loaded; the weights come
from the `checkpoint` artifact (safetensors + avemo.json). Input: a DataFrame of clip-shard rows
(the feature blobs with their shape columns and modality flags). Output: one probability column
per condition and emotion (`prob_av_happiness`, ...; NaN where the clip lacks a modality the
condition needs), the `tags` over the saved thresholds and the condition they come from.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch

from avemo_core.checkpoint import load_checkpoint
from avemo_core.data import batch_from_columns
from avemo_core.labels import CONDITION_MODALITIES, CONDITIONS
from avemo_core.metrics import decide
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
        labels = self.checkpoint.labels
        out: dict[str, Any] = {}
        tags: list[list[str]] = [[] for _ in range(len(batch))]
        tags_from = [""] * len(batch)
        model = self.checkpoint.model.eval()
        with torch.inference_mode():
            for condition in CONDITIONS:
                needs_audio, needs_visual = CONDITION_MODALITIES[condition]
                can = np.ones(len(batch), bool)
                if needs_audio:
                    can &= batch.has_audio.numpy()
                if needs_visual:
                    can &= batch.has_visual.numpy()
                probs = np.full((len(batch), len(labels)), np.nan, np.float32)  # (B, E)
                if condition in self.checkpoint.thresholds and can.any():
                    logits = model(batch, condition)  # (B, E)
                    probs[can] = torch.sigmoid(logits.float()).numpy()[can]
                    chosen = decide(probs[can], np.asarray(self.checkpoint.thresholds[condition]))
                    for i, row in zip(np.flatnonzero(can), chosen, strict=True):
                        if not tags_from[i]:  # av first, then a, then v: the fullest available
                            tags[i] = [labels[e] for e in np.flatnonzero(row)]
                            tags_from[i] = condition
                for e, emotion in enumerate(labels):
                    out[prob_column(condition, emotion)] = probs[:, e]
        out["tags"] = tags
        out["tags_condition"] = tags_from
        return pd.DataFrame(out, index=model_input.index)


mlflow.models.set_model(AvemoEmotionModel())
