"""Tag media or clip shards with emotions per available modality, incrementally and atomically.

    avemo label INPUT OUT --model URI [--relabel-older] [--batch-size N] [--ray-address A]

INPUT is media (a folder, a glob or an s3:// prefix; features are extracted in the same streaming
job) or clip shards written by `avemo extract` (a folder holding `_SUCCESS.json` / Parquet files).
URI is `models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/RUN_ID/PATH` or a checkpoint folder;
it is resolved once, so every clip of a run is labelled by the same pinned model version.
OUT receives `labels/` (one row per clip), `media/` (tags per media file), `_errors/` and
`_SUCCESS.json`. A rerun labels only media that OUT has no labels for (with --relabel-older, also
media labelled by an older version of the model); a killed run resumes where it stopped.

On a cluster:
    ray job submit --address http://HEAD:8265 -- \
        avemo label s3://media/new s3://labels --model models:/avemo-emotion@champion
"""

from __future__ import annotations

import argparse

from avemo_core.config import ConfigError
from jobs.errors import UserError
from pipelines.label.run import LabelConfig, LabelError, run_label


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="media folder/glob/s3:// prefix, or a clip-shard folder")
    parser.add_argument("out", help="output folder or s3:// prefix")
    parser.add_argument(
        "--model",
        required=True,
        help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/..., or a checkpoint folder",
    )
    parser.add_argument(
        "--mlflow-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    parser.add_argument(
        "--relabel-older",
        action="store_true",
        help="also relabel media labelled by an older model version",
    )
    parser.add_argument(
        "--batch-size", type=int, default=LabelConfig.batch_size, help="clips per inference batch"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="inference actors (default: one per GPU, else 1 to a quarter of the CPUs)",
    )
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="one GPU per inference actor (default: GPU when the cluster has one)",
    )
    parser.add_argument("--cpu", action="store_true", help="never use a GPU")
    parser.add_argument(
        "--media-per-part",
        type=int,
        default=LabelConfig.media_per_part,
        help="media files per committed output part",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster address (default: $RAY_ADDRESS, else a local cluster)",
    )


def run(args: argparse.Namespace) -> int:
    if args.gpu and args.cpu:
        raise UserError("--gpu and --cpu exclude each other")
    try:
        config = LabelConfig(
            input_uri=args.input,
            output_uri=args.out,
            model_uri=args.model,
            mlflow_uri=args.mlflow_uri,
            relabel_older=args.relabel_older,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            device="cuda" if args.gpu else "cpu" if args.cpu else "auto",
            media_per_part=args.media_per_part,
            ray_address=args.ray_address,
        )
    except ConfigError as err:
        raise UserError(str(err)) from None
    try:
        run_label(config)
    except LabelError as err:
        raise UserError(str(err)) from None
    return 0
