"""Evaluate a registered model or a checkpoint on a split of clip shards, per input condition.

    avemo evaluate DATA --model URI [--split test] [--json OUT]

URI: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH or a local checkpoint directory.
The thresholds saved with the model (tuned on validation) decide each emotion. Example:

    avemo evaluate shards/ --model models:/avemo-emotion@champion --json eval.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from jobs.errors import UserError
from pipelines import tracking
from pipelines.train import datasets

COLUMNS = ("samples", "f1", "wa", "auc", "micro_f1", "jaccard")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="clip shards: a local directory or s3:// prefix")
    parser.add_argument("--model", required=True, help="models:/NAME@ALIAS, runs:/..., or a dir")
    parser.add_argument(
        "--split", default="test", choices=datasets.SPLITS, help="split of the shards to score"
    )
    parser.add_argument("--json", metavar="OUT", help="also write the metrics as JSON to OUT")
    parser.add_argument(
        "--mlflow-uri", help="tracking URI (default: MLFLOW_TRACKING_URI, ./mlflow.db)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="clips per forward pass")


def format_table(results: dict[str, dict[str, float]]) -> str:
    """One row per condition, macro metrics as columns; an undefined value (e.g. F1 where no
    emotion has both positives and negatives) shows as `-`."""
    lines = ["condition " + "".join(f"{name:>10}" for name in COLUMNS)]
    for condition, scores in results.items():
        cells = []
        for name in COLUMNS:
            value = scores.get(name, math.nan)
            if math.isnan(value):
                cells.append(f"{'-':>10}")
            else:
                cells.append(f"{int(value):>10d}" if name == "samples" else f"{value:>10.4f}")
        lines.append(f"{condition:<10}" + "".join(cells))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from avemo_core.checkpoint import CheckpointError, load_checkpoint
    from pipelines import model_uri
    from pipelines.train.evaluation import evaluate

    try:
        info = datasets.inspect_shards(args.data)
        resolved = model_uri.resolve_model(args.model, args.mlflow_uri)
        checkpoint = load_checkpoint(resolved.checkpoint_dir)
        by_speaker = checkpoint.model.config.uses_speakers
        batches = datasets.LocalBatches(
            info, args.split, args.batch_size, speaker_statistics=by_speaker
        )
    except (
        datasets.DataError,
        tracking.TrackingError,
        model_uri.ModelURIError,
        CheckpointError,
    ) as err:
        raise UserError(str(err)) from None
    results = evaluate(checkpoint, batches)
    version = f" v{resolved.version}" if resolved.version else ""
    print(f"{resolved.name or resolved.uri}{version} on {args.split} ({batches.rows} clips)")
    speakers = len(batches.speakers.speakers) if batches.speakers is not None else 0
    if checkpoint.model.config.uses_speakers:
        print(
            f"standardised per speaker ({speakers} speakers in the split)"
            if speakers
            else "the shards name no speakers: standardised by the training split's statistics"
        )
    print(format_table(results))
    if args.json:
        report = {
            "model": {
                "uri": resolved.uri,
                "name": resolved.name,
                "version": resolved.version,
                "run_id": resolved.run_id,
            },
            "data": {
                "uri": args.data,
                "split": args.split,
                "fingerprint": info.fingerprint,
                "speakers": speakers,
            },
            "metrics": {
                c: {k: (None if math.isnan(v) else v) for k, v in scores.items()}
                for c, scores in results.items()
            },
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0
