"""The paper's claim as an experiment: train every model of the grid through the real training path
(Ray Train, MLflow), evaluate each on every test condition it can take, and keep one record per run.

The grid is the four modes (`audio`, `visual`, conventional `av`, `colearn`) and two ablations
(co-learning without the transfer terms; `av` with random modality dropout), each for every seed,
all with the same model size, data, epochs and optimiser settings. Thresholds and the best epoch
come from the validation split (the training path keeps them with the checkpoint); the test split
is read only here, once per model and condition.

The conventional `av` model is also scored the way the paper scores it (`av-zerofill`): on
single-modal input its missing modality is filled with zeros and marked present, and the model
runs its audio+visual path on that (`zero_filled`). The model itself never needs this (it skips an
absent stream); the fill is a data-side transform of the same checkpoints, evaluated here only.

Each finished run is saved as `runs/<variant>-seed<N>.json` under the output folder, so a rerun of
the same command does only the runs that are missing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avemo_core import metrics, training
from avemo_core.checkpoint import Checkpoint, load_checkpoint
from avemo_core.colearning import CoLearningConfig, conditions_for_mode
from avemo_core.config import FrozenConfig, require
from avemo_core.data import Batch
from avemo_core.labels import CONDITION_MODALITIES
from avemo_core.model import CrossModalTransformer, ModelConfig
from avemo_core.synth.config import SynthConfig
from avemo_core.synth.corpus import MANIFEST_NAME, write_corpus
from avemo_core.training import TrainConfig
from pipelines import tracking
from pipelines.extract.compact import compact_shards
from pipelines.extract.run import ExtractConfig, run_extract
from pipelines.extract.shards import SUCCESS_FILE
from pipelines.ray_session import ensure_ray
from pipelines.train import evaluation
from pipelines.train import run as train
from pipelines.train.datasets import LocalBatches, inspect_shards

Log = Callable[[str], None]
# The models the claim is about; the other variants are ablations.
CORE = ("audio", "visual", "av", "colearn")
# Rows that re-evaluate another variant's checkpoints: name -> (that variant, what it does).
ZERO_FILL = "av-zerofill"
EVALUATED = {
    ZERO_FILL: (
        "av",
        "the `av` checkpoints given zeros for the missing modality, marked present (the paper's "
        "conventional model); not trained separately",
    )
}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One model of the grid: a row of the results table."""

    name: str  # row label
    description: str  # how it is trained, for the page
    colearning: CoLearningConfig  # mode and loss weights

    @property
    def conditions(self) -> tuple[str, ...]:
        return conditions_for_mode(self.colearning.mode)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig(FrozenConfig):
    name: str = "paper-claim"  # MLflow experiment name; every run is tagged with it
    clips: int = 1000  # labelled segments of the synthetic corpus
    corpus_seed: int = 0  # seed of the synthetic corpus
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds; every variant runs once per seed
    model_size: str = "tiny"  # ModelConfig.named size, the same for every variant
    epochs: int = 12  # training epochs, the same for every variant (best epoch by validation)
    batch_size: int = 16  # clips per step per worker
    lr: float = 1e-3  # AdamW learning rate, the same for every variant
    workers: int = 1  # Ray Train workers per run
    transfer_to_single: float = 1.0  # co-learning's KD weight av -> a, v
    transfer_to_av: float = 0.5  # co-learning's KD weight a, v -> av
    temperature: float = 2.0  # soft-target temperature of both KD terms
    modality_dropout: float = 0.5  # ablation: share of av samples with one modality dropped

    def validate(self) -> None:
        require(bool(self.name), "name is required")
        require(self.clips >= 12, "clips must be >= 12 (three splits by speaker)")
        require(len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds), "seeds: distinct")
        require(self.epochs >= 1, "epochs must be >= 1")
        require(self.workers >= 1, "workers must be >= 1")
        require(0.0 < self.modality_dropout <= 1.0, "modality_dropout must be in (0, 1]")

    def variants(self) -> tuple[Variant, ...]:
        """The grid's models, in table order."""
        colearn = CoLearningConfig(
            mode="colearn",
            transfer_to_single=self.transfer_to_single,
            transfer_to_av=self.transfer_to_av,
            temperature=self.temperature,
        )
        return (
            Variant("audio", "single-modal: audio only", CoLearningConfig(mode="audio")),
            Variant("visual", "single-modal: visual only", CoLearningConfig(mode="visual")),
            Variant("av", "conventional: audio+visual pairs only", CoLearningConfig(mode="av")),
            Variant(
                "av-dropout",
                f"conventional + random modality dropout (p={self.modality_dropout:g}; ablation)",
                CoLearningConfig(mode="av", modality_dropout=self.modality_dropout),
            ),
            Variant(
                "colearn",
                f"interactive co-learning (KD to single {self.transfer_to_single:g}, to av "
                f"{self.transfer_to_av:g}, T={self.temperature:g})",
                colearn,
            ),
            Variant(
                "colearn-views-only",
                "co-learning without transfer terms: av, a, v BCE only (ablation)",
                colearn.replace(transfer_to_single=0.0, transfer_to_av=0.0),
            ),
        )


def run_path(out_dir: Path, variant: str, seed: int) -> Path:
    return out_dir / "runs" / f"{variant}-seed{seed}.json"


def run_one(
    config: ExperimentConfig,
    variant: Variant,
    seed: int,
    shards: str,
    out_dir: Path,
    tracking_uri: str,
    test: Iterable[Batch],
) -> dict[str, Any]:
    """Train one model of the grid through Ray Train + MLflow, evaluate it on the test split, and
    save its record; returns the record."""
    run_name = f"{config.name}-{variant.name}-seed{seed}"
    settings = train.RunSettings(
        data_uri=shards,
        run_name=run_name,
        storage_uri=str((out_dir / "ray").resolve()),
        workers=config.workers,
        tracking_uri=tracking_uri,
        experiment=config.name,
        resume=(out_dir / "ray" / run_name / train.RUN_FILE).exists(),
    )
    began = time.perf_counter()
    outcome = train.run_training(
        settings,
        ModelConfig.named(config.model_size),
        TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=seed),
        variant.colearning,
    )
    train_s = time.perf_counter() - began
    best = load_checkpoint(outcome.checkpoint_dir)
    tags = {"experiment": config.name, "variant": variant.name, "seed": str(seed)}
    tags["mode"] = variant.colearning.mode
    mlflow_client = tracking.client(tracking_uri)
    for key, value in tags.items():
        mlflow_client.set_tag(outcome.run_id, f"avemo.{key}", value)
    record = {
        "variant": variant.name,
        "seed": seed,
        "mode": variant.colearning.mode,
        "colearning": variant.colearning.to_dict(),
        "mlflow_run_id": outcome.run_id,
        "checkpoint": outcome.checkpoint_dir,
        "train_s": train_s,
        "epochs": outcome.epochs,
        "best_epoch": int(best.metadata["epoch"]),
        "val_score": outcome.score,
        "valid": {
            c: {m: outcome.metrics.get(f"valid/{c}/{m}") for m in ("f1", "wa", "auc")}
            for c in variant.conditions
        },
        "test": evaluation.evaluate(best, test),
    }
    if variant.colearning.mode == "av":
        # A conventional model knows only paired input: how it scores when nobody recalibrates
        # its thresholds for a missing modality (its av thresholds on every condition).
        uncalibrated = dataclasses.replace(
            best, thresholds={c: best.thresholds["av"] for c in variant.conditions}
        )
        record["test_av_thresholds"] = evaluation.evaluate(uncalibrated, test)
        record.update(zero_fill_scores(best, valid_batches(shards), test))
    path = run_path(out_dir, variant.name, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def valid_batches(shards: str) -> LocalBatches:
    return LocalBatches(inspect_shards(shards), "valid", batch_size=32)


def zero_filled(batch: Batch, condition: str, audio_hop_s: float, visual_fps: float) -> Batch:
    """`batch` as a conventional model is fed `condition` (`a` or `v`) in the usual practice for
    models trained on pairs only: on every row with the kept modality, the other one is replaced by
    zeros over the clip's duration and marked present, so the audio+visual path runs on it.

    Zeros are the model's raw inputs (log-mel 0, black face crops), as a data loader would pad
    them; rows without the kept modality are left as they are (they cannot form `condition`).
    """
    if condition not in ("a", "v"):
        raise ValueError(
            f"zero fill replaces one modality: condition 'a' or 'v', not {condition!r}"
        )
    if condition == "a":
        rows = batch.has_audio  # (B,)
        seconds = batch.audio_mask.sum(dim=1) * audio_hop_s  # (B,)
        frames = torch.ceil(seconds * visual_fps - 1e-6).clamp(min=1).long() * rows  # (B,)
        own = (batch.visual_mask.sum(dim=1) * ~rows).max()  # longest video a row keeps
        steps = max(int(frames.max()), int(own), 1)
        fill_mask = torch.arange(steps)[None, :] < frames[:, None]  # (B, Tv') prefix masks
        visual = batch.visual[:, :steps]  # (B, <=Tv', H, W), padded below to Tv'
        if visual.shape[1] < steps:
            pad = visual.new_zeros(len(batch), steps - visual.shape[1], *visual.shape[2:])
            visual = torch.cat([visual, pad], dim=1)  # (B, Tv', H, W)
        kept = ~rows[:, None]  # (B, 1): rows without audio keep their own video
        visual = torch.where(kept[..., None, None], visual, torch.zeros_like(visual))
        mask = torch.where(kept, _fit(batch.visual_mask, steps), fill_mask)  # (B, Tv')
        return dataclasses.replace(batch, visual=visual, visual_mask=mask)
    rows = batch.has_visual  # (B,)
    seconds = batch.visual_mask.sum(dim=1) / visual_fps  # (B,)
    frames = torch.round(seconds / audio_hop_s).clamp(min=1).long() * rows  # (B,)
    own = (batch.audio_mask.sum(dim=1) * ~rows).max()  # longest audio a row keeps
    steps = max(int(frames.max()), int(own), 1)
    fill_mask = torch.arange(steps)[None, :] < frames[:, None]  # (B, Ta') prefix masks
    audio = batch.audio[:, :steps]  # (B, <=Ta', F)
    if audio.shape[1] < steps:
        pad = audio.new_zeros(len(batch), steps - audio.shape[1], audio.shape[2])
        audio = torch.cat([audio, pad], dim=1)  # (B, Ta', F)
    kept = ~rows[:, None]  # (B, 1): rows without video keep their own audio
    audio = torch.where(kept[..., None], audio, torch.zeros_like(audio))
    mask = torch.where(kept, _fit(batch.audio_mask, steps), fill_mask)  # (B, Ta')
    return dataclasses.replace(batch, audio=audio, audio_mask=mask)


def _fit(mask: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) mask cut or padded with False to (B, steps)."""
    if mask.shape[1] >= steps:
        return mask[:, :steps]
    return torch.cat([mask, mask.new_zeros(mask.shape[0], steps - mask.shape[1])], dim=1)


def zero_fill_scores(
    checkpoint: Checkpoint, valid: Iterable[Batch], test: Iterable[Batch]
) -> dict[str, dict[str, dict[str, float]]]:
    """Test metrics of a conventional checkpoint on single-modal input filled with zeros
    (`zero_filled`), under `test_zerofill` with thresholds tuned on validation data filled the same
    way (by the checkpoint's own rule, as every row of the table is tuned), and under
    `test_zerofill_av_thresholds` with its audio+visual thresholds, as a model that never saw
    single-modal validation data would be deployed."""
    model, cpu = checkpoint.model, torch.device("cpu")
    hop_s, fps = checkpoint.model_config.audio_hop_s, checkpoint.model_config.visual_fps
    rule = checkpoint.metadata.get("threshold_config")
    rule = metrics.ThresholdConfig.from_dict(rule) if rule else None
    av_cut = np.asarray(checkpoint.thresholds["av"])
    tuned: dict[str, dict[str, float]] = {}
    fixed: dict[str, dict[str, float]] = {}
    for condition in ("a", "v"):
        filled_valid = (zero_filled(b, condition, hop_s, fps) for b in valid)
        probs, labels = training.predict(model, filled_valid, ["av"], cpu)["av"]
        if len(probs) == 0:
            continue
        cut = metrics.tune_thresholds(probs, labels, rule)
        filled_test = (zero_filled(b, condition, hop_s, fps) for b in test)
        probs, labels = training.predict(model, filled_test, ["av"], cpu)["av"]
        if len(probs) == 0:
            continue
        samples = {"samples": float(len(probs))}
        names = checkpoint.labels
        tuned[condition] = {**metrics.emotion_metrics(probs, labels, cut, names), **samples}
        fixed[condition] = {**metrics.emotion_metrics(probs, labels, av_cut, names), **samples}
    return {"test_zerofill": tuned, "test_zerofill_av_thresholds": fixed}


def evaluated_runs(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `av-zerofill` rows from the `av` records: audio+visual input needs no fill, so its
    cell is the `av` model's own; single-modal cells are the zero-filled scores."""
    out = []
    for record in records:
        if record["variant"] != EVALUATED[ZERO_FILL][0] or "test_zerofill" not in record:
            continue
        own = {c: s for c, s in record["test"].items() if c == "av"}
        own_fixed = {c: s for c, s in record.get("test_av_thresholds", {}).items() if c == "av"}
        out.append(
            {
                "variant": ZERO_FILL,
                "seed": record["seed"],
                "mode": record["mode"],
                "evaluates": record["variant"],
                "mlflow_run_id": record.get("mlflow_run_id"),
                "train_s": record.get("train_s"),
                "test": {**own, **record["test_zerofill"]},
                "test_av_thresholds": {**own_fixed, **record["test_zerofill_av_thresholds"]},
            }
        )
    return out


def backfill_zero_fill(out_dir: Path, shards: str, test: Iterable[Batch], log: Log) -> None:
    """Add the zero-fill scores to saved `av` records that lack them (saved before the scores
    existed), from their checkpoints; a record whose checkpoint is gone is left as it is."""
    for path in sorted((out_dir / "runs").glob(f"{EVALUATED[ZERO_FILL][0]}-seed*.json")):
        record = json.loads(path.read_text())
        checkpoint = Path(record.get("checkpoint") or "")
        if "test_zerofill" in record or not checkpoint.is_dir():
            continue
        log(f"experiment: zero-fill scores for {path.stem}")
        record.update(zero_fill_scores(load_checkpoint(checkpoint), valid_batches(shards), test))
        path.write_text(json.dumps(record, indent=2) + "\n")


def prepare_corpus(config: ExperimentConfig, out_dir: Path, log: Log = print) -> dict[str, Any]:
    """`avemo synth` then `avemo extract` into out_dir (each skipped or resumed when done already);
    returns what the page says about the corpus, with the shards' path under `shards`."""
    corpus_dir, shards = out_dir / "corpus", out_dir / "shards"
    synth_config = SynthConfig(clips=config.clips, seed=config.corpus_seed)
    corpus_json = corpus_dir / "corpus.json"
    done = (corpus_dir / MANIFEST_NAME).exists() and corpus_json.exists()
    # Compared as configs, so a field added since (at its default) does not remake the corpus.
    fresh = not done or SynthConfig.from_dict(json.loads(corpus_json.read_text())["config"]) != (
        synth_config
    )
    if fresh:
        log(f"experiment: synthesising {config.clips} clips into {corpus_dir}")
        write_corpus(corpus_dir, synth_config, progress=log, workers=2)
    success = shards / SUCCESS_FILE
    if not fresh and success.exists():
        # A complete extraction of this corpus: its shards (and their metadata) are the data.
        extract = json.loads(success.read_text())
        log(f"experiment: using the extracted shards in {shards}")
    else:
        extract = run_extract(
            ExtractConfig(
                input_uri=str(corpus_dir / "media"),
                output_uri=str(shards),
                manifest_uri=str(corpus_dir / MANIFEST_NAME),
            ),
            log=log,
        )
    corpus = json.loads(corpus_json.read_text())
    info = inspect_shards(str(shards))
    compact = compact_shards(shards, out_dir / "shards-compact")
    return {
        "shards": str(compact),
        "compacted_files": len(inspect_shards(str(compact)).files),
        "synth_command": f"avemo synth DIR --clips {config.clips} --seed {config.corpus_seed}",
        "files": len(corpus.get("files", [])),
        "clips_per_split": info.counts,
        "media_hours": extract["summary"].get("media_hours_total"),
        "extract_errors": len(extract["summary"].get("errors", [])),
        "feature_config": info.feature_config,
        "fingerprint": info.fingerprint,
    }


def all_present_f1(shards: str) -> dict[str, float]:
    """Per condition, the test macro-F1 of deciding every emotion present: the floor a model must
    beat before its F1 means anything (WA and AUC have 0.5 for that)."""
    test = LocalBatches(inspect_shards(shards), "test", batch_size=256)
    out = {}
    for condition, (needs_audio, needs_visual) in CONDITION_MODALITIES.items():
        labels = [
            b.labels[
                b.label_known
                & (b.has_audio if needs_audio else True)
                & (b.has_visual if needs_visual else True)
            ]
            for b in test
        ]
        rate = torch.cat(labels).mean(dim=0)  # (E,) share of clips with each emotion
        out[condition] = float((2 * rate / (1 + rate)).mean())
    return out


def run_experiment(
    config: ExperimentConfig,
    out_dir: str | Path,
    tracking_uri: str | None = None,
    log: Log = print,
    deadline_s: float | None = None,
    reverse: bool = False,
    only: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Prepare the corpus, run every (seed, variant) not yet saved, and return the results dict
    the report module turns into the page. The four modes run for every seed before the ablations,
    so a deadline (seconds of wall time for the whole call; no run starts after it) cuts ablations
    first; what it cuts is listed as missing. Two drivers may share one output folder and split
    the grid (the second with `reverse`): each run is claimed before it starts. With `only` (variant
    names), just those variants run, in that order and each for every seed before the next; the
    results still hold every finished run in the folder."""
    import ray

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    began, started_utc = time.monotonic(), _utc_now()
    uri = tracking.resolve_tracking_uri(tracking_uri or str(out / "mlflow.db"))
    if not ray.is_initialized():
        # Logical CPUs beyond the cores, so train workers and Ray Data readers fit together.
        ensure_ray(
            None,
            max(4, config.workers + 2),
            RuntimeError,
            dashboard=True,
            object_store_memory=1 << 30,  # batches are small; leaves room for a second driver
        )
    corpus = prepare_corpus(config, out, log)
    test = LocalBatches(inspect_shards(corpus["shards"]), "test", batch_size=32)
    missing = []
    # The four modes for every seed first, then the ablations: a deadline cuts ablations first.
    variants = config.variants()
    if only is not None:
        by_name = {v.name: v for v in variants}
        unknown = sorted(set(only) - set(by_name))
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; choose from {sorted(by_name)}")
        order = [(seed, by_name[name]) for name in only for seed in config.seeds]
    else:
        order = [
            (seed, v)
            for core in (True, False)
            for seed in config.seeds
            for v in variants
            if (v.name in CORE) == core
        ]
    if reverse:
        order.reverse()
    for seed, variant in order:
        path = run_path(out, variant.name, seed)
        if path.exists():
            continue
        if deadline_s is not None and time.monotonic() - began > deadline_s:
            missing.append({"variant": variant.name, "seed": seed, "reason": "deadline passed"})
            continue
        if not _claim(path):
            log(f"experiment: {variant.name} seed {seed} is another driver's")
            continue
        log(f"experiment: training {variant.name} seed {seed}")
        try:
            record = run_one(config, variant, seed, corpus["shards"], out, uri, test)
        except Exception as err:  # one failed run is reported, the grid goes on
            log(f"experiment: {variant.name} seed {seed} failed: {err!r}")
            missing.append({"variant": variant.name, "seed": seed, "reason": repr(err)[:300]})
            continue
        f1 = ", ".join(f"{c} {s['f1']:.3f}" for c, s in record["test"].items())
        log(f"experiment: {variant.name} seed {seed}: test F1 {f1} ({record['train_s']:.0f} s)")
    backfill_zero_fill(out, corpus["shards"], test, log)
    # Every finished run in the folder, also those another driver ran beside this one.
    grid = {(v.name, seed) for v in variants for seed in config.seeds}
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    runs = [r for r in runs if (r["variant"], r["seed"]) in grid]
    runs += evaluated_runs(runs)
    model_config = ModelConfig.named(config.model_size)
    return {
        "experiment": config.name,
        "config": config.to_dict(),
        "seeds": list(config.seeds),
        "corpus": corpus,
        "model_parameters": sum(
            p.numel() for p in CrossModalTransformer(model_config).parameters()
        ),
        "model_config": model_config.to_dict(),
        "tracking_uri": uri,
        "variants": variant_rows(config),
        "runs": runs,
        "missing": missing,
        "started_utc": started_utc,
        "finished_utc": _utc_now(),
        "wall_s": time.monotonic() - began,
    }


def variant_rows(config: ExperimentConfig) -> list[dict[str, Any]]:
    """The page's rows, in table order: each trained variant, a re-evaluation after its source."""
    rows = []
    for v in config.variants():
        rows.append(
            {
                "name": v.name,
                "description": v.description,
                "mode": v.colearning.mode,
                "colearning": v.colearning.to_dict(),
                "conditions": list(v.conditions),
            }
        )
        for name, (source, description) in EVALUATED.items():
            if source == v.name:
                row = {**rows[-1], "name": name, "description": description, "evaluates": source}
                rows.append(row)
    return rows


def _claim(record_path: Path) -> bool:
    """Take the run for this process (`<record>.claim` holds its pid); False when a live process
    holds it. A claim left by a process that is gone is taken over (its run resumes)."""
    claim = record_path.with_suffix(".claim")
    claim.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                os.kill(int(claim.read_text() or "0"), 0)
                return False
            except (ProcessLookupError, ValueError):
                claim.unlink(missing_ok=True)
                continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        return True
    return False


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
