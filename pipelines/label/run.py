"""The labelling job: media or clip shards in, label shards and per-media tags out, incrementally.

The driver pins the model once (an alias resolves to one version before any clip is read; each
actor then loads that version from its node's download cache, so the weights never ride in the
UDF), lists
what OUT already holds and plans only media without labels from this model (with `relabel_older`,
also those labelled by an older version). Ray Data then streams clips to `Labeller` actors: read
from shards, or extracted from media in the same job (`pipelines.label.media`). Label rows are
small, so they come back to the driver, which commits them in parts of complete media files
(`pipelines.label.store`); a killed run loses at most its uncommitted part and resumes from there.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from avemo_core.checkpoint import WEIGHTS_FILE, load_checkpoint
from avemo_core.config import FrozenConfig, require
from avemo_core.media.extractor_config import ExtractorConfig
from avemo_core.model import ModelConfig
from avemo_core.schema import SPEAKER_COLUMN, label_schema, media_id_for
from avemo_core.speakers import SpeakerTable
from pipelines.label.labeller import MEDIA_CLIPS_COLUMN, Labeller
from pipelines.label.store import LabelStore, ModelKey, new_run_id
from pipelines.label.summary import summarise_media
from pipelines.ray_session import ensure_ray
from pipelines.shard_reads import read_shards
from pipelines.storage import arrow_filesystem, filesystem, storage_options_from_env

DEVICES = ("auto", "cpu", "cuda")


class LabelError(RuntimeError):
    """The job cannot run at all (bad input, unknown model, no Ray): the user can fix it."""


@dataclasses.dataclass(frozen=True)
class LabelConfig(FrozenConfig):
    input_uri: str = ""  # media (folder, glob, file, s3:// prefix) or a clip-shard folder
    output_uri: str = (
        ""  # folder or s3:// prefix receiving labels/, media/, _errors/, _SUCCESS.json
    )
    model_uri: str = (
        ""  # models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN/PATH or a checkpoint folder
    )
    mlflow_uri: str | None = None  # tracking URI; None: $MLFLOW_TRACKING_URI, else ./mlflow.db
    relabel_older: bool = False  # also relabel media whose newest labels come from an older version
    batch_size: int = 32  # clips per inference batch
    concurrency: int | None = (
        None  # inference actors; None: one per GPU, else 1 to a quarter of the CPUs
    )
    device: str = "auto"  # auto (GPU when the cluster has one) | cpu | cuda
    media_per_part: int = 64  # media files per committed output part (the unit a killed run loses)
    max_audio_frames: int = 3000  # longer clips are cut to this many audio frames (30 s at 10 ms)
    max_visual_frames: int = 150  # and this many video frames
    ray_address: str | None = None  # existing cluster to join; None: $RAY_ADDRESS, else a local one
    model_cache_dir: str | None = (
        None  # per-node model download cache (None: ~/.cache/avemo/models)
    )
    num_cpus: int | None = None  # CPUs of the local cluster started here (None: all)

    def validate(self) -> None:
        require(bool(self.input_uri), "input_uri is required")
        require(bool(self.output_uri), "output_uri is required")
        require(bool(self.model_uri), "model_uri is required")
        require(self.batch_size >= 1, "batch_size must be >= 1")
        require(self.concurrency is None or self.concurrency >= 1, "concurrency must be >= 1")
        require(self.device in DEVICES, f"device must be one of {DEVICES}")
        require(self.media_per_part >= 1, "media_per_part must be >= 1")
        require(
            self.max_audio_frames >= 1 and self.max_visual_frames >= 1, "frame caps must be >= 1"
        )
        require(self.num_cpus is None or self.num_cpus >= 1, "num_cpus must be >= 1")


@dataclasses.dataclass(frozen=True)
class PinnedModel:
    """The one model version a run labels with, and where its checkpoint sits locally."""

    name: str
    version: str
    run_id: str
    checkpoint_dir: str  # the driver's copy (from the node's cache for registry and run models)
    uri: str  # as the user gave it
    pinned_uri: str  # what every actor loads: models:/NAME/VERSION, runs:/RUN/PATH or a folder
    tracking_uri: str | None  # where the actors resolve `pinned_uri` (None: a local folder)

    def key(self) -> ModelKey:
        return ModelKey(self.name, self.version)

    def info(self) -> dict[str, str]:
        return {"model_name": self.name, "model_version": self.version, "model_run_id": self.run_id}


def pin_model(config: LabelConfig) -> PinnedModel:
    """Resolve the model URI once to a pinned name/version/run and a local checkpoint (in the
    node's cache: nothing is left in the temp directory).

    A registry reference carries its name and version number; a run or local checkpoint has
    neither, so it is named by its URI and versioned by the hash of its weights, which keeps
    incremental runs honest when a different checkpoint is used on the same OUT.
    """
    from pipelines.model_uri import ModelURIError, resolve_model
    from pipelines.tracking import resolve_tracking_uri

    try:
        resolved = resolve_model(
            config.model_uri, tracking_uri=config.mlflow_uri, cache_dir=config.model_cache_dir
        )
    except ModelURIError as err:
        raise LabelError(str(err)) from None
    remote = ":/" in config.model_uri  # models:/ or runs:/ (a folder needs no tracking server)
    weights = Path(resolved.checkpoint_dir) / WEIGHTS_FILE
    return PinnedModel(
        name=resolved.name or config.model_uri.rstrip("/"),
        version=resolved.version
        or "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()[:16],
        run_id=resolved.run_id,
        checkpoint_dir=str(resolved.checkpoint_dir),
        uri=config.model_uri,
        pinned_uri=resolved.pinned_uri,
        tracking_uri=resolve_tracking_uri(config.mlflow_uri) if remote else None,
    )


def is_clip_shards(uri: str, storage_options: dict[str, Any]) -> bool:
    """A folder holding `_SUCCESS.json` or Parquet files is clip shards; anything else is media."""
    fs, path = filesystem(uri, storage_options)
    try:
        if not fs.isdir(path):
            return False
        names = [str(n).rstrip("/").rsplit("/", 1)[-1] for n in fs.ls(path, detail=False)]
    except (OSError, ValueError):
        return False
    return "_SUCCESS.json" in names or any(n.endswith(".parquet") for n in names)


@dataclasses.dataclass
class Plan:
    """What a run will label."""

    kind: str  # "shards" or "media"
    media_total: int  # media files found in INPUT
    todo: list[str]  # media ids to label
    skipped: int  # media already labelled by this model (or a newer version)
    expected_clips: dict[str, int]  # media id -> clip count, when known up front (shards)
    shard_files: tuple[str, ...] = ()  # shards input: the Parquet files
    uris: dict[str, str] = dataclasses.field(default_factory=dict)  # media input: media id -> URI


def _needs_labels(
    done: dict[str, ModelKey], model: ModelKey, relabel_older: bool, media_id: str
) -> bool:
    previous = done.get(media_id)
    return previous is None or (relabel_older and model.supersedes(previous))


def plan_run(
    config: LabelConfig, model: PinnedModel, store: LabelStore, options: dict[str, Any]
) -> Plan:
    """List INPUT and OUT; keep the media this run must label."""
    from pipelines.extract.sources import SourceError, list_media

    done = store.labelled_media()
    if is_clip_shards(config.input_uri, options):
        files, counts = _shard_media_counts(config.input_uri)
        todo = [
            m for m in sorted(counts) if _needs_labels(done, model.key(), config.relabel_older, m)
        ]
        return Plan("shards", len(counts), todo, len(counts) - len(todo), counts, shard_files=files)
    try:
        media = list_media(config.input_uri, options, exclude=config.output_uri)
    except SourceError as err:
        raise LabelError(str(err)) from None
    if not media:
        raise LabelError(f"no media files or clip shards found under {config.input_uri}")
    uris = {media_id_for(m.uri): m.uri for m in media}
    todo = [m for m in sorted(uris) if _needs_labels(done, model.key(), config.relabel_older, m)]
    return Plan("media", len(uris), todo, len(uris) - len(todo), {}, uris=uris)


def _shard_media_counts(root: str) -> tuple[tuple[str, ...], dict[str, int]]:
    """The shard files and the clip count of every media file in them (reads one small column)."""
    import pyarrow.parquet as pq

    from pipelines.train.datasets import DataError, inspect_shards

    try:
        info = inspect_shards(root)
    except DataError as err:
        raise LabelError(str(err)) from None
    arrow_fs, _ = arrow_filesystem(root, storage_options_from_env())
    table = pq.read_table(list(info.files), columns=["media_id"], filesystem=arrow_fs)
    counts = table.group_by("media_id").aggregate([("media_id", "count")])
    return info.files, dict(
        zip(counts["media_id"].to_pylist(), counts["media_id_count"].to_pylist(), strict=True)
    )


class PartCommitter:
    """Collects label rows per media file and commits complete files in parts."""

    def __init__(
        self,
        store: LabelStore,
        run_id: str,
        expected: dict[str, int],
        media_per_part: int,
        config: dict[str, Any],
        log: Callable[[str], None],
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.expected = dict(expected)
        self.media_per_part = media_per_part
        self.config = config
        self.log = log
        self.schema = label_schema(config)
        self.open: dict[str, list[pa.Table]] = {}  # media id -> its label rows so far
        self.rows: dict[str, int] = {}
        self.complete: list[pa.Table] = []  # label rows of each complete, uncommitted media file
        self.parts = 0
        self.media_done = 0
        self.clips_done = 0

    def add(self, batch: pa.Table) -> None:
        """Take one batch of label rows (any media, any order)."""
        if MEDIA_CLIPS_COLUMN in batch.column_names:
            totals = batch.column(MEDIA_CLIPS_COLUMN).to_pylist()
            for media_id, total in zip(batch.column("media_id").to_pylist(), totals, strict=True):
                if total > 0:
                    self.expected[media_id] = total
            batch = batch.drop_columns([MEDIA_CLIPS_COLUMN])
        batch = _to_label_table(batch, self.schema)
        ids = np.asarray(batch.column("media_id").to_pylist(), dtype=object)
        for media_id in dict.fromkeys(ids.tolist()):
            self.open.setdefault(media_id, []).append(batch.filter(pa.array(ids == media_id)))
            self.rows[media_id] = self.rows.get(media_id, 0) + int((ids == media_id).sum())
        for media_id in [m for m in self.open if self.rows[m] == self.expected.get(m, -1)]:
            self.complete.append(pa.concat_tables(self.open.pop(media_id)))
        while len(self.complete) >= self.media_per_part:
            self.flush(self.media_per_part)

    def flush(self, media: int | None = None) -> None:
        """Commit (up to `media`) complete media files collected so far as one part."""
        if not self.complete:
            return
        count = len(self.complete) if media is None else media
        labels = pa.concat_tables(self.complete[:count])
        self.complete = self.complete[count:]
        summary = summarise_media(labels, int(time.time()), self.config)
        part = f"{self.run_id}-{self.parts:05d}"
        self.store.commit(part, labels, summary)
        self.parts += 1
        self.media_done += summary.num_rows
        self.clips_done += labels.num_rows
        self.log(f"label: committed part {part}: {summary.num_rows} media, {labels.num_rows} clips")

    def incomplete(self) -> list[str]:
        """Media whose clips did not all arrive (their file failed half-way): not committed."""
        return sorted(self.open)


def _to_label_table(batch: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast a Labeller batch to the label schema; NaN probabilities (not run) become null."""
    columns = []
    for field in schema:
        column = batch.column(field.name)
        if pa.types.is_floating(field.type) and field.name.startswith("prob_"):
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
        columns.append(column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _inference_resources(config: LabelConfig) -> dict[str, Any]:
    """map_batches arguments for the Labeller actors: one GPU per actor when there is one to use."""
    import ray
    import ray.data

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if config.device == "cuda" and gpus == 0:
        raise LabelError("--gpu was given but the Ray cluster has no GPU")
    if config.device == "cuda" or (config.device == "auto" and gpus > 0):
        size = config.concurrency or gpus
        return {"num_gpus": 1, "compute": ray.data.ActorPoolStrategy(size=size), "device": "cuda"}
    if config.concurrency:
        pool = ray.data.ActorPoolStrategy(size=config.concurrency)
    else:
        pool = ray.data.ActorPoolStrategy(
            min_size=1, max_size=max(1, int(resources.get("CPU", 1)) // 4)
        )
    return {"num_cpus": 1, "compute": pool, "device": "cpu"}


def _dataset(
    plan: Plan,
    config: LabelConfig,
    model: PinnedModel,
    options: dict[str, Any],
    log: Callable[[str], None] = print,
) -> Any:
    """The streaming Ray Data pipeline: clip rows (read or extracted) -> Labeller actors, with
    the input's speaker statistics where the model uses them."""
    import ray.data
    from ray.data.expressions import col

    from avemo_core.schema import FEATURE_COLUMNS, KEY_COLUMNS
    from pipelines.label.media import DECODE_MEMORY_BYTES, clip_tables

    checkpoint = load_checkpoint(model.checkpoint_dir)
    speakers = _speaker_table(plan, config, checkpoint.model.config, log)
    if plan.kind == "shards":
        arrow_fs, _ = arrow_filesystem(config.input_uri, options)
        dataset = read_shards(plan.shard_files, arrow_fs)
        present = set(dataset.schema().names)  # version-1 shards lack the face flags
        dataset = dataset.select_columns(
            [c for c in (*KEY_COLUMNS, *FEATURE_COLUMNS, SPEAKER_COLUMN) if c in present]
        )
        if plan.skipped:
            dataset = dataset.filter(expr=col("media_id").is_in(plan.todo))
    else:
        extractor = ExtractorConfig.saved_or_default(checkpoint.feature_config)
        setup = {
            "extractor": extractor.to_dict(),
            "output_uri": config.output_uri,
            "storage_options": options,
        }
        uris = [{"uri": plan.uris[m]} for m in plan.todo]
        dataset = ray.data.from_items(uris, override_num_blocks=len(uris))
        dataset = dataset.map_batches(
            clip_tables,
            batch_size=1,
            fn_kwargs={"setup_json": json.dumps(setup, sort_keys=True)},
            num_cpus=1,
            memory=DECODE_MEMORY_BYTES,
        )
    resources = _inference_resources(config)
    kwargs = labeller_kwargs(config, model, resources.pop("device"))
    kwargs["speakers"] = speakers.to_dict() if speakers is not None else None
    return dataset.map_batches(
        Labeller,
        fn_constructor_kwargs=kwargs,
        batch_size=config.batch_size,
        batch_format="numpy",
        **resources,
    )


def labeller_kwargs(config: LabelConfig, model: PinnedModel, device: str) -> dict[str, Any]:
    """What each Labeller actor is built from: the pinned reference, not the weights (each
    actor loads them from its node's cache, so the UDF stays a few hundred bytes)."""
    return {
        "model_uri": model.pinned_uri,
        "tracking_uri": model.tracking_uri,
        "cache_dir": config.model_cache_dir,
        "model_info": model.info(),
        "device": device,
        "max_frames": (config.max_audio_frames, config.max_visual_frames),
    }


def _speaker_table(
    plan: Plan, config: LabelConfig, model_config: ModelConfig, log: Callable[[str], None]
) -> SpeakerTable | None:
    """Statistics of the speakers that clip-shard input names, for a model that standardises per
    speaker; None otherwise (media input has no speakers: the training split's
    statistics saved with the model serve)."""
    if plan.kind != "shards":
        return None
    if not model_config.uses_speakers:
        return None
    from pipelines.train import datasets

    table = datasets.speaker_table(datasets.inspect_shards(config.input_uri), None)
    if table is not None:
        log(f"label: standardised per speaker ({len(table.speakers)} speakers)")
    return table


def run_label(config: LabelConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the job; returns `_SUCCESS.json`. Media that fail are reported, not raised."""
    started_at = datetime.datetime.now(datetime.UTC)
    started = time.monotonic()
    options = storage_options_from_env()
    model = pin_model(config)
    log(f"label: model {model.name} version {model.version} (run {model.run_id or '-'})")
    store = LabelStore(config.output_uri, options)
    for leftover in store.recover():
        log(f"label: removed leftover of an interrupted run: {leftover}")
    plan = plan_run(config, model, store, options)
    log(
        f"label: {plan.media_total} media ({plan.kind}), {plan.skipped} already labelled, "
        f"{len(plan.todo)} to do"
    )
    config_dict = {**config.to_dict(), **model.info(), "model_uri": model.uri}
    run_id = new_run_id()
    committer = PartCommitter(
        store, run_id, plan.expected_clips, config.media_per_part, config_dict, log
    )
    if plan.todo:
        ensure_ray(config.ray_address, config.num_cpus, LabelError)
        for batch in _dataset(plan, config, model, options, log).iter_batches(
            batch_size=None, batch_format="pyarrow"
        ):
            committer.add(batch)
        committer.flush()
    todo = set(plan.todo)
    errors = [e for e in store.errors() if e and e.get("media_id") in todo]
    wall_s = time.monotonic() - started
    success = {
        "run_id": run_id,
        "input": config.input_uri,
        "input_kind": plan.kind,
        "model": {"uri": model.uri, **model.info()},
        "media": plan.media_total,
        "media_skipped": plan.skipped,
        "media_labelled": committer.media_done,
        "media_failed": len(errors),
        "media_incomplete": committer.incomplete(),
        "clips_labelled": committer.clips_done,
        "parts": committer.parts,
        "errors": sorted(errors, key=lambda e: e["uri"]),
        "config": config.to_dict(),
        "started_at": started_at.isoformat(),
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "wall_s": wall_s,
        "clips_per_s": committer.clips_done / wall_s if wall_s > 0 else 0.0,
    }
    store.write_success(success)
    for error in success["errors"]:
        log(f"  failed: {error['uri']} [{error['stage']}/{error['kind']}] {error['message']}")
    log(
        f"label: {committer.media_done} media labelled ({committer.clips_done} clips), "
        f"{plan.skipped} skipped, {len(errors)} failed, in {wall_s:.1f} s"
    )
    return success
