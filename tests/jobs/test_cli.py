"""The CLI contract: every design command exists, help works, and errors are one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jobs.cli import COMMANDS, build_parser


def _avemo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args], capture_output=True, text=True, timeout=120
    )


def test_every_design_command_is_registered() -> None:
    assert set(COMMANDS) == {"synth", "prepare", "extract", "train", "evaluate", "label", "demo"}
    parser = build_parser()
    for name in COMMANDS:
        # Each subcommand parses its own --help (SystemExit 0), so its arguments are well formed.
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, "--help"])
        assert exit_info.value.code == 0


def test_top_level_help_lists_commands() -> None:
    result = _avemo("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


def test_unknown_command_fails_with_usage() -> None:
    result = _avemo("no-such-command")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_user_error_is_one_line_without_traceback() -> None:
    result = _avemo("extract", "/nonexistent/input/dir", "/tmp/avemo-never-written")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert error_lines, result.stderr


def test_a_command_loads_only_its_own_module() -> None:
    # `avemo extract` must not pay for torch (train's import) before it starts: seconds of CPU.
    code = (
        "import sys\nfrom jobs.cli import main\ntry:\n    main(['extract', '--help'])\n"
        "except SystemExit as err:\n    assert err.code == 0\n"
        "print('torch' in sys.modules, 'jobs.train' in sys.modules, 'jobs.extract' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split()[-3:] == ["False", "False", "True"]
