"""Recording level: how a trained model's tags on RAVDESS speech's test actors change when the
same recordings play louder or quieter, through `avemo label` on media files (no speakers).

    .venv/bin/python -m bench.level_robustness --model CHECKPOINT_DIR [--gains -18 -6 0 6]
        [--corpus ../shared/data/ravdess-speech] [--work /tmp/avemo-level]

CHECKPOINT_DIR: a checkpoint folder (or any `--model` URI `avemo label` takes), for example one
that `bench/real_speech.py` trained. Each test utterance (actors 21-24) is copied at each gain with
ffmpeg's `volume` filter (16-bit FLAC, so +6 dB clips the loudest peaks, as a hot recording
does), labelled, and scored against the corpus labels: macro-F1 of the tags, mean tags per file,
macro AUC of the probabilities (threshold-free), and files labelled (a file judged silent has no
clip). No goal: it measures how far the absolute level, which the model reads from its log-mel
input, moves the verdicts.
"""

from __future__ import annotations

import argparse
import csv
import glob
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from avemo_core import metrics
from avemo_core.corpora import PrepareConfig, prepare
from avemo_core.labels import EMOTIONS
from bench.common.benchmarks_page import save_output
from bench.extract import FFMPEG

REPO = Path(__file__).resolve().parents[1]
TEST_ACTORS = frozenset(f"{actor:02d}" for actor in range(21, 25))


def labels_of_test_actors(corpus: Path) -> dict[str, np.ndarray]:
    """File name -> (6,) booleans of the test actors' utterances, as `avemo prepare ravdess`
    labels them (neutral and calm carry no emotion)."""
    out: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as scratch:
        manifest = Path(scratch) / "manifest.csv"
        prepare(PrepareConfig(corpus="ravdess"), corpus, manifest)
        with manifest.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row["speaker"] in TEST_ACTORS:
                    out[Path(row["uri"]).name] = np.array(
                        [float(row[e] or 0) > 0 for e in EMOTIONS]
                    )
    return out


def make_copies(corpus: Path, names: list[str], gain_db: int, folder: Path) -> None:
    """Every named file at `gain_db`, as FLAC in `folder` (kept: a rerun reuses them)."""
    folder.mkdir(parents=True, exist_ok=True)

    def one(name: str) -> None:
        target = folder / name
        if not target.exists():
            partial = folder / f".{name}.partial.flac"
            subprocess.run(
                [*FFMPEG, "-i", str(corpus / name), "-af", f"volume={gain_db}dB", str(partial)],
                check=True,
            )
            partial.rename(target)

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, names))


def score(labels: dict[str, np.ndarray], labelled: Path) -> dict[str, float]:
    """Scores of one labelling run's media table against the labels."""
    table = pq.read_table(glob.glob(str(labelled / "media" / "*.parquet"))).to_pandas()
    names = [uri.rsplit("/", 1)[-1] for uri in table["source_uri"]]
    truth = np.stack([labels[name] for name in names]).astype(np.float64)
    tags = np.array([[e in list(found) for e in EMOTIONS] for found in table["tags"]], float)
    probs = np.stack([table[f"mean_prob_{e}"].to_numpy() for e in EMOTIONS], axis=1)
    half = np.full(len(EMOTIONS), 0.5)
    return {
        "f1": metrics.emotion_metrics(tags, truth, half)["f1"],
        "tags_per_file": float(tags.sum(axis=1).mean()),
        "auc": metrics.emotion_metrics(probs, truth, half)["auc"],
        "files": len(names),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint folder or models:/ URI")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared/data/ravdess-speech")
    parser.add_argument("--work", type=Path, default=Path("/tmp/avemo-level"))
    parser.add_argument("--gains", type=int, nargs="+", default=[-18, -6, 0, 6])
    args = parser.parse_args()
    labels = labels_of_test_actors(args.corpus)
    print(f"{len(labels)} test utterances (actors 21-24), model {args.model}")
    results: list[dict[str, object]] = []
    for gain in args.gains:
        media = args.work / f"gain{gain:+d}"
        make_copies(args.corpus, sorted(labels), gain, media)
        out = args.work / f"labels{gain:+d}"  # labelling is incremental: a rerun adds nothing
        subprocess.run(
            [sys.executable, "-m", "jobs", "label", str(media), str(out), "--model", args.model],
            check=True, capture_output=True, cwd=REPO,
        )  # fmt: skip
        result = score(labels, out)
        print(
            f"gain {gain:+3d} dB: macro-F1 of the tags {result['f1']:.3f}, "
            f"{result['tags_per_file']:.2f} tags per file, AUC {result['auc']:.3f}, "
            f"{result['files']}/{len(labels)} files labelled",
            flush=True,
        )
        results += [
            {"name": f"tags_macro_f1_{gain:+d}db", "value": round(result["f1"], 3), "unit": ""},
            {"name": f"auc_{gain:+d}db", "value": round(result["auc"], 3), "unit": ""},
            {"name": f"files_labelled_{gain:+d}db", "value": result["files"], "unit": "files"},
        ]
    command = ["python", "-m", "bench.level_robustness", "--model", "CHECKPOINT"]
    print(f"saved {save_output(__file__, command, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
