"""Collect the outputs of every bench/ script into docs/benchmarks.md.

    python -m bench.write_benchmarks_page                    # from saved outputs in bench/out/
    python -m bench.write_benchmarks_page --run extract      # run bench/extract.py first
    python -m bench.write_benchmarks_page --run all --quick  # run every script with --quick first

A script that saves `bench/out/<name>.json` (bench.common.benchmarks_page.save_output) shows
its table; one run here shows its printed output. Each entry carries the command that reproduces it.
"""

from __future__ import annotations

import argparse
import sys

from bench.common import benchmarks_page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", default=str(benchmarks_page.REPO_ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--run", nargs="*", default=[], help="script names to run first, or 'all'")
    parser.add_argument("--quick", action="store_true", help="pass --quick to the scripts it runs")
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="per script")
    args = parser.parse_args(argv)
    scripts = benchmarks_page.benchmark_scripts()
    names = {s.stem for s in scripts}
    wanted = names if "all" in args.run else set(args.run)
    if unknown := wanted - names:
        parser.error(f"no such bench script(s): {sorted(unknown)}; have {sorted(names)}")
    for script in scripts:
        if script.stem in wanted:
            print(f"running {script.name} ...", flush=True)
            extra = ["--quick"] if args.quick else []
            benchmarks_page.run_script(script, extra, benchmarks_page.OUT_DIR, args.timeout_s)
    page = benchmarks_page.write_page(args.page)
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
