"""The demo's closing report: tags per clip under each modality next to the truth, per-file tags,
how well the tags match the truth (Jaccard), and the command that opens the MLflow UI on the run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from avemo_core import metrics
from avemo_core.labels import CONDITIONS, EMOTIONS
from avemo_core.schema import prob_column

CONDITION_TITLES = {"av": "audio+visual", "a": "audio only", "v": "visual only"}


def _names(emotions: Sequence[str]) -> str:
    return ", ".join(emotions) if emotions else "(none)"


def _truth(plan: Any, start_s: float, end_s: float) -> list[str]:
    """Emotions present in any planned segment overlapping [start_s, end_s)."""
    present = np.zeros(len(EMOTIONS), bool)
    for segment in plan.segments:
        if segment.start_s < end_s and segment.end_s > start_s:
            present |= np.asarray(segment.intensities) > 0
    return [e for e, on in zip(EMOTIONS, present, strict=True) if on]


def jaccard(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """|predicted & truth| / |predicted | truth|: 1 for a perfect tag set, 0 for no overlap (two
    empty sets agree: 1). One number per clip or file that punishes both missed and extra tags."""
    tagged, true = set(predicted), set(truth)
    union = tagged | true
    return len(tagged & true) / len(union) if union else 1.0


def mean_jaccard(pairs: Sequence[tuple[Sequence[str], Sequence[str]]]) -> float:
    """Mean `jaccard` over (predicted, truth) pairs; NaN for none."""
    return float(np.mean([jaccard(p, t) for p, t in pairs])) if pairs else float("nan")


def _table(rows: list[list[str]], log: Callable[[str], None]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        log("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            log("  " + "  ".join("-" * w for w in widths))


def print_report(
    labels_dir: Path, plans: Sequence[Any], tracking_uri: str, log: Callable[[str], None]
) -> None:
    from mlflow import MlflowClient

    from avemo_core.checkpoint import load_checkpoint
    from pipelines.label.store import LabelStore
    from pipelines.model_uri import resolve_model

    store = LabelStore(str(labels_dir))
    success = store.read_success() or {}
    model = success["model"]
    pinned = resolve_model(f"models:/{model['model_name']}/{model['model_version']}", tracking_uri)
    thresholds = load_checkpoint(pinned.checkpoint_dir).thresholds
    by_name = {Path(p.name).name: p for p in plans}
    labels = sorted(
        store.read_labels().to_pylist(), key=lambda r: (Path(r["source_uri"]).name, r["start_s"])
    )

    name, version, run_id = model["model_name"], model["model_version"], model["model_run_id"]
    log(f"model {name} v{version} (MLflow run {run_id})")
    rows = [
        ["file", "clip", "streams", *(CONDITION_TITLES[c] for c in CONDITIONS), "truth", "jaccard"]
    ]
    clip_pairs: list[tuple[list[str], list[str]]] = []
    for row in labels:
        cells = []
        for condition in CONDITIONS:
            probs = [row[prob_column(condition, e)] for e in EMOTIONS]
            if probs[0] is None:
                cells.append("-")  # the file lacks a stream this condition needs
                continue
            decided = metrics.decide(np.asarray([probs]), np.asarray(thresholds[condition]))[0]
            cells.append(_names([e for e, on in zip(EMOTIONS, decided, strict=True) if on]))
        name = Path(row["source_uri"]).name
        truth = _truth(by_name[name], row["start_s"], row["end_s"]) if name in by_name else []
        span = f"{row['start_s']:.1f}-{row['end_s']:.1f} s"
        score = ""
        if name in by_name:  # Jaccard of the clip's tags (its fullest condition) against truth
            clip_pairs.append((list(row["tags"]), truth))
            score = f"{jaccard(row['tags'], truth):.2f}"
        rows.append([name, span, row["modalities"], *cells, _names(truth), score])
    log("\nTags per clip under each input condition (- : the file lacks that stream):")
    _table(rows, log)

    rows = [["file", "streams", "clips", "tags over the file", "truth", "jaccard"]]
    file_pairs: list[tuple[list[str], list[str]]] = []
    for media in sorted(store.read_media().to_pylist(), key=lambda r: Path(r["source_uri"]).name):
        name = Path(media["source_uri"]).name
        plan = by_name.get(name)
        truth = _truth(plan, 0.0, float("inf")) if plan is not None else []
        score = ""
        if plan is not None:
            file_pairs.append((list(media["tags"]), truth))
            score = f"{jaccard(media['tags'], truth):.2f}"
        rows.append(
            [
                name,
                media["modalities"],
                str(media["clips"]),
                _names(media["tags"]),
                _names(truth),
                score,
            ]
        )
    log("\nTags per media file (from its clips' fullest condition):")
    _table(rows, log)
    log(
        f"\nMean Jaccard of the tags against the truth (1: exact, 0: no overlap): "
        f"per clip {mean_jaccard(clip_pairs):.2f} ({len(clip_pairs)} clips), "
        f"per file {mean_jaccard(file_pairs):.2f} ({len(file_pairs)} files)"
    )
    for error in success.get("errors", []):
        log(f"  failed: {error['uri']}: {error['message']}")

    experiment = MlflowClient(tracking_uri).get_run(model["model_run_id"]).info.experiment_id
    log("\nOpen the training run in the MLflow UI:")
    log(f"  mlflow ui --backend-store-uri {tracking_uri} --port 5000")
    log(f"  then http://127.0.0.1:5000/#/experiments/{experiment}/runs/{model['model_run_id']}")
    log(f"Label shards: {labels_dir / 'labels'}  per-file tags: {labels_dir / 'media'}")
