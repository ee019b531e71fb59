"""`python -m bench.paper_claim --quick` end to end: real synth, extraction (Ray Data, ffmpeg), Ray
Train runs tracked in MLflow, test-split evaluation, and the results page with a number in every
cell."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common.experiment_report import METRICS
from bench.common.provenance import REPO_ROOT
from pipelines import tracking

# Table rows: the six trained models and `av-zerofill` (the `av` checkpoints, zero-filled).
VARIANTS = ["audio", "visual", "av", "av-zerofill", "av-dropout", "colearn", "colearn-views-only"]
# Conditions each model is evaluated on: single-modal models only on their own modality.
TAKES = {"audio": {"a"}, "visual": {"v"}}
CONDITIONS = ["av", "a", "v"]


# Synth + extraction + six Ray Train runs: minutes even on idle cores (15+ min on a busy 2-core
# machine), so it runs in `make test-all`; tests/bench/test_experiment.py keeps one real run
# of the grid in the default suite.
@pytest.mark.slow
def test_quick_run_writes_a_complete_table(tmp_path: Path) -> None:
    out = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.paper_claim", "--quick", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["missing"] == []
    assert sorted((r["variant"], r["seed"]) for r in results["runs"]) == sorted(
        (v, 0) for v in VARIANTS
    )
    page = (out / "results.md").read_text()
    png = (out / "results.png").read_bytes()
    assert png.startswith(b"\x89PNG") and "(results.png)" in page
    for metric in METRICS.values():
        section = page.split(f"### {metric}\n\n", 1)[1].split("\n\n", 1)[0]
        header, _, *rows = [line.strip("|").split("|") for line in section.splitlines()]
        assert len(header) == 1 + len(CONDITIONS)
        assert [r[0].strip() for r in rows] == VARIANTS
        for row in rows:
            name = row[0].strip()
            for condition, cell in zip(CONDITIONS, row[1:], strict=True):
                cell = cell.strip()
                if condition in TAKES.get(name, set(CONDITIONS)):
                    assert re.fullmatch(r"\d\.\d{3} ± \d\.\d{3}", cell), (name, condition, cell)
                else:
                    assert cell == "—", (name, condition, cell)
    # Every run is a real MLflow run, finished and tagged with the experiment, variant and seed.
    mlflow_client = tracking.client(results["tracking_uri"])
    for run in results["runs"]:
        info = mlflow_client.get_run(run["mlflow_run_id"])
        assert info.info.status == "FINISHED"
        assert info.data.tags["avemo.experiment"] == "paper-claim"
        # `av-zerofill` re-evaluates the `av` run: it names that run and variant.
        assert info.data.tags["avemo.variant"] == run.get("evaluates", run["variant"])
        assert info.data.tags["avemo.seed"] == "0"
        assert "epoch" in info.data.metrics
