"""What the benchmarks share: the experiment driver and report, the page writer, provenance."""
