"""Run the whole flow on a small built-in corpus: synth -> extract -> train -> label.

    avemo demo [WORKDIR]
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workdir", nargs="?", default="demo-work", help="where the demo writes")


def run(args: argparse.Namespace) -> int:
    for step in ("synth", "extract", "train", "label"):
        print(f"[demo] {step}: not yet implemented (see the open issues)")
    return 0
