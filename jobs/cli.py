"""The `avemo` command line: one subcommand per module in `jobs/`, each a thin library wrapper.

Every command exits non-zero with one clear line (`avemo: error: ...`) on bad arguments or
unreachable services; tracebacks are for bugs only (AVEMO_DEBUG=1 shows them for user errors too).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from jobs.errors import UserError

# Subcommand name -> module in jobs/ that defines `add_arguments(parser)` and `run(args) -> int`.
COMMANDS: dict[str, str] = {
    "synth": "jobs.synth",
    "prepare": "jobs.prepare",
    "extract": "jobs.extract",
    "train": "jobs.train",
    "evaluate": "jobs.evaluate",
    "label": "jobs.label",
    "demo": "jobs.demo",
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' layout and shows every option's default unless its help says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = not any(action.default is hidden for hidden in (None, False, argparse.SUPPRESS))
        if shown and action.option_strings and "default" not in text:
            text = f"{text} (default: %(default)s)".strip()
        return text


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `only` one: each command's module is imported to build
    its subparser, and `avemo extract` need not load torch for `train`'s (seconds of CPU)."""
    parser = argparse.ArgumentParser(
        prog="avemo", description="Audio-visual emotion recognition with interactive co-learning."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        if only is not None and name != only:
            continue
        module = importlib.import_module(module_name)
        summary = (module.__doc__ or "").strip().splitlines()[0]
        sub = subparsers.add_parser(
            name,
            help=summary,
            description=module.__doc__,
            formatter_class=_HelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words[0] if words and words[0] in COMMANDS else None)
    args = parser.parse_args(words)
    try:
        return int(args._module.run(args) or 0)
    except UserError as err:
        if os.environ.get("AVEMO_DEBUG"):
            raise
        print(f"avemo {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"avemo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
