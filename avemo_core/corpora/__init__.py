"""Corpus recipes: a corpus's own layout in, a manifest for `avemo extract --manifest` out.

One module per corpus (ravdess, cremad, emodb, meld) reads the file names or label files, maps the
corpus's categories onto the six emotions and says which split each file is in; its docstring is
the documentation of that mapping and split rule. `prepare` adds each file's length and writes the
manifest and its metadata (avemo_core/corpora/manifest.py). The label convention shared by every
recipe is in avemo_core/corpora/common.py.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import avemo_core
from avemo_core.config import FrozenConfig, require
from avemo_core.corpora import cremad, emodb, meld, ravdess
from avemo_core.corpora.common import CorpusError, Scan, Utterance, speaker_split, with_splits
from avemo_core.corpora.durations import durations
from avemo_core.corpora.manifest import counts, write_prepared
from avemo_core.media.errors import MediaError

# Recipe name -> module with NAME, scan(corpus_dir) -> Scan, metadata() and, when the corpus has
# no split of its own, DEFAULT_FRACTIONS (valid, test) for the speaker split.
RECIPES: dict[str, ModuleType] = {m.NAME: m for m in (ravdess, cremad, emodb, meld)}

__all__ = ["RECIPES", "CorpusError", "PrepareConfig", "PrepareSummary", "prepare"]


def has_fixed_split(name: str) -> bool:
    return not hasattr(RECIPES[name], "DEFAULT_FRACTIONS")


@dataclasses.dataclass(frozen=True)
class PrepareConfig(FrozenConfig):
    corpus: str  # recipe name, one of RECIPES
    valid_fraction: float | None = None  # share of speakers in valid; None: the recipe's default
    test_fraction: float | None = None  # share of speakers in test; None: the recipe's default
    workers: int = 4  # threads reading file lengths (ffprobe runs for containers without a header)

    def validate(self) -> None:
        require(self.corpus in RECIPES, f"unknown corpus {self.corpus!r}; known: {list(RECIPES)}")
        given = self.valid_fraction is not None or self.test_fraction is not None
        require(
            not (given and has_fixed_split(self.corpus)),
            f"{self.corpus} has a fixed split; valid/test fractions apply to "
            f"{[n for n in RECIPES if not has_fixed_split(n)]}",
        )
        valid = 0.1 if self.valid_fraction is None else self.valid_fraction
        test = 0.1 if self.test_fraction is None else self.test_fraction
        require(0 < valid < 1 and 0 < test < 1, "valid and test fractions must be in (0, 1)")
        require(valid + test < 1, "valid + test fractions must be < 1")
        require(self.workers >= 1, "workers must be >= 1")

    def fractions(self) -> tuple[float, float]:
        """(valid, test) shares of the speakers for a corpus without a split of its own."""
        default_valid, default_test = RECIPES[self.corpus].DEFAULT_FRACTIONS
        return (
            default_valid if self.valid_fraction is None else self.valid_fraction,
            default_test if self.test_fraction is None else self.test_fraction,
        )


@dataclasses.dataclass(frozen=True)
class PrepareSummary:
    manifest: Path
    metadata: Path
    per_split: dict[str, int]  # split -> utterances written
    speakers_per_split: dict[str, int]
    skipped: dict[str, dict[str, Any]]  # reason -> {"count", "first"}
    elapsed_s: float


def _split(scan: Scan, config: PrepareConfig) -> tuple[list[Utterance], dict[str, Any]]:
    if has_fixed_split(config.corpus):
        return scan.utterances, {}
    valid, test = config.fractions()
    by_speaker = speaker_split((u.speaker for u in scan.utterances), config.corpus, valid, test)
    rule = (
        f"speakers ordered by sha256('{config.corpus}:' + speaker id); the first "
        f"round(n * {test}) are test, the next round(n * {valid}) valid, the rest train (each "
        f"split at least one speaker when n >= 3)"
    )
    return with_splits(scan.utterances, by_speaker), {
        "split_rule": rule,
        "split_fractions": {"valid": valid, "test": test},
    }


def prepare(
    config: PrepareConfig,
    corpus_dir: str | os.PathLike,
    manifest: str | os.PathLike,
    progress: Callable[[str], None] | None = None,
) -> PrepareSummary:
    """Scan corpus_dir with the named recipe and write MANIFEST and its metadata beside it."""
    started = time.perf_counter()
    root = Path(os.path.abspath(corpus_dir))
    if not root.is_dir():
        raise CorpusError(f"corpus folder not found: {corpus_dir}")
    manifest_path = Path(os.path.abspath(manifest))
    if manifest_path.is_dir():
        raise CorpusError(f"MANIFEST {manifest} is a folder; give the CSV file to write")
    recipe = RECIPES[config.corpus]
    scan = recipe.scan(root)
    utterances, split_meta = _split(scan, config)
    lengths = durations([u.path for u in utterances], config.workers, progress)
    rows: list[tuple[Utterance, float]] = []
    for utterance, length in zip(utterances, lengths, strict=True):
        if isinstance(length, MediaError):
            scan.skipped.add("unreadable", f"{utterance.path.relative_to(root)}: {length}")
        else:
            rows.append((utterance, length))
    if not rows:
        raise CorpusError(f"none of the {len(utterances)} {config.corpus} files under {root} reads")
    tally = counts([u for u, _ in rows])
    metadata = {
        "corpus": config.corpus,
        "corpus_dir": str(root),
        "avemo_version": avemo_core.__version__,
        "config": config.to_dict(),
        **recipe.metadata(),
        **split_meta,
        "label_rule": "intensity > 0: present; 0: absent; empty: unlabelled in this corpus",
        "counts": tally,
        "skipped": scan.skipped.to_dict(),
    }
    meta_path = write_prepared(rows, manifest_path, metadata)
    return PrepareSummary(
        manifest=manifest_path,
        metadata=meta_path,
        per_split=tally["per_split"],
        speakers_per_split=tally["speakers_per_split"],
        skipped=scan.skipped.to_dict(),
        elapsed_s=time.perf_counter() - started,
    )
