"""The results page from fabricated per-seed records: aggregation, tables, claims, page, plot."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from bench.common import experiment_report as report

VARIANTS = [
    {"name": "audio", "description": "audio only", "conditions": ["a"]},
    {"name": "visual", "description": "visual only", "conditions": ["v"]},
    {"name": "av", "description": "conventional", "conditions": ["av", "a", "v"]},
    {"name": "av-dropout", "description": "conventional + dropout", "conditions": ["av", "a", "v"]},
    {"name": "colearn", "description": "co-learning", "conditions": ["av", "a", "v"]},
    {"name": "colearn-views-only", "description": "no transfer", "conditions": ["av", "a", "v"]},
]


def _records(f1: dict[str, dict[str, float]], seeds: int = 3) -> list[dict]:
    """One record per variant and seed; seed s shifts every score by 0.01 * (s - 1)."""
    records = []
    for variant, by_condition in f1.items():
        for seed in range(seeds):
            shift = 0.01 * (seed - 1)
            test = {
                c: {"f1": v + shift, "wa": 0.5 + v / 2 + shift, "auc": 0.6 + v / 3 + shift}
                for c, v in by_condition.items()
            }
            records.append(
                {
                    "variant": variant,
                    "seed": seed,
                    "test": test,
                    "train_s": 10.0,
                    "mlflow_run_id": f"run-{variant}-{seed}",
                }
            )
    return records


HOLDS = {
    "audio": {"a": 0.60},
    "visual": {"v": 0.50},
    "av": {"av": 0.70, "a": 0.30, "v": 0.20},
    "av-dropout": {"av": 0.68, "a": 0.55, "v": 0.45},
    "colearn": {"av": 0.72, "a": 0.59, "v": 0.49},
    "colearn-views-only": {"av": 0.70, "a": 0.58, "v": 0.48},
}


def test_aggregate_mean_and_sample_std_over_seeds() -> None:
    summary = report.aggregate(_records(HOLDS))
    cell = summary["colearn"]["a"]["f1"]
    assert cell.n == 3
    assert cell.mean == pytest.approx(0.59)
    assert cell.std == pytest.approx(np.std([0.58, 0.59, 0.60], ddof=1))
    assert "v" not in summary["audio"]  # a single-modal model is never scored on the other modality


def test_aggregate_skips_undefined_values_and_single_seed_has_zero_std() -> None:
    records = [
        {"variant": "av", "seed": 0, "test": {"av": {"f1": 0.5, "wa": float("nan"), "auc": 0.7}}},
    ]
    summary = report.aggregate(records)
    assert summary["av"]["av"]["f1"].std == 0.0
    assert "wa" not in summary["av"]["av"]


def test_table_shape_and_dashes_where_a_model_cannot_take_the_condition() -> None:
    summary = report.aggregate(_records(HOLDS))
    rows = report.table(summary, [v["name"] for v in VARIANTS], "f1")
    assert len(rows) == 1 + len(VARIANTS) and all(len(r) == 4 for r in rows)
    by_name = {r[0]: r[1:] for r in rows[1:]}
    assert by_name["audio"][0] == "—" and by_name["audio"][2] == "—"
    assert by_name["colearn"][1] == "0.590 ± 0.010"


def test_claim_checks_hold_on_numbers_that_show_the_claim() -> None:
    checks = report.check_claims(report.aggregate(_records(HOLDS)))
    assert len(checks) == 5
    assert all(c.holds is True for c in checks), checks


def test_claim_checks_fail_when_colearning_loses_single_modal_f1_or_av() -> None:
    numbers = {k: dict(v) for k, v in HOLDS.items()}
    numbers["colearn"] = {"av": 0.65, "a": 0.50, "v": 0.49}  # 83% of audio; below av on av
    numbers["av"] = {"av": 0.70, "a": 0.58, "v": 0.45}  # no collapse on audio
    checks = report.check_claims(report.aggregate(_records(numbers)))
    verdicts = [c.holds for c in checks]
    # conv collapse a, conv collapse v, retention a, retention v, av match
    assert verdicts == [False, False, False, True, False]


def test_claim_checks_say_not_measured_when_runs_are_missing() -> None:
    records = [r for r in _records(HOLDS) if r["variant"] != "audio"]
    checks = report.check_claims(report.aggregate(records))
    assert [c.holds for c in checks].count(None) == 2


def _results(records: list[dict]) -> dict:
    return {
        "command": "python -m bench.paper_claim",
        "commit": "abc123",
        "finished_utc": "2026-01-01T00:00:00Z",
        "wall_s": 600.0,
        "seeds": [0, 1, 2],
        "setup": {"Corpus": "fabricated"},
        "machine": "test machine",
        "variants": VARIANTS,
        "runs": records,
        "missing": [{"variant": "visual", "seed": 2, "reason": "did not finish in time"}],
        "notes": ["A note from the driver."],
        "all_present_f1": {"av": 0.45, "a": 0.46, "v": 0.44},
    }


def test_write_page_writes_markdown_with_numeric_cells_and_a_linked_png(tmp_path: Path) -> None:
    records = [r for r in _records(HOLDS) if not (r["variant"] == "visual" and r["seed"] == 2)]
    page = report.write_page(
        _results(records), tmp_path / "docs" / "results.md", tmp_path / "docs" / "results.png"
    )
    text = page.read_text()
    png = (tmp_path / "docs" / "results.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert "![" in text and "(results.png)" in text
    assert "`visual` seed 2: did not finish in time" in text
    partial = report.page(
        _results([r for r in records if r["variant"] != "colearn"]), "results.png"
    )
    assert "`colearn` seed 0: not run" in partial and "`colearn` seed 2: not run" in partial
    assert "A note from the driver." in text
    assert "macro-F1 0.450 (audio+visual), 0.460 (audio only), 0.440 (visual only)" in text
    for metric in report.METRICS.values():
        section = text.split(f"### {metric}\n\n", 1)[1].split("\n\n", 1)[0]
        rows = [line.strip("|").split("|") for line in section.splitlines()[2:]]
        assert [r[0].strip() for r in rows] == [v["name"] for v in VARIANTS]
        for row in rows:
            for cell in row[1:]:
                cell = cell.strip()
                assert cell == "—" or re.fullmatch(r"\d\.\d{3} ± \d\.\d{3}", cell), cell
    assert text.count("**holds**") == 5


def test_ablation_lines_compare_with_the_parent_model() -> None:
    lines = report._ablation_lines(report.aggregate(_records(HOLDS)))
    views = next(line for line in lines if line.startswith("- `colearn-views-only` vs `colearn`"))
    assert "audio+visual -0.020" in views
    assert all(not math.isnan(float(m)) for m in re.findall(r"[+-]\d\.\d{3}", views))


def test_conventional_models_with_av_thresholds_get_their_own_line(tmp_path: Path) -> None:
    records = _records(HOLDS)
    for r in records:
        if r["variant"] == "av":
            r["test_av_thresholds"] = {"a": {"f1": 0.1}, "v": {"f1": 0.05}, "av": {"f1": 0.7}}
    page = report.write_page(_results(records), tmp_path / "r.md", tmp_path / "r.png").read_text()
    line = next(x for x in page.splitlines() if x.startswith("- `av` with its audio+visual"))
    assert "audio only 0.100 ± 0.000 (vs 0.300 ± 0.010)" in line
    assert "visual only 0.050 ± 0.000 (vs 0.200 ± 0.010)" in line


def test_in_short_counts_what_holds_and_explains_a_missing_collapse() -> None:
    holds = report.aggregate(_records(HOLDS))
    text = report.in_short(report.check_claims(holds), holds, {"runs": []})[0]
    assert text.startswith("In short: 5 of the 5 measured parts")
    assert "does not collapse" not in text
    numbers = {k: dict(v) for k, v in HOLDS.items()}
    numbers["av"] = {"av": 0.70, "a": 0.58, "v": 0.48}  # no collapse after recalibration
    records = _records(numbers)
    for r in records:
        if r["variant"] == "av":
            r["test_av_thresholds"] = {"a": {"f1": 0.55}, "v": {"f1": 0.24}}
    summary = report.aggregate(records)
    text = report.in_short(report.check_claims(summary), summary, {"runs": records})[0]
    assert text.startswith("In short: 3 of the 5 measured parts")
    assert "visual only F1 falls to 50% of the recalibrated value" in text


def _with_zero_fill(records: list[dict], a: float, v: float) -> list[dict]:
    """Add `av-zerofill` records (from the `av` ones) with these single-modal F1s."""
    out = list(records)
    for r in records:
        if r["variant"] == "av":
            test = {"av": r["test"]["av"], "a": {"f1": a}, "v": {"f1": v}}
            out.append({**r, "variant": report.ZERO_FILLED, "test": test})
    return out


def test_zero_filled_conventional_model_gets_its_own_collapse_checks() -> None:
    numbers = {k: dict(v) for k, v in HOLDS.items()}
    numbers["av"] = {"av": 0.70, "a": 0.58, "v": 0.48}  # skipping the stream: no collapse
    records = _with_zero_fill(_records(numbers), a=0.20, v=0.45)  # zeros: collapse on audio only
    summary = report.aggregate(records)
    checks = report.check_claims(summary)
    collapse = [c for c in checks if c.part == "collapse"]
    assert [c.holds for c in collapse] == [False, False, True, False]
    assert "`av-zerofill`" in collapse[2].claim and "audio only" in collapse[2].claim
    assert "33% of it" in collapse[2].measured  # 0.20 / 0.60
    text = report.in_short(checks, summary, {"runs": records})[0]
    assert "(`av`) does not collapse" in text
    assert "it collapses on audio only input, not on visual only" in text
    # Without zero-fill records the checks are the five of the claim, as before.
    assert len(report.check_claims(report.aggregate(_records(numbers)))) == 5


def test_rows_from_an_earlier_grid_fill_missing_variants_and_are_marked() -> None:
    records = _records(HOLDS)
    current = [r for r in records if r["variant"] in ("av", "colearn")]
    earlier = [
        {**r, "test": {c: {**s, "f1": s["f1"] - 0.1} for c, s in r["test"].items()}}
        for r in records
    ]
    results = _results(current)
    results["missing"] = []
    results["earlier"] = {
        "command": "python -m bench.paper_claim --old",
        "commit": "0ldc0mm1t",
        "config": {"epochs": 12},
        "runs": earlier,
        "differences": "mean pooling",
    }
    runs, taken = report.page_runs(results)
    assert taken == {"audio", "visual", "av-dropout", "colearn-views-only"}
    # av and colearn come from this grid only; the others from the earlier one.
    by_variant = {(r["variant"], r["seed"]): r for r in runs}
    assert by_variant[("av", 0)]["test"]["av"]["f1"] == pytest.approx(0.69)
    assert by_variant[("audio", 0)]["earlier"] is True
    text = report.page(results, "results.png")
    section = text.split("### Macro-F1\n\n", 1)[1].split("\n\n", 1)[0]
    names = [line.strip("|").split("|")[0].strip() for line in section.splitlines()[2:]]
    assert names == ["audio †", "visual †", "av", "av-dropout †", "colearn", "colearn-views-only †"]
    assert "`python -m bench.paper_claim --old` at commit `0ldc0mm1t`" in text
    assert "(mean pooling)" in text
    assert "| `audio` † | 0 |" in text and "| `av` | 0 |" in text
    assert "None: all 6 models x 3 seeds finished († rows: in the earlier grid)." in text
    assert "compares with † `audio`, from the earlier grid" in text
    assert "compare two code versions" not in text and "compares two code versions" in text


def test_page_names_no_machine_path_for_the_tracking_store() -> None:
    records = _records(HOLDS)
    for record in records:
        for scores in record["test"].values():
            scores["samples"] = 10.0
    results = _results(records)
    del results["setup"]
    results.update(
        experiment="paper-claim",
        tracking_uri="sqlite:////home/someone/bench/out/paper_claim/mlflow.db",
        config={"model_size": "tiny", "epochs": 12, "batch_size": 16, "lr": 1e-3, "workers": 1},
        corpus={
            "clips_per_split": {"train": 7, "valid": 2, "test": 2},
            "synth_command": "avemo synth DIR",
            "files": 3,
            "media_hours": 0.1,
            "extract_errors": 0,
            "feature_config": {},
        },
        model_config={"d_model": 32, "audio_layers": 1, "visual_layers": 1, "cross_layers": 1},
        model_parameters=1000,
    )
    text = report.page(results, "results.png")
    assert "/home/someone" not in text and "sqlite:" not in text
    assert "SQLite `mlflow.db` in the work folder" in text
    assert report.tracking_description("http://10.0.0.5:5000") == "an MLflow tracking server"


def test_rewriting_the_page_keeps_the_sections_other_scripts_own(tmp_path: Path) -> None:
    from bench.common import page_sections

    page_path, png = tmp_path / "results.md", tmp_path / "results.png"
    report.write_page(_results(_records(HOLDS)), page_path, png)
    first = "## Real speech\n\n| a | 0.392 |"
    page_path.write_text(page_sections.replace_section(page_path.read_text(), "real-speech", first))
    report.write_page(_results(_records(HOLDS)), page_path, png)  # the paper-claim rewrite
    text = page_path.read_text()
    assert text.count("<!-- section real-speech -->") == 1 and "| a | 0.392 |" in text
    updated = page_sections.replace_section(text, "real-speech", "## Real speech\n\n| a | 0.5 |")
    assert "| a | 0.5 |" in updated and "0.392" not in updated  # replaced in place, not appended
    assert updated.count("<!-- end real-speech -->") == 1
    assert updated.split("<!-- section")[0] == text.split("<!-- section")[0]  # the rest untouched
