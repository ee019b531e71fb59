"""The champion gate against a real `mlflow server`: a worse registration keeps the champion, a
better one takes it; champions scored on other data are rescored on the candidate's."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from avemo_core import training
from avemo_core.checkpoint import CONDITIONS_KEY, Checkpoint, save_checkpoint
from avemo_core.colearning import CoLearningConfig, conditions_for_mode
from avemo_core.labels import EMOTIONS
from avemo_core.metrics import ThresholdConfig
from avemo_core.model import CrossModalTransformer, ModelConfig
from avemo_core.schema import FEATURE_COLUMNS
from avemo_core.selection import Selection, selection_score
from avemo_core.synth.shards import ShardSpec, write_clip_shards
from pipelines import tracking
from pipelines.train import datasets, evaluation, registry

# Tuned even on this small split, so the score follows what the model ranks (the 0.5 fallback
# would score an untrained model's "everything present" best).
THRESHOLDS = ThresholdConfig(min_positives=2)


def _train_and_save(
    model: CrossModalTransformer,
    info: datasets.ShardInfo,
    epochs: int,
    out: Path,
    fingerprint: str,
) -> tuple[Path, float]:
    """Train `model` `epochs` more epochs by the plain loop; save it with its real val_score."""
    # A constant rate: each call continues the same model, so more epochs make a better one.
    config = training.TrainConfig(
        epochs=epochs, batch_size=8, warmup_epochs=0, lr_schedule="constant"
    )
    train = datasets.LocalBatches(info, "train", 8)
    valid = datasets.LocalBatches(info, "valid", 8)
    training.fit(model, train, valid, CoLearningConfig(), config, torch.device("cpu"))
    metrics, thresholds = training.validate(
        model,
        valid,
        conditions_for_mode("colearn"),
        torch.device("cpu"),
        THRESHOLDS,
    )
    selection = selection_score("colearn", metrics)
    score = selection.score
    save_checkpoint(
        out,
        Checkpoint(
            model=model,
            model_config=model.config,
            thresholds={c: t.tolist() for c, t in thresholds.items()},
            labels=list(EMOTIONS),
            feature_config=info.feature_config,
            metadata={
                "metrics": {"val_score": score},
                "threshold_config": THRESHOLDS.to_dict(),
                CONDITIONS_KEY: {
                    "trained": ["av", "a", "v"],
                    "validated": sorted(thresholds),
                    "scored": list(selection.conditions),
                },
                "mode": "colearn",
                "data_fingerprint": fingerprint,
            },
        ),
    )
    return out, score


@pytest.fixture(scope="module")
def shard_info(tmp_path_factory: pytest.TempPathFactory) -> datasets.ShardInfo:
    root = tmp_path_factory.mktemp("gate-shards")
    write_clip_shards(
        root, ShardSpec(clips=80, seed=5, audio_frames=(16, 32), visual_frames=(2, 4))
    )
    return datasets.inspect_shards(str(root))


def test_champion_moves_only_to_a_better_model(
    mlflow_uri: str, shard_info: datasets.ShardInfo, tmp_path: Path
) -> None:
    fingerprint = shard_info.fingerprint
    training.seed_everything(0)
    model = CrossModalTransformer(ModelConfig.named("tiny"))
    worse, worse_score = _train_and_save(model, shard_info, 0, tmp_path / "worse", fingerprint)
    first, first_score = _train_and_save(model, shard_info, 1, tmp_path / "first", fingerprint)
    better, better_score = _train_and_save(model, shard_info, 4, tmp_path / "better", "other")
    assert worse_score < first_score < better_score  # the data are learnable, so this holds

    run_id = tracking.start_or_resume_run(mlflow_uri, "test-gate", "gate", None, {"p": 1})
    example = datasets.sample_rows(shard_info, "valid", 2, list(FEATURE_COLUMNS))
    name = "test-gate-model"
    client = tracking.client(mlflow_uri)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first_reg = registry.register(mlflow_uri, name, run_id, first, example)
    assert not [w for w in caught if "integer column" in str(w.message)]  # a quiet console
    assert first_reg.promoted and first_reg.champion_version == first_reg.version
    assert "on av, a, v" in first_reg.gate  # the conditions the score averages

    worse_reg = registry.register(mlflow_uri, name, run_id, worse, example)
    assert not worse_reg.promoted
    assert worse_reg.gate.endswith(f"champion stays v{first_reg.version}")
    assert client.get_model_version_by_alias(name, "champion").version == first_reg.version
    assert client.get_model_version_by_alias(name, "candidate").version == worse_reg.version

    # The new version was scored on other data: the champion is scored again on its data.
    valid = datasets.LocalBatches(shard_info, "valid", 8)
    rescored: list[Path] = []

    def rescore(checkpoint_dir: Path) -> Selection:
        from avemo_core.checkpoint import load_checkpoint

        rescored.append(checkpoint_dir)
        return evaluation.validation_score(load_checkpoint(checkpoint_dir), valid, "colearn")

    better_reg = registry.register(mlflow_uri, name, run_id, better, example, rescore)
    assert len(rescored) == 1 and (rescored[0] / "avemo.json").is_file()
    assert better_reg.promoted and "rescored" in better_reg.gate
    assert f"{first_score:.4f} on av, a, v (rescored" in better_reg.gate  # recomputed, same terms
    assert client.get_model_version_by_alias(name, "champion").version == better_reg.version
    assert client.get_model_version_by_alias(name, "candidate").version == better_reg.version
    version = client.get_model_version(name, better_reg.version)
    assert float(version.tags[registry.SCORE_TAG]) == pytest.approx(better_score)
    assert version.tags[registry.CONDITIONS_TAG] == "av,a,v"
