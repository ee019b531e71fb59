"""Benchmarks and the experiment behind the results page, each run from the repository root as

    python -m bench.NAME [--quick]

One module per benchmark at this level (its docstring states the goal and the command); what they
share is in `bench/common/`: the experiment driver and its report (`experiment`,
`experiment_report`), the benchmarks page writer (`benchmarks_page`), provenance (commit, machine)
and a /proc process scan (`procs`). `python -m bench.write_benchmarks_page` collects every
benchmark's saved output into docs/benchmarks.md.
"""
