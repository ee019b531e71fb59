"""Checkpoints: exact round-trip, atomic writes, strict validation, and pickle payloads refused."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from avemo_core.checkpoint import (
    CONDITIONS_KEY,
    FORMAT_VERSION,
    META_FILE,
    WEIGHTS_FILE,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    served_conditions,
)
from avemo_core.data import Batch, collate
from avemo_core.labels import CONDITIONS, EMOTIONS
from avemo_core.model import CrossModalTransformer, ModelConfig


def make_checkpoint(seed: int = 0, epoch: int = 3) -> Checkpoint:
    torch.manual_seed(seed)
    config = ModelConfig.named("tiny")
    rng = np.random.default_rng(seed)
    return Checkpoint(
        model=CrossModalTransformer(config).eval(),
        model_config=config,
        thresholds={c: rng.uniform(0.1, 0.9, config.num_labels).tolist() for c in CONDITIONS},
        labels=list(EMOTIONS),
        feature_config={"sample_rate_hz": 16000, "n_mels": 80, "fps": 5.0},
        metadata={"epoch": epoch, "metrics": {"av/f1": np.float32(0.25)}, "mode": "colearn"},
    )


def make_batch(config: ModelConfig) -> Batch:
    rng = np.random.default_rng(1)
    audio = [rng.standard_normal((n, config.audio_dims)).astype(np.float16) for n in (40, 25)]
    px = config.visual_px
    visual = [rng.integers(0, 256, (n, px, px), np.uint8) for n in (6, 3)]
    return collate(audio, visual, np.zeros((2, config.num_labels), np.float32))


def outputs(model: CrossModalTransformer, batch: Batch) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        return {c: model(batch, condition=c) for c in CONDITIONS}


def test_round_trip_restores_weights_outputs_and_configs(tmp_path: Path) -> None:
    original = make_checkpoint()
    path = save_checkpoint(tmp_path / "ckpt", original)
    assert sorted(p.name for p in path.iterdir()) == sorted([META_FILE, WEIGHTS_FILE])
    loaded = load_checkpoint(path)
    assert not loaded.model.training
    assert loaded.model_config == original.model_config
    assert loaded.labels == list(EMOTIONS)
    assert loaded.thresholds == original.thresholds
    assert loaded.feature_config == original.feature_config
    assert loaded.metadata == {"epoch": 3, "metrics": {"av/f1": 0.25}, "mode": "colearn"}
    want = original.model.state_dict()
    got = loaded.model.state_dict()
    assert want.keys() == got.keys()
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor), name
    batch = make_batch(original.model_config)
    for condition, logits in outputs(original.model, batch).items():
        assert torch.equal(outputs(loaded.model, batch)[condition], logits), condition


def test_weights_saved_before_the_front_end_choice_still_load(tmp_path: Path) -> None:
    """Checkpoints of earlier releases hold the conv1d layers at `audio_front.conv1`/`conv2`."""
    from safetensors.torch import load_file, save_file

    original = make_checkpoint()
    path = save_checkpoint(tmp_path / "ckpt", original)
    weights = load_file(path / WEIGHTS_FILE)
    old_names = {
        name.replace("audio_front.subsample.", "audio_front."): tensor
        for name, tensor in weights.items()
    }
    assert "audio_front.conv1.weight" in old_names
    save_file(old_names, path / WEIGHTS_FILE)
    loaded = load_checkpoint(path)
    batch = make_batch(original.model_config)
    for condition, logits in outputs(original.model, batch).items():
        assert torch.equal(outputs(loaded.model, batch)[condition], logits), condition


def refuse_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def test_files_are_plain_json_and_safetensors(tmp_path: Path) -> None:
    original = make_checkpoint()
    original.metadata = {"metrics": {"auc": float("nan"), "f1": np.float64(0.5)}, "steps": (1, 2)}
    path = save_checkpoint(tmp_path / "ckpt", original)
    meta = json.loads((path / META_FILE).read_text(), parse_constant=refuse_constant)
    assert meta["metadata"] == {"metrics": {"auc": None, "f1": 0.5}, "steps": [1, 2]}
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["model_config"] == original.model_config.to_dict()
    assert meta["labels"] == list(EMOTIONS)
    with safe_open(str(path / WEIGHTS_FILE), framework="pt") as weights:
        names = set(weights.keys())
    assert names and names <= set(original.model.state_dict())


def test_non_contiguous_weights_are_saved(tmp_path: Path) -> None:
    original = make_checkpoint()
    name, param = next((n, p) for n, p in original.model.named_parameters() if p.ndim == 2)
    param.data = param.data.t().contiguous().t()  # same values, transposed memory layout
    assert not param.is_contiguous()
    loaded = load_checkpoint(save_checkpoint(tmp_path / "ckpt", original))
    assert torch.equal(loaded.model.state_dict()[name], param.data)


def test_failed_save_leaves_nothing_behind(tmp_path: Path) -> None:
    bad = make_checkpoint()
    bad.metadata = {"not json": object()}  # fails after the weights are written
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "ckpt", bad)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_is_all_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    save_checkpoint(target, make_checkpoint(seed=0, epoch=1))
    bad = make_checkpoint(seed=1, epoch=2)
    bad.metadata = {"not json": object()}
    with pytest.raises(TypeError):
        save_checkpoint(target, bad)
    assert load_checkpoint(target).metadata["epoch"] == 1  # the old checkpoint is intact
    newer = make_checkpoint(seed=2, epoch=5)
    save_checkpoint(target, newer)
    loaded = load_checkpoint(target)
    assert loaded.metadata["epoch"] == 5
    name, tensor = next(iter(newer.model.state_dict().items()))
    assert torch.equal(loaded.model.state_dict()[name], tensor)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no staging or old copies left


def test_save_refuses_labels_or_thresholds_that_do_not_fit(tmp_path: Path) -> None:
    bad = make_checkpoint()
    bad.labels = list(EMOTIONS[:5])
    with pytest.raises(CheckpointError, match="labels"):
        save_checkpoint(tmp_path / "a", bad)
    bad = make_checkpoint()
    bad.thresholds = {"av": [0.5] * 3}
    with pytest.raises(CheckpointError, match="thresholds"):
        save_checkpoint(tmp_path / "b", bad)
    bad = make_checkpoint()
    bad.thresholds = {"audio-only": [0.5] * len(EMOTIONS)}
    with pytest.raises(CheckpointError, match="conditions"):
        save_checkpoint(tmp_path / "c", bad)
    assert list(tmp_path.iterdir()) == []


def edit_meta(path: Path, **changes: object) -> None:
    meta = json.loads((path / META_FILE).read_text())
    meta.update(changes)
    (path / META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": 99}, "format version 99"),
        ({"labels": ["happiness", "happiness", "anger", "fear", "disgust", "surprise"]}, "labels"),
        ({"labels": list(EMOTIONS) + ["boredom"]}, "labels"),
        ({"thresholds": {"av": [0.5, "x", 0.5, 0.5, 0.5, 0.5]}}, "thresholds"),
        ({"thresholds": {"av": [0.5] * 6, "a": None}}, "thresholds"),
    ],
)
def test_load_validates_the_json(tmp_path: Path, changes: dict, message: str) -> None:
    path = save_checkpoint(tmp_path / "ckpt", make_checkpoint())
    edit_meta(path, **changes)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_load_refuses_a_config_that_does_not_fit_the_weights(tmp_path: Path) -> None:
    original = make_checkpoint()
    path = save_checkpoint(tmp_path / "ckpt", original)
    config = original.model_config.to_dict()
    edit_meta(path, model_config={**config, "d_model": config["d_model"] * 2})
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path)
    edit_meta(path, model_config={**config, "d_modle": 8})
    with pytest.raises(CheckpointError, match="bad model_config"):
        load_checkpoint(path)


def test_missing_pieces_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not an avemo checkpoint"):
        load_checkpoint(tmp_path / "nowhere")
    path = save_checkpoint(tmp_path / "ckpt", make_checkpoint())
    (path / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(path)


class MarkerPayload:
    """Unpickling this object creates a directory: proof that the pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.marker),))


def test_payloads_are_live(tmp_path: Path) -> None:
    """Control: these payloads do run when unpickled, so the refusals below mean something."""
    pickle.loads(pickle.dumps(MarkerPayload(tmp_path / "ran-pickle")))
    torch.save({"w": MarkerPayload(tmp_path / "ran-torch")}, tmp_path / "p.pt")
    torch.load(tmp_path / "p.pt", weights_only=False)
    assert (tmp_path / "ran-pickle").is_dir() and (tmp_path / "ran-torch").is_dir()


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_pickle_payload_as_weights_is_refused_not_executed(tmp_path: Path, kind: str) -> None:
    path = save_checkpoint(tmp_path / "ckpt", make_checkpoint())
    marker = tmp_path / "executed"
    payload = {"encoder.weight": MarkerPayload(marker)}
    if kind == "pickle":
        (path / WEIGHTS_FILE).write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(path)
    assert not marker.exists()


def test_pickled_torch_weights_beside_the_json_are_never_loaded(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ckpt", make_checkpoint())
    marker = tmp_path / "executed"
    (path / WEIGHTS_FILE).unlink()
    torch.save({"encoder.weight": MarkerPayload(marker)}, path / "model.pt")
    with pytest.raises(CheckpointError, match=f"{WEIGHTS_FILE} is missing"):
        load_checkpoint(path)
    assert not marker.exists()


def test_pickle_as_json_is_refused_not_executed(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ckpt", make_checkpoint())
    marker = tmp_path / "executed"
    (path / META_FILE).write_bytes(pickle.dumps(MarkerPayload(marker)))
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)
    assert not marker.exists()


def test_conditions_round_trip_and_decide_what_is_served(tmp_path: Path) -> None:
    original = make_checkpoint()
    # Colearn on audio-only training data, validated on data with video too: the visual branch
    # was never trained, so av and v are not served even though thresholds were tuned for them.
    recorded = {"trained": ["a"], "validated": ["av", "a", "v"], "scored": ["a"]}
    original.metadata = {**original.metadata, CONDITIONS_KEY: recorded}
    loaded = load_checkpoint(save_checkpoint(tmp_path / "audio", original))
    assert loaded.metadata[CONDITIONS_KEY] == recorded
    assert loaded.conditions == ("a",)
    # A conventional av model feeds both modalities in training: all validated conditions serve.
    av = {"trained": ["av"], "validated": ["av", "a", "v"], "scored": ["av"]}
    assert served_conditions({CONDITIONS_KEY: av}, original.thresholds) == ("av", "a", "v")
    only_a = {CONDITIONS_KEY: {"trained": ["av", "a", "v"], "validated": ["a"]}}
    assert served_conditions(only_a, original.thresholds) == ("a",)


def test_old_checkpoint_without_conditions_serves_its_thresholds(tmp_path: Path) -> None:
    original = make_checkpoint()
    original.thresholds = {"a": original.thresholds["a"]}
    assert CONDITIONS_KEY not in original.metadata
    loaded = load_checkpoint(save_checkpoint(tmp_path / "old", original))
    assert loaded.conditions == ("a",)


def test_validated_conditions_need_thresholds(tmp_path: Path) -> None:
    original = make_checkpoint()
    original.thresholds = {"a": original.thresholds["a"]}
    original.metadata = {CONDITIONS_KEY: {"trained": ["a"], "validated": ["a", "v"]}}
    with pytest.raises(CheckpointError, match=r"\['v'\] have no thresholds"):
        save_checkpoint(tmp_path / "bad", original)
    original.metadata = {CONDITIONS_KEY: {"trained": ["x"]}}
    with pytest.raises(CheckpointError, match="lists of"):
        save_checkpoint(tmp_path / "bad", original)
