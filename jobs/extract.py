"""Not yet implemented: see the open issues."""

from __future__ import annotations

import argparse

from jobs.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER)


def run(args: argparse.Namespace) -> int:
    raise UserError("'extract' is not implemented yet")
