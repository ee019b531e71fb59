"""Screen training recipes on RAVDESS speech fast: one plain PyTorch loop, no Ray, no MLflow.

    .venv/bin/python -m bench.recipe_search [--corpus ../shared/data/ravdess-speech]
        [--cache /tmp/avemo-ravdess-logmel.npz] [--size small] [--model KEY=VALUE ...]
        [--train KEY=VALUE ...] [--average-last K] [--seeds 0]
        [--fold K] [--test] [--dump PATH]

Log-mels are extracted once with the project's `LogMelExtractor` (ffmpeg decodes to 16 kHz mono)
into an .npz cache. Each run trains `--mode audio` (the `a` view) with `train_epoch` and scores
the validation actors (17-20) after every epoch: macro-F1 with thresholds tuned on valid itself
(optimistic), at 0.5, and cross-fitted (thresholds tuned on two valid actors, scored on the other
two, both ways). The final model is the best epoch by valid macro-F1, or with `--average-last K`
the mean of the weights after each of the last K epochs (no choice by valid at all). `--test`
also scores the final model on the test actors (21-24) with thresholds tuned on valid: use it for
the chosen recipe only, never to choose one. Settings are chosen on valid. `--fold K` (1-5)
validates on actors 4K-3..4K instead and trains on the other 16 of actors 1-20: five folds
cross-validate a choice over all 20 non-test actors, where one split of 4 actors is noisy.

`small` trains three networks side by side (`members=3`; `--model members=1` for one, at a
third of the time). The two speaker-level normalisations of `small` (`--model audio_norm=corpus` or
`functionals_norm=split` turn them off) use the library's `avemo_core.speakers` with the actor as
the speaker (no labels used; each actor's statistics over all of that actor's clips); `--test`
then also scores the test actors without speakers (`test_without_speakers`: as labelling new
media sees them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from avemo_core import metrics
from avemo_core.averaging import WeightAverage
from avemo_core.colearning import CoLearningConfig
from avemo_core.corpora import ravdess
from avemo_core.data import Batch, collate
from avemo_core.ensemble import build_model
from avemo_core.features.audio import LogMelExtractor
from avemo_core.labels import EMOTIONS
from avemo_core.model import ModelConfig
from avemo_core.speakers import SpeakerTable, fit_speaker_table
from avemo_core.training import (
    TrainConfig,
    fit_normalisation,
    make_optimizer,
    predict,
    seed_everything,
    set_epoch_lr,
    train_epoch,
)

REPO = Path(__file__).resolve().parents[1]
VALID_HALVES = ((17, 18), (19, 20))  # cross-fitting of thresholds within the valid actors


def _decode(path: Path) -> np.ndarray:
    """(N,) float32 16 kHz mono samples by ffmpeg (argument list, no shell)."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", "16000", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.float32)


def build_cache(corpus: Path, cache: Path) -> None:
    """Log-mels (concatenated), lengths, (N, E) labels and actors of every RAVDESS speech file."""
    files = sorted(corpus.glob("*.flac"))
    if len(files) != 1440:
        raise SystemExit(f"{corpus}: expected the 1,440 RAVDESS speech files, found {len(files)}")
    extractor = LogMelExtractor()
    with ThreadPoolExecutor(2) as pool:
        feats = list(pool.map(lambda p: extractor(_decode(p)), files))
    labels = np.zeros((len(files), len(EMOTIONS)), np.float32)
    actors = np.zeros(len(files), np.int64)
    for i, path in enumerate(files):
        utterance = ravdess.parse(path)  # the corpus recipe's reading of the file name
        if utterance is None:
            raise SystemExit(f"{path}: not a RAVDESS file name")
        actors[i] = int(utterance.speaker)
        labels[i] = [float((level or 0.0) > 0.0) for level in utterance.intensities]
    lengths = np.array([len(f) for f in feats])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, feats=np.concatenate(feats), lengths=lengths, labels=labels, actors=actors)


class Corpus:
    """The cached clips, batched per split through the project's `collate`."""

    def __init__(self, cache: Path) -> None:
        with np.load(cache) as data:  # every key access re-reads the archive: read each once
            feats, lengths = data["feats"], data["lengths"]
            self.labels, self.actors = data["labels"], data["actors"]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.clips = [
            feats[a:b].astype(np.float32) for a, b in zip(offsets[:-1], offsets[1:], strict=True)
        ]

    def indices(self, actors: range | tuple[int, ...]) -> np.ndarray:
        return np.flatnonzero(np.isin(self.actors, list(actors)))

    def batches(
        self,
        index: np.ndarray,
        size: int,
        rng: np.random.Generator | None,
        speakers: SpeakerTable | None = None,
    ) -> list[Batch]:
        """Batches of the clips at `index` (shuffled with `rng`), with each clip's actor's
        statistics attached when given a SpeakerTable."""
        order = rng.permutation(index) if rng is not None else index
        no_video = np.zeros((0, 64, 64), np.uint8)
        out = []
        for chunk in np.array_split(order, max(1, int(np.ceil(len(order) / size)))):
            batch = collate(
                [self.clips[i] for i in chunk], [no_video] * len(chunk), self.labels[chunk]
            )
            if speakers is not None:
                batch = speakers.attach(batch, [str(a) for a in self.actors[chunk]])
            out.append(batch)
        return out

    def speaker_table(self) -> SpeakerTable | None:
        """Every actor's statistics over all of that actor's clips (no labels), as the library
        computes them from a manifest's speaker column."""
        chunks = np.array_split(np.arange(len(self.clips)), max(1, len(self.clips) // 64))
        return fit_speaker_table(
            ([str(a) for a in self.actors[chunk]], self.batches(chunk, len(chunk), None)[0])
            for chunk in chunks
        )


def _pairs(items: list[str]) -> dict[str, object]:
    """KEY=VALUE strings -> dict, values parsed as JSON where they parse (numbers, true)."""
    out: dict[str, object] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def scores(
    probs: np.ndarray, labels: np.ndarray, actors: np.ndarray, halves=VALID_HALVES
) -> dict[str, float]:
    """Valid macro-F1: thresholds tuned on these data, fixed 0.5, and cross-fitted by actor."""
    tuned = metrics.tune_thresholds(probs, labels)
    fixed = np.full(len(EMOTIONS), 0.5)
    crossed = []
    for fit_half, score_half in (halves, halves[::-1]):
        fit_rows, score_rows = np.isin(actors, fit_half), np.isin(actors, score_half)
        thresholds = metrics.tune_thresholds(probs[fit_rows], labels[fit_rows])
        crossed.append(
            metrics.emotion_metrics(probs[score_rows], labels[score_rows], thresholds)["f1"]
        )
    return {
        "tuned": metrics.emotion_metrics(probs, labels, tuned)["f1"],
        "fixed": metrics.emotion_metrics(probs, labels, fixed)["f1"],
        "cross": float(np.mean(crossed)),
        "auc": metrics.emotion_metrics(probs, labels, tuned)["auc"],
    }


def fold_actors(fold: int) -> tuple[int, ...]:
    """Validation actors: fold 0 is the corpus split's (17-20); folds 1-5 are actors 4k-3..4k,
    for cross-validation over the train and valid actors (1-20; the test actors never enter)."""
    if not 0 <= fold <= 5:
        raise SystemExit(f"--fold must be 0-5, got {fold}")
    first = 17 if fold == 0 else 4 * fold - 3
    return tuple(range(first, first + 4))


def run(
    corpus: Corpus,
    model_config: ModelConfig,
    config: TrainConfig,
    average_last: int,
    test: bool,
    fold: int = 0,
    dump: Path | None = None,
) -> dict[str, object]:
    """Train one seed; valid scores per epoch and of the final model (and test when asked).

    With `dump`, every epoch's valid probabilities go to that .npz (with the labels and actors),
    so selection and threshold rules can be compared afterwards without training again."""
    seed_everything(config.seed)
    device = torch.device("cpu")
    model = build_model(model_config)
    valid_actors = fold_actors(fold)
    train_index = corpus.indices(tuple(a for a in range(1, 21) if a not in valid_actors))
    valid_index, test_index = corpus.indices(valid_actors), corpus.indices(range(21, 25))
    halves = (valid_actors[:2], valid_actors[2:])
    speakers = corpus.speaker_table() if model_config.uses_speakers else None
    valid = corpus.batches(valid_index, 32, None, speakers)
    fit_normalisation(model, corpus.batches(train_index, 64, None))

    optimizer = make_optimizer(model, config)
    colearning = CoLearningConfig(mode="audio")
    rng = np.random.default_rng(config.seed)
    average = WeightAverage()
    best: tuple[float, int, dict[str, torch.Tensor]] = (-1.0, -1, {})
    epoch_probs = []
    began = time.perf_counter()
    for epoch in range(config.epochs):
        set_epoch_lr(optimizer, epoch, config)
        train = corpus.batches(train_index, config.batch_size, rng, speakers)
        stats = train_epoch(model, train, optimizer, colearning, config, device)
        if epoch >= config.epochs - average_last:
            average.update(model)
        probs, labels = predict(model, valid, ["a"], device)["a"]
        epoch_probs.append(probs)
        epoch_scores = scores(probs, labels, corpus.actors[valid_index], halves)
        if epoch_scores["tuned"] > best[0]:
            state = {k: v.clone() for k, v in model.state_dict().items()}
            best = (epoch_scores["tuned"], epoch, state)
        print(
            f"  epoch {epoch:2d} loss {stats['loss']:.3f}"
            f"  valid F1 tuned {epoch_scores['tuned']:.3f}"
            f" 0.5 {epoch_scores['fixed']:.3f} cross {epoch_scores['cross']:.3f}"
            f" AUC {epoch_scores['auc']:.3f}  {time.perf_counter() - began:.0f} s",
            flush=True,
        )
    if dump is not None:
        np.savez(
            dump, probs=np.stack(epoch_probs), labels=labels, actors=corpus.actors[valid_index]
        )
    if average_last > 0:
        average.apply_to(model)
        chosen = f"mean of the last {average_last} epochs"
    else:
        model.load_state_dict(best[2])
        chosen = f"best valid epoch {best[1]}"
    probs, labels = predict(model, valid, ["a"], device)["a"]
    result: dict[str, object] = {
        "final": chosen,
        "valid": scores(probs, labels, corpus.actors[valid_index], halves),
        "seconds": time.perf_counter() - began,
    }
    if test:
        thresholds = metrics.tune_thresholds(probs, labels)
        test_probs, test_labels = predict(
            model, corpus.batches(test_index, 32, None, speakers), ["a"], device
        )["a"]
        result["test"] = metrics.emotion_metrics(test_probs, test_labels, thresholds)
        result["test_fixed"] = metrics.emotion_metrics(
            test_probs, test_labels, np.full(len(EMOTIONS), 0.5)
        )
        if speakers is not None:  # as labelling new media sees it: no speaker, the split's stats
            pooled_probs, _ = predict(model, corpus.batches(test_index, 32, None), ["a"], device)[
                "a"
            ]
            result["test_without_speakers"] = metrics.emotion_metrics(
                pooled_probs, test_labels, thresholds
            )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared/data/ravdess-speech")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/avemo-ravdess-logmel.npz"))
    parser.add_argument("--size", default="small", help="named model size")
    parser.add_argument("--model", nargs="*", default=[], help="ModelConfig overrides KEY=VALUE")
    parser.add_argument("--train", nargs="*", default=[], help="TrainConfig overrides KEY=VALUE")
    parser.add_argument("--average-last", type=int, default=0, help="average the last K epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--test", action="store_true", help="also score the test actors")
    parser.add_argument(
        "--fold", type=int, default=0, help="valid actors: 0 = 17-20; 1-5 = actors 4k-3..4k"
    )
    parser.add_argument("--dump", type=Path, help="save every epoch's valid probabilities here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.cache.exists():
        build_cache(args.corpus, args.cache)
    corpus = Corpus(args.cache)
    model_config = ModelConfig.named(args.size, **_pairs(args.model))
    results = []
    for seed in args.seeds:
        config = TrainConfig(**{**_pairs(args.train), "seed": seed})
        print(f"seed {seed}: {model_config.to_dict()} {config.to_dict()}", flush=True)
        dump = args.dump.parent / f"{args.dump.name}.seed{seed}.npz" if args.dump else None
        result = run(corpus, model_config, config, args.average_last, args.test, args.fold, dump)
        print(json.dumps({"seed": seed, **result}, default=float), flush=True)
        results.append(result)
    for key in ("tuned", "fixed", "cross"):
        values = [r["valid"][key] for r in results]
        print(f"valid {key}: {np.mean(values):.3f} ± {np.std(values):.3f}")
    if args.test:
        for key in ("test", "test_without_speakers"):
            values = [r[key]["f1"] for r in results if key in r]
            if values:
                print(f"{key} macro-F1: {np.mean(values):.3f} ± {np.std(values):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
