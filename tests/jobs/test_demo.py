"""`avemo demo` end to end, reduced (small corpus, one epoch), as a subprocess with its own local
Ray cluster: every step runs for real and the report names every new media file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from jobs.demo import MODEL_NAME, DemoConfig


def test_reduced_demo_labels_every_new_file(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "jobs", "demo", str(work), "--clips", "24", "--epochs", "1"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    for step in range(1, 7):
        assert f"[demo] step {step}/6" in out

    success = json.loads((work / "labelled" / "_SUCCESS.json").read_text())
    new_files = sorted(p.name for p in (work / "new-media").iterdir())
    assert len(new_files) == DemoConfig.new_media
    assert success["media_labelled"] == len(new_files) and success["media_failed"] == 0
    assert success["model"]["model_name"] == MODEL_NAME
    per_file = out.split("Tags per media file")[1]
    for name in new_files:
        assert name in per_file
    table = out.split("Tags per clip under each input condition")[1].split("Tags per media file")[0]
    # rows: "file  0.0-5.6 s  streams  ..." (the span holds one space)
    streams = {line.split()[3] for line in table.splitlines()[3:] if line.strip()}
    assert {"audio", "visual", "audio+visual"} <= streams
    # The match score is printed for every clip and every new file (all have a known truth).
    score = re.search(
        r"Mean Jaccard .*: per clip (\d\.\d\d) \((\d+) clips\), "
        r"per file (\d\.\d\d) \((\d+) files\)",
        out,
    )
    assert score is not None, out[-2000:]
    assert int(score[4]) == len(new_files) and int(score[2]) >= len(new_files)
    assert 0.0 <= float(score[1]) <= 1.0 and 0.0 <= float(score[3]) <= 1.0
    assert f"mlflow ui --backend-store-uri sqlite:///{work.resolve() / 'mlflow.db'}" in out

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{work.resolve() / 'mlflow.db'}")
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert str(champion.version) == success["model"]["model_version"]
