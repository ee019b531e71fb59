"""Real speech: RAVDESS speech through the whole real path, against a classical baseline.

    .venv/bin/python -m bench.real_speech [--corpus ../shared/data/ravdess-speech]
        [--work /tmp/avemo-real-speech] [--seeds 0 1 2] [--modes audio colearn] [--epochs N]
        [--seeds-of colearn=0] [--cross-fit] [--out docs/results_real_speech.md]

Prepares a manifest of the 1,440 utterances (split by actor: 01-16 train, 17-20 valid, 21-24
test; the six emotions with their intensity, neutral and calm labelled with none), extracts them
with `run_extract` (Ray Data, ffmpeg), trains every mode and seed with `run_training` (Ray Train,
MLflow in a local SQLite file) with the library's default recipe, and scores the best checkpoint
of each run on the test actors with the thresholds it saved (tuned on valid). The table gives
per-emotion F1 and the macro means over seeds beside the reference of `../shared/data/README.md`:
log-mel statistics + one-vs-rest logistic regression, macro-F1 0.414, mean WA 0.678.
`--epochs` shortens the schedule (the default recipe otherwise) to fit a time budget; the page
says which. Runs already in WORK/results.json (same mode, seed and epochs) are kept, not trained
again (same recipe too), so a stopped benchmark resumes. The test split is scored with its own
speakers' statistics (the model standardises its functionals per speaker), and once more without
speakers, as labelling new media sees it. The page is rewritten down to `KEPT_MARKER`; what follows
that line (measurements made another way, by hand) is kept.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from avemo_core.checkpoint import load_checkpoint
from avemo_core.colearning import CoLearningConfig
from avemo_core.corpora import PrepareConfig, prepare
from avemo_core.labels import EMOTIONS
from avemo_core.model import ModelConfig
from avemo_core.training import TrainConfig
from bench.common import page_sections
from pipelines.extract.run import ExtractConfig, run_extract
from pipelines.ray_session import ensure_ray
from pipelines.train import datasets
from pipelines.train.evaluation import evaluate
from pipelines.train.run import RunSettings, run_training

REPO = Path(__file__).resolve().parents[1]
KEPT_MARKER = "<!-- kept below: not written by bench/real_speech.py -->"
EXTRACT_RECORD = "extract.json"  # extraction seconds, for a rerun that reuses the shards
REFERENCE = {
    "f1": 0.414,
    "wa": 0.678,
    "happiness": 0.284,
    "sadness": 0.417,
    "anger": 0.381,
    "fear": 0.429,
    "disgust": 0.378,
    "surprise": 0.593,
}


def run_one(
    shards: Path, work: Path, mode: str, train_config: TrainConfig, tracking_uri: str
) -> dict[str, float | str]:
    """Train one mode and seed through Ray Train; test metrics of its best checkpoint (a)."""
    seed = train_config.seed
    name = f"{mode}-seed{seed}-{time.strftime('%H%M%S')}"
    settings = RunSettings(
        data_uri=str(shards),
        run_name=name,
        storage_uri=str(work / "runs"),
        tracking_uri=tracking_uri,
        experiment="real-speech",
    )
    began = time.perf_counter()
    outcome = run_training(
        settings, ModelConfig.named("small"), train_config, CoLearningConfig(mode=mode)
    )
    seconds = time.perf_counter() - began
    info = datasets.inspect_shards(str(shards))
    checkpoint = load_checkpoint(outcome.checkpoint_dir)
    test = datasets.LocalBatches(info, "test", 32, speaker_statistics=True)
    scores = evaluate(checkpoint, test)["a"]
    # as labelling new media sees them: no speaker, the training split's statistics
    anonymous = evaluate(checkpoint, datasets.LocalBatches(info, "test", 32))["a"]
    print(
        f"{name}: test macro-F1 {scores['f1']:.3f} (without speakers {anonymous['f1']:.3f}), "
        f"WA {scores['wa']:.3f}, {seconds:.0f} s"
    )
    return {
        "mode": mode, "seed": seed, "seconds": seconds, "epochs": outcome.epochs,
        "model": ModelConfig.named("small").to_dict(), "cross_fit": train_config.cross_fit,
        **scores,
        "f1_without_speakers": anonymous["f1"], "wa_without_speakers": anonymous["wa"],
    }  # fmt: skip


def _cell(values: list[float]) -> str:
    return (
        f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"
    )


def table(results: list[dict], modes: list[str]) -> str:
    """Markdown rows: per-emotion F1, macro-F1 and mean WA, mean ± std over seeds."""
    header = ["", *EMOTIONS, "macro-F1", "mean WA", "macro-F1 without speakers"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    reference = [REFERENCE[e] for e in EMOTIONS] + [REFERENCE["f1"], REFERENCE["wa"]]
    lines.append(
        "| reference (log-mel stats + LR) | "
        + " | ".join(f"{v:.3f}" for v in reference)
        + " | (no speakers) |"
    )
    for mode in modes:
        runs = [r for r in results if r["mode"] == mode]
        cells = [_cell([r[f"f1/{e}"] for r in runs]) for e in EMOTIONS]
        cells += [_cell([r["f1"] for r in runs]), _cell([r["wa"] for r in runs])]
        anonymous = [r["f1_without_speakers"] for r in runs if "f1_without_speakers" in r]
        cells.append(_cell(anonymous) if anonymous else "-")
        seeds = f"{len(runs)} seed{'s' if len(runs) != 1 else ''}"
        lines.append(f"| avemo `--mode {mode}` ({seeds}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared/data/ravdess-speech")
    parser.add_argument("--work", type=Path, default=Path("/tmp/avemo-real-speech"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", default=["audio", "colearn"])
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the recipe's)")
    parser.add_argument(
        "--seeds-of",
        nargs="*",
        default=[],
        metavar="MODE=S,S",
        help="other seeds for one mode, to fit a time budget (e.g. colearn=0)",
    )
    parser.add_argument(
        "--cross-fit",
        action="store_true",
        help="train cross-fitted ensembles (TrainConfig.cross_fit: valid speakers train too)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs/results_real_speech.md")
    parser.add_argument(
        "--results-page",
        type=Path,
        default=REPO / "docs/results.md",
        help="page whose real-speech section gets the table",
    )
    args = parser.parse_args()
    if not args.corpus.is_dir():
        raise SystemExit(f"{args.corpus} is not a folder (see ../shared/data/README.md)")

    work = args.work.resolve()
    shards = work / "shards"
    manifest = work / "manifest.csv"
    prepared = prepare(PrepareConfig(corpus="ravdess"), args.corpus, manifest)
    counts = prepared.per_split
    print(f"manifest: {counts} (avemo prepare ravdess)")
    ensure_ray(None, None, SystemExit, dashboard=True, log_to_driver=False)
    began = time.perf_counter()
    if not (shards / "_SUCCESS.json").exists():
        summary = run_extract(
            ExtractConfig(
                input_uri=str(args.corpus), output_uri=str(shards), manifest_uri=str(manifest)
            )
        )
        print(json.dumps(summary, default=str)[:400])
        (work / EXTRACT_RECORD).write_text(json.dumps({"seconds": time.perf_counter() - began}))
    record = work / EXTRACT_RECORD  # absent for shards extracted by hand: time unknown
    extract_s = json.loads(record.read_text())["seconds"] if record.exists() else float("nan")
    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    default = TrainConfig().replace(cross_fit=args.cross_fit or TrainConfig().cross_fit)
    epochs = default.epochs if args.epochs is None else args.epochs
    seeds = {mode: args.seeds for mode in args.modes}
    for item in args.seeds_of:
        mode, _, listed = item.partition("=")
        if mode not in seeds or not listed:
            raise SystemExit(f"--seeds-of {item!r}: need MODE=S,S with MODE one of {args.modes}")
        seeds[mode] = [int(seed) for seed in listed.split(",")]
    done = work / "results.json"
    earlier = json.loads(done.read_text()) if done.exists() else []
    results = []
    for mode in args.modes:
        for seed in seeds[mode]:
            run_key = (mode, seed, epochs, ModelConfig.named("small").to_dict(), default.cross_fit)
            kept = [
                r
                for r in earlier
                if (r["mode"], r["seed"], r["epochs"], r.get("model"), r.get("cross_fit", False))
                == run_key
            ]
            if kept:  # measured by an earlier, stopped or shorter invocation: not trained again
                print(f"{mode} seed {seed}: kept from {done}")
                results.append(kept[0])
                continue
            config = default.replace(seed=seed, epochs=epochs)
            results.append(run_one(shards, work, mode, config, tracking_uri))
            # after every run: a stopped benchmark keeps what it measured
            done.write_text(json.dumps(results, indent=1, default=float))
    runs_s = sum(r["seconds"] for r in results)
    recipe = {
        "model": ModelConfig.named("small").to_dict(),
        "train": default.replace(epochs=epochs).to_dict(),
        "colearning": CoLearningConfig().to_dict(),  # mode as in each row
    }
    schedule = (
        "the recipe's schedule"
        if epochs == default.epochs
        else f"the recipe shortened to {epochs} epochs (default {default.epochs}) to fit a time"
        " budget; warm-up and cosine decay over those"
    )
    kept = ""
    if args.out.exists() and KEPT_MARKER in args.out.read_text():
        kept = args.out.read_text().split(KEPT_MARKER, 1)[1].lstrip("\n")
    page = "\n".join(
        [
            "# Real speech: RAVDESS speech, test actors 21-24",
            "",
            "Written by `bench/real_speech.py` down to the marker below. RAVDESS speech (1,440",
            "utterances, 24 actors; CC BY-NC-SA 4.0, Livingstone & Russo 2018): actors 01-16",
            f"train, 17-20 valid, 21-24 test ({counts['train']} / {counts['valid']} /",
            f"{counts['test']} clips), six emotions; neutral and calm carry none. Extraction",
            f"(`run_extract`, Ray Data) took {extract_s:.0f} s; each run is Ray Train + MLflow",
            "(SQLite) with `avemo train`'s defaults (model size `small`) and one seed, with",
            f"{schedule}; its best-by-valid checkpoint",
            "scored on test with the thresholds it saved (tuned on valid). F1 per emotion and",
            "macro, mean ± std over seeds; `colearn` is trained on the same audio-only data",
            "and scored on its audio-only (`a`) condition.",
            "",
            table(results, args.modes),
            "",
            f"Training and scoring took {runs_s:.0f} s in all. Seconds per run (2 shared CPUs, "
            "noisy): " + ", ".join(f"{r['mode']}/{r['seed']} {r['seconds']:.0f}" for r in results),
            "",
            "Recipe (the defaults, epochs as above):",
            "",
            "```json",
            json.dumps(recipe, indent=1),
            "```",
            "",
            KEPT_MARKER,
            "",
            kept,
        ]
    )
    args.out.write_text(page.rstrip("\n") + "\n")
    summary = "\n".join(
        [
            "## Real speech (RAVDESS, test actors)",
            "",
            f"Written by `bench/real_speech.py`; all of it: [{args.out.name}]({args.out.name}).",
            "",
            table(results, args.modes),
        ]
    )
    results_page = args.results_page.read_text() if args.results_page.exists() else ""
    args.results_page.write_text(
        page_sections.replace_section(results_page, "real-speech", summary)
    )
    print(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
