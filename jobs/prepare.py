"""Write the manifest of a known corpus from its own layout: labels, speaker-independent splits.

    avemo prepare NAME CORPUS_DIR MANIFEST [--valid-fraction F] [--test-fraction F] [--workers N]

NAME is ravdess, cremad, emodb or meld; CORPUS_DIR the unpacked corpus (any nesting); MANIFEST the
CSV to write (uri,start_s,end_s,split, one intensity per emotion, speaker, label: one row per file,
covering it whole). Beside it, `<MANIFEST stem>.meta.json` records the label mapping, the split
rule, counts per split and emotion, the speakers per split, and what was skipped. Emotions a corpus
does not annotate are left empty (unlabelled). Each recipe's mapping and split rule is documented
in avemo_core/corpora/<NAME>.py. The fractions apply to corpora without a split of their own
(cremad, emodb); ravdess and meld keep theirs.

Example:
    avemo prepare ravdess ../shared/data/ravdess-speech work/ravdess.csv
    avemo extract ../shared/data/ravdess-speech work/shards --manifest work/ravdess.csv
"""

from __future__ import annotations

import argparse
import sys

from avemo_core.config import ConfigError
from avemo_core.corpora import RECIPES, CorpusError, PrepareConfig, prepare
from jobs.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("corpus", metavar="NAME", choices=list(RECIPES), help=", ".join(RECIPES))
    parser.add_argument("corpus_dir", metavar="CORPUS_DIR", help="local folder of the corpus")
    parser.add_argument("manifest", metavar="MANIFEST", help="local CSV file to write")
    parser.add_argument(
        "--valid-fraction", type=float, metavar="F",
        help="share of speakers in valid (default: cremad 0.1, emodb 0.2)",
    )  # fmt: skip
    parser.add_argument(
        "--test-fraction", type=float, metavar="F",
        help="share of speakers in test (default: cremad 0.1, emodb 0.2)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=PrepareConfig.workers, metavar="N",
        help="threads reading file lengths",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    for path in (args.corpus_dir, args.manifest):
        if "://" in path:
            raise UserError(f"CORPUS_DIR and MANIFEST must be local paths, got {path!r}")
    try:
        config = PrepareConfig(
            corpus=args.corpus,
            valid_fraction=args.valid_fraction,
            test_fraction=args.test_fraction,
            workers=args.workers,
        )
        summary = prepare(
            config,
            args.corpus_dir,
            args.manifest,
            progress=lambda line: print(line, file=sys.stderr),
        )
    except (ConfigError, CorpusError) as err:
        raise UserError(str(err)) from err
    except OSError as err:
        raise UserError(f"cannot read or write {err.filename}: {err.strerror or err}") from err
    speakers = summary.speakers_per_split
    splits = ", ".join(
        f"{n} {split} ({speakers[split]} speaker{'' if speakers[split] == 1 else 's'})"
        for split, n in summary.per_split.items()
    )
    total = sum(summary.per_split.values())
    print(f"{args.corpus}: {total} files in {summary.elapsed_s:.1f} s: {splits}")
    for reason, entry in summary.skipped.items():
        print(f"skipped {entry['count']} {reason}, e.g. {'; '.join(entry['first'][:3])}")
    print(f"manifest: {summary.manifest}\nmetadata: {summary.metadata}")
    return 0
