"""One page for every benchmark in `bench/`: each script's goal, the command that produced its
numbers, the machine, and the numbers themselves.

A bench script tells the page what it measured in one of two ways:
- it calls `save_output(...)` and so writes `bench/out/<script>.json`:
  {"command", "machine", "commit", "finished_utc", "results": [{"name", "value", "unit", "goal",
  "met"}, ...]} (a plain {name: value} mapping is accepted too);
- or the page writer runs it (`--run`) and keeps its printed output, with the command, the
  machine and the exit code, in `bench/out/<script>.run.json`.
When both exist, the script's own record wins (a `--quick` run through the page writer never
replaces a full run's numbers). The goal is the script's module docstring (read with `ast`,
nothing is imported), so the page states what each number is measured against without a second
copy of it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.common.provenance import REPO_ROOT, git_commit, machine_description

BENCH_DIR = REPO_ROOT / "bench"
OUT_DIR = BENCH_DIR / "out"
# Scripts in bench/ that are not benchmarks themselves.
NOT_BENCHMARKS = frozenset({"write_benchmarks_page"})


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def save_output(
    script: str,
    command: Sequence[str],
    results: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    out_dir: str | Path = OUT_DIR,
) -> Path:
    """Write `<out_dir>/<script stem>.json` for the benchmarks page; returns its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "command": " ".join(command),
        "machine": machine_description(),
        "commit": git_commit(),
        "finished_utc": utc_now(),
        "results": results,
    }
    path = out_dir / f"{Path(script).stem}.json"
    path.write_text(json.dumps(record, indent=2, default=float) + "\n")
    return path


def benchmark_scripts(bench_dir: str | Path = BENCH_DIR) -> list[Path]:
    """The benchmark scripts: `bench/*.py` except helpers (leading `_`) and the page writer."""
    return sorted(
        p
        for p in Path(bench_dir).glob("*.py")
        if not p.name.startswith("_") and p.stem not in NOT_BENCHMARKS
    )


def docstring(script: str | Path) -> str:
    """The script's module docstring, parsed without importing it."""
    tree = ast.parse(Path(script).read_text(), filename=str(script))
    return ast.get_docstring(tree) or ""


def module_name(script: Path) -> str:
    """`bench/extract.py` -> `bench.extract`: scripts run as modules of their package."""
    return f"{script.parent.name}.{script.stem}"


def run_script(script: Path, args: Sequence[str], out_dir: str | Path, timeout_s: float) -> Path:
    """Run one bench script as a module (`python -m bench.NAME args`, from the folder holding the
    package); keep its output, exit code and machine in `<stem>.run.json`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", module_name(script), *args]
    start = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, cwd=script.parent.parent, capture_output=True, text=True, timeout=timeout_s
        )
        # what the script printed; the libraries' logs (stderr) only when it failed
        rc, output = proc.returncode, proc.stdout + (proc.stderr if proc.returncode else "")
    except subprocess.TimeoutExpired as err:
        rc, output = None, f"timed out after {timeout_s:.0f} s\n{err.stdout or ''}"
    record = {
        "command": " ".join(["python", "-m", module_name(script), *args]),
        "machine": machine_description(),
        "commit": git_commit(),
        "finished_utc": utc_now(),
        "wall_s": time.monotonic() - start,
        "returncode": rc,
        "output": output[-20_000:],
    }
    path = out_dir / f"{script.stem}.run.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "—"}[value]
    return str(value)


def results_table(results: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> str:
    """Markdown table of a script's results: a list of records or a flat {name: value} mapping."""
    if isinstance(results, Mapping):
        rows = [["measure", "value"], *([k, _value(v)] for k, v in results.items())]
    else:
        cols = ["name", "value", "unit", "goal", "met"]
        cols = [c for c in cols if any(c in r for r in results)]
        cols += sorted({k for r in results for k in r} - set(cols))
        rows = [cols, *([_value(r.get(c)) for c in cols] for r in results)]
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])


def section(script: Path, out_dir: Path) -> str:
    """The page's part for one script, from whichever saved output it has (JSON results first)."""
    rel = f"bench/{script.name}"
    doc = docstring(script).strip()
    lines = [f"## `{rel}`", "", "**Goal** (from the script's docstring):", ""]
    lines += ["> " + line if line else ">" for line in (doc or "(no docstring)").splitlines()]
    lines.append("")
    names = (f"{script.stem}.json", f"{script.stem}.run.json")
    outputs = [out_dir / name for name in names if (out_dir / name).exists()]
    if not outputs:
        run = f"python -m {module_name(script)}"
        lines.append(f"Not run yet: `{run}`, then `python -m bench.write_benchmarks_page`.")
        return "\n".join(lines) + "\n"
    record = json.loads(outputs[0].read_text())  # the script's own record over a captured run
    lines += [
        f"- **Command**: `{record['command']}`",
        f"- **Machine**: {record['machine']}",
        f"- **Commit**: `{record.get('commit', 'unknown')}`; finished {record['finished_utc']}",
    ]
    if "returncode" in record:
        lines.append(f"- **Exit code**: {record['returncode']}, wall {record['wall_s']:.0f} s")
    lines.append("")
    if "results" in record:
        lines.append(results_table(record["results"]))
    else:
        lines += ["Printed output:", "", "```", record["output"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def write_page(
    page_path: str | Path,
    bench_dir: str | Path = BENCH_DIR,
    out_dir: str | Path = OUT_DIR,
    command: str = "python -m bench.write_benchmarks_page",
) -> Path:
    """Write the benchmarks page from the saved outputs of every script in `bench_dir`."""
    scripts = benchmark_scripts(bench_dir)
    parts = [
        "# Benchmarks",
        "",
        f"<!-- Written by `{command}`; do not edit by hand. -->",
        "Every benchmark script in `bench/`, with the command that produced the numbers below, the "
        "machine it ran on and the goal it is measured against. Rerun a script's command to "
        f"reproduce its numbers, then `{command}` to refresh this page. Generated {utc_now()}.",
        "",
    ]
    parts += [section(script, Path(out_dir)) for script in scripts]
    page_path = Path(page_path)
    page_path.parent.mkdir(parents=True, exist_ok=True)
    page_path.write_text("\n".join(parts))
    return page_path
