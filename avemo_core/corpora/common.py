"""What every corpus recipe shares: the utterance record, the media walk, the speaker split rule.

A recipe turns a corpus's own layout into `Utterance`s; `avemo_core.corpora.manifest` writes them.
Labels follow one convention across recipes (avemo_core/labels.py: present when intensity > 0):
- an emotion the corpus annotates is its level (> 0) when the utterance shows it, else 0;
- an emotion the corpus never annotates (CREMA-D and EmoDB have no surprise) is None, written as an
  empty cell: unlabelled, so it is neither a positive nor a negative for that corpus;
- an utterance of a category outside the six (neutral, calm, boredom) has all annotated emotions 0:
  an acted "none of these" is an informative negative for each of them.
Intensities count the corpus's own levels from 1 (RAVDESS normal 1, strong 2; CREMA-D low 1,
medium 2, high 3); a corpus or utterance without a graded level gets `UNGRADED` (1.0).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from avemo_core.labels import EMOTIONS, SPLITS

UNGRADED = 1.0  # intensity of a present emotion whose strength the corpus does not grade
# Extensions a recipe looks at (any case): what these corpora ship in or are commonly re-encoded
# to. Each is one `avemo extract` lists too (a test checks it against pipelines/extract/sources.py).
MEDIA_SUFFIXES = frozenset(
    {
        "wav",
        "flac",
        "mp3",
        "m4a",
        "aac",
        "ogg",
        "opus",
        "mp4",
        "m4v",
        "mov",
        "mkv",
        "avi",
        "flv",
        "webm",
    }
)
# When one utterance is there twice (a .wav original and a .flac copy), lossless audio wins.
_PREFERRED_SUFFIXES = ("wav", "flac")
REPORT_FIRST = 5  # names shown for each kind of skipped entry

Intensities = tuple[float | None, ...]


class CorpusError(ValueError):
    """CORPUS_DIR is not the named corpus, or nothing in it can be used: the message says why."""


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One labelled media file of a corpus."""

    path: Path  # absolute path of the media file
    key: str  # the corpus's id of this recording: one file per key is kept
    speaker: str  # the corpus's speaker id, as the corpus writes it
    label: str  # the corpus's own emotion category (e.g. "calm", "ANG", "joy")
    intensities: Intensities  # per EMOTIONS; None: unlabelled in this corpus
    split: str | None = None  # fixed by the corpus's own rule; None: the speaker split decides

    def __post_init__(self) -> None:
        if len(self.intensities) != len(EMOTIONS):
            raise ValueError(f"{self.key}: {len(self.intensities)} intensities for {EMOTIONS}")
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"{self.key}: split {self.split!r} is not one of {SPLITS}")


@dataclasses.dataclass
class Skipped:
    """Entries a recipe could not use, by reason; reported, never fatal while others remain."""

    reasons: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def add(self, reason: str, what: str) -> None:
        self.reasons.setdefault(reason, []).append(what)

    def count(self, reason: str) -> int:
        return len(self.reasons.get(reason, []))

    def to_dict(self) -> dict[str, dict[str, object]]:
        return {
            reason: {"count": len(items), "first": items[:REPORT_FIRST]}
            for reason, items in sorted(self.reasons.items())
        }


@dataclasses.dataclass(frozen=True)
class Scan:
    """What a recipe found: the usable utterances and what it had to leave out."""

    utterances: list[Utterance]
    skipped: Skipped


def one_hot(emotion: str | None, level: float, unlabelled: Sequence[str] = ()) -> Intensities:
    """Intensities of a single-category utterance: `emotion` at `level`, the rest 0 or None."""
    if emotion is not None and emotion not in EMOTIONS:
        raise ValueError(f"{emotion!r} is not one of {EMOTIONS}")
    return tuple(None if e in unlabelled else (level if e == emotion else 0.0) for e in EMOTIONS)


def media_files(corpus_dir: Path) -> list[Path]:
    """Media files anywhere under corpus_dir, sorted; hidden files and folders are left out."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(corpus_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and name.rsplit(".", 1)[-1].lower() in MEDIA_SUFFIXES:
                found.append(Path(folder, name))
    return sorted(found)


def parse_files(
    files: Iterable[Path],
    corpus_dir: Path,
    parse: Callable[[Path], Utterance | None],
    skipped: Skipped,
) -> list[Utterance]:
    """Utterances of the files whose names parse; the others are reported as `unparsed`."""
    out: list[Utterance] = []
    for path in files:
        utterance = parse(path)
        if utterance is None:
            skipped.add("unparsed", str(path.relative_to(corpus_dir)))
        else:
            out.append(utterance)
    return out


def keep_one_per_key(
    utterances: Iterable[Utterance], corpus_dir: Path, skipped: Skipped
) -> list[Utterance]:
    """One file per recording: lossless audio first, then the first path; others are `duplicate`."""

    def rank(u: Utterance) -> tuple[int, str]:
        suffix = u.path.suffix.lstrip(".").lower()
        preferred = _PREFERRED_SUFFIXES.index(suffix) if suffix in _PREFERRED_SUFFIXES else 9
        return preferred, str(u.path)

    chosen: dict[str, Utterance] = {}
    for utterance in sorted(utterances, key=rank):
        if utterance.key in chosen:
            skipped.add("duplicate", str(utterance.path.relative_to(corpus_dir)))
        else:
            chosen[utterance.key] = utterance
    return sorted(chosen.values(), key=lambda u: str(u.path))


def speaker_split(
    speakers: Iterable[str], salt: str, valid_fraction: float, test_fraction: float
) -> dict[str, str]:
    """Speaker -> split: speakers ordered by SHA-256 of `salt:speaker`, then cut by count.

    The first round(n * test_fraction) speakers of that order are test, the next
    round(n * valid_fraction) valid, the rest train; with 3 or more speakers each split gets at
    least one. The same speaker set always gives the same split, whatever the file order.
    """
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1):
        raise ValueError("valid and test fractions must be in (0, 1)")
    if valid_fraction + test_fraction >= 1:
        raise ValueError("valid + test fractions must be < 1 (train needs speakers)")
    ordered = sorted(
        set(speakers), key=lambda s: hashlib.sha256(f"{salt}:{s}".encode()).hexdigest()
    )
    n = len(ordered)
    n_test, n_valid = round(n * test_fraction), round(n * valid_fraction)
    if n >= 3:
        n_test, n_valid = max(1, n_test), max(1, n_valid)
        while n - n_test - n_valid < 1:  # train keeps at least one speaker
            if n_valid >= n_test:
                n_valid -= 1
            else:
                n_test -= 1
    else:
        n_test = n_valid = 0
    splits = ["test"] * n_test + ["valid"] * n_valid + ["train"] * (n - n_test - n_valid)
    return dict(zip(ordered, splits, strict=True))


def with_splits(utterances: Sequence[Utterance], by_speaker: dict[str, str]) -> list[Utterance]:
    return [dataclasses.replace(u, split=by_speaker[u.speaker]) for u in utterances]


def require_found(
    utterances: Sequence[Utterance], what: str, corpus_dir: Path, skipped: Skipped
) -> None:
    """CorpusError when nothing parsed: the folder is not this corpus (or not a copy of it)."""
    if utterances:
        return
    unparsed = skipped.reasons.get("unparsed", [])
    hint = (
        f"; {len(unparsed)} media file(s) there have other names, e.g. {unparsed[0]}"
        if unparsed
        else ""
    )
    raise CorpusError(f"no {what} found under {corpus_dir}{hint}")


def scan_media_names(
    corpus_dir: Path, parse: Callable[[Path], Utterance | None], what: str
) -> Scan:
    """The scan of a corpus whose labels live in its file names: every media file under
    `corpus_dir` parsed by `parse`, one copy per recording; CorpusError naming `what` if none."""
    skipped = Skipped()
    found = parse_files(media_files(corpus_dir), corpus_dir, parse, skipped)
    utterances = keep_one_per_key(found, corpus_dir, skipped)
    require_found(utterances, what, corpus_dir, skipped)
    return Scan(utterances, skipped)
