"""From per-seed experiment records to the results page: mean ± std tables, plot, claim checks.

The experiment driver (`bench/common/experiment.py`) writes one record per trained model and seed;
this module never trains anything, so the page can be rebuilt from the saved `results.json` alone
and tests can feed it fabricated records. Every number on the page comes from the records: the
reading of the claim is computed, never typed in.

A record: {"variant": str, "seed": int, "test": {condition: {"f1": .., "wa": .., "auc": ..}}, ...}.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from avemo_core.labels import CONDITIONS
from bench.common import page_sections

# Macro metrics on the page, with their display names (the design's WA, F1 and AUC).
METRICS: dict[str, str] = {"f1": "Macro-F1", "wa": "Mean WA", "auc": "Mean AUC"}
CONDITION_NAMES: dict[str, str] = {"av": "audio+visual", "a": "audio only", "v": "visual only"}
# What the claim asks of the co-learned model on single-modal input, as a share of the dedicated
# single-modal model's F1.
RETENTION_GOAL = 0.95
# The conventional model scored with zeros for the missing modality (bench.common.experiment).
ZERO_FILLED = "av-zerofill"
# Marks a table row whose runs come from an earlier grid (`results["earlier"]`).
EARLIER_MARK = " †"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One metric of one model on one condition, over seeds."""

    mean: float
    std: float  # sample standard deviation (ddof=1); 0 with a single seed
    n: int  # seeds that produced a value
    values: tuple[float, ...]

    def text(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


Summary = dict[str, dict[str, dict[str, Cell]]]  # variant -> condition -> metric -> Cell


def aggregate(
    records: Iterable[Mapping[str, Any]], metrics: Sequence[str] = tuple(METRICS)
) -> Summary:
    """Mean and sample std over seeds of every (variant, condition, metric) a record measured."""
    values: dict[tuple[str, str, str], list[float]] = {}
    for record in records:
        for condition, scores in record.get("test", {}).items():
            for metric in metrics:
                value = scores.get(metric)
                if value is not None and math.isfinite(value):
                    values.setdefault((record["variant"], condition, metric), []).append(
                        float(value)
                    )
    summary: Summary = {}
    for (variant, condition, metric), vals in values.items():
        arr = np.asarray(vals)
        std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
        cell = Cell(mean=float(arr.mean()), std=std, n=int(arr.size), values=tuple(vals))
        summary.setdefault(variant, {}).setdefault(condition, {})[metric] = cell
    return summary


def table(
    summary: Summary,
    variants: Sequence[str],
    metric: str,
    conditions: Sequence[str] = CONDITIONS,
    earlier: Collection[str] = (),
) -> list[list[str]]:
    """Rows of one metric's table: header, then one row per variant; "—" where a model cannot take
    the condition (a single-modal model on the other modality) or no run finished. Variants in
    `earlier` (their runs come from an earlier grid) are marked."""
    rows = [["model", *(CONDITION_NAMES.get(c, c) for c in conditions)]]
    for variant in variants:
        row = [variant + (EARLIER_MARK if variant in earlier else "")]
        for condition in conditions:
            cell = summary.get(variant, {}).get(condition, {}).get(metric)
            row.append(cell.text() if cell is not None else "—")
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class ClaimCheck:
    """One part of the paper's claim, the numbers that test it, and whether it holds here."""

    claim: str
    measured: str
    holds: bool | None  # None: the runs it needs are missing
    part: str = ""  # collapse | retention | av-match: which part of the claim it tests


def _mean(summary: Summary, variant: str, condition: str, metric: str = "f1") -> Cell | None:
    return summary.get(variant, {}).get(condition, {}).get(metric)


def check_claims(
    summary: Summary,
    conventional: str = "av",
    colearned: str = "colearn",
    single: Mapping[str, str] | None = None,
) -> list[ClaimCheck]:
    """The three parts of the claim, on macro-F1 (means over seeds; the std is shown beside them).

    1. The conventional model loses a large part (> 20%) of its F1 on single-modal input, measured
       against the dedicated single-modal model of that modality: as avemo runs it (`conventional`,
       an absent stream skipped) and, when measured, given zeros for it (`av-zerofill`).
    2. The co-learned model keeps >= 95% of the dedicated single-modal model's F1 there.
    3. The co-learned model at least matches the conventional one on audio+visual input.
    """
    single = dict(single or {"a": "audio", "v": "visual"})
    checks: list[ClaimCheck] = []
    # The conventional model as avemo runs it (absent stream skipped) and, where measured, as
    # the paper runs it (zeros for the missing modality).
    conventionals = [conventional] + [v for v in (ZERO_FILLED,) if v in summary]
    for model in conventionals:
        for condition, dedicated in single.items():
            checks.append(_collapse_check(summary, model, condition, dedicated))
    for condition, dedicated in single.items():
        ref = _mean(summary, dedicated, condition)
        co = _mean(summary, colearned, condition)
        name = CONDITION_NAMES[condition]
        if ref is None or co is None:
            checks.append(
                ClaimCheck(
                    f"co-learned model keeps F1 on {name} input", "runs missing", None, "retention"
                )
            )
        else:
            share = co.mean / ref.mean
            checks.append(
                ClaimCheck(
                    f"co-learned `{colearned}` keeps >= {RETENTION_GOAL:.0%} of the dedicated "
                    f"`{dedicated}` model's F1 on {name} input",
                    f"F1 {co.text()} against {ref.text()} ({share:.1%})",
                    share >= RETENTION_GOAL,
                    "retention",
                )
            )
    co_av = _mean(summary, colearned, "av")
    conv_av = _mean(summary, conventional, "av")
    if co_av is None or conv_av is None:
        checks.append(
            ClaimCheck(
                "co-learned matches conventional on audio+visual", "runs missing", None, "av-match"
            )
        )
    else:
        delta = co_av.mean - conv_av.mean
        checks.append(
            ClaimCheck(
                f"co-learned `{colearned}` at least matches conventional `{conventional}` on "
                "audio+visual input",
                f"F1 {co_av.text()} against {conv_av.text()} (difference {delta:+.3f})",
                delta >= 0.0,
                "av-match",
            )
        )
    return checks


def _collapse_check(summary: Summary, model: str, condition: str, dedicated: str) -> ClaimCheck:
    """Part 1 for one conventional model and single-modal condition."""
    ref, conv, conv_av = (
        _mean(summary, dedicated, condition),
        _mean(summary, model, condition),
        _mean(summary, model, "av"),
    )
    name = CONDITION_NAMES[condition]
    if ref is None or conv is None or conv_av is None:
        return ClaimCheck(
            f"conventional model collapses on {name} input", "runs missing", None, "collapse"
        )
    share = conv.mean / ref.mean
    return ClaimCheck(
        f"conventional `{model}` loses a large part (> 20%) of its F1 on {name} input",
        f"F1 {conv.text()} on {name} against {ref.text()} for the dedicated `{dedicated}` model "
        f"({share:.0%} of it; {conv_av.text()} on audio+visual)",
        share < 0.8,
        "collapse",
    )


def plot(summary: Summary, variants: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Grouped bars, one panel per metric: conditions on x, one bar per model, std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(5.0 * len(METRICS), 4.2), sharey=False)
    width = 0.8 / max(1, len(variants))
    x = np.arange(len(CONDITIONS))
    for ax, (metric, label) in zip(np.atleast_1d(axes), METRICS.items(), strict=True):
        for i, variant in enumerate(variants):
            cells = [_mean(summary, variant, c, metric) for c in CONDITIONS]
            means = [cell.mean if cell else np.nan for cell in cells]
            stds = [cell.std if cell else 0.0 for cell in cells]
            ax.bar(
                x + (i - (len(variants) - 1) / 2) * width,
                means,
                width,
                yerr=stds,
                capsize=2,
                label=variant,
            )
        ax.set_xticks(x, [CONDITION_NAMES[c] for c in CONDITIONS])
        ax.set_title(label)
        ax.set_ylim(0.0 if metric == "f1" else 0.4, 1.0)
        ax.grid(axis="y", alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _ablation_lines(summary: Summary) -> list[str]:
    """What each ablation changes against its parent, per condition, on macro-F1."""
    pairs = (
        ("colearn-views-only", "colearn", "removing the two-way transfer terms (views only)"),
        ("av-dropout", "av", "conventional training with random modality dropout"),
        ("av-dropout", "colearn", "modality dropout against co-learning"),
    )
    lines = []
    for variant, parent, what in pairs:
        parts = []
        for condition in CONDITIONS:
            a, b = _mean(summary, variant, condition), _mean(summary, parent, condition)
            if a is not None and b is not None:
                parts.append(f"{CONDITION_NAMES[condition]} {a.mean - b.mean:+.3f}")
        if parts:
            lines.append(f"- `{variant}` vs `{parent}` ({what}): F1 " + ", ".join(parts) + ".")
    return lines


def _uncalibrated_lines(records: Sequence[Mapping[str, Any]], summary: Summary) -> list[str]:
    """Conventional models scored with their av thresholds on single-modal input as well."""
    uncalibrated = aggregate(
        {"variant": r["variant"], "test": r["test_av_thresholds"]}
        for r in records
        if "test_av_thresholds" in r
    )
    lines = []
    for variant, by_condition in uncalibrated.items():
        parts = []
        for condition in ("a", "v"):
            cell = by_condition.get(condition, {}).get("f1")
            tuned = _mean(summary, variant, condition)
            if cell is not None and tuned is not None:
                parts.append(f"{CONDITION_NAMES[condition]} {cell.text()} (vs {tuned.text()})")
        if parts:
            lines.append(
                f"- `{variant}` with its audio+visual thresholds on single-modal input too (no "
                "recalibration for a missing modality): F1 " + ", ".join(parts) + "."
            )
    return lines


def in_short(
    checks: Sequence[ClaimCheck], summary: Summary, results: Mapping[str, Any]
) -> list[str]:
    """A few sentences over the claim checks: what holds, what does not, and how firm it is."""
    measured = [c for c in checks if c.holds is not None]
    if not measured:
        return ["Too few runs finished to test any part of the claim."]
    parts = {part: [c for c in checks if c.part == part] for part in ("collapse", "retention")}
    retention, av_match = parts["retention"], next(c for c in checks if c.part == "av-match")
    skipped = [c for c in parts["collapse"] if f"`{ZERO_FILLED}`" not in c.claim]
    zero_filled = [c for c in parts["collapse"] if f"`{ZERO_FILLED}`" in c.claim]
    lines = [
        f"In short: {sum(bool(c.holds) for c in measured)} of the {len(measured)} measured parts "
        "of the claim hold on this corpus."
    ]
    if all(c.holds for c in retention) and av_match.holds:
        co, conv = _mean(summary, "colearn", "av"), _mean(summary, "av", "av")
        margin = (
            "ahead of the conventional model by more than the spread over seeds"
            if co.mean - conv.mean > max(co.std, conv.std)
            else f"level with the conventional model ({co.mean - conv.mean:+.3f}, within the "
            "spread over seeds)"
        )
        lines.append(
            "The co-learned model serves all three inputs with one set of weights: on single-"
            "modal input it matches the dedicated single-modal models, and on audio+visual input "
            f"it is {margin}."
        )
    elif any(c.holds is False for c in [*retention, av_match]):
        failed = [c.claim for c in [*retention, av_match] if c.holds is False]
        lines.append("Not shown here for the co-learned model: " + "; ".join(failed) + ".")
    if any(c.holds is False for c in skipped):
        lines.append(
            "The conventional model as avemo runs it (`av`) does not collapse on single-modal "
            "input: avemo's model skips an absent stream and averages the pooled streams that are "
            "present, and its thresholds are tuned per condition on validation like every other "
            "model's."
        )
    if zero_filled and all(c.holds is not None for c in zero_filled):
        collapsed = [c for c in zero_filled if c.holds]
        if collapsed:
            lines.append(
                f"Given zeros for the missing modality, as the paper does (`{ZERO_FILLED}`: the "
                "same checkpoints), it collapses on "
                + " and ".join(_condition_of(c) for c in collapsed)
                + " input"
                + (
                    ", not on " + " and ".join(_condition_of(c) for c in zero_filled if not c.holds)
                    if len(collapsed) < len(zero_filled)
                    else ""
                )
                + ": the failure the paper reports comes from the zero-filled stand-in, which "
                "skipping the absent stream avoids."
            )
        else:
            lines.append(
                f"Given zeros for the missing modality, as the paper does (`{ZERO_FILLED}`: the "
                "same checkpoints), it does not collapse either."
            )
    kept = aggregate(
        {"variant": r["variant"], "test": r["test_av_thresholds"]}
        for r in results["runs"]
        if r["variant"] == "av" and "test_av_thresholds" in r
    ).get("av", {})
    drops = {
        c: kept[c]["f1"].mean / _mean(summary, "av", c).mean
        for c in ("a", "v")
        if "f1" in kept.get(c, {}) and _mean(summary, "av", c) is not None
    }
    if any(c.holds is False for c in skipped) and drops and min(drops.values()) < 0.8:
        worst = min(drops, key=drops.get)
        lines.append(
            "It does collapse when it keeps its audio+visual thresholds, as a model trained "
            f"only on paired input would: {CONDITION_NAMES[worst]} F1 falls to "
            f"{drops[worst]:.0%} of the recalibrated value (below)."
        )
    floor = results.get("all_present_f1", {})
    best = max(
        (
            cell.mean
            for by_c in summary.values()
            for m in by_c.values()
            for k, cell in m.items()
            if k == "f1"
        ),
        default=float("nan"),
    )
    if floor:
        config = results.get("config", {})
        train_clips = results.get("corpus", {}).get("clips_per_split", {}).get("train", "?")
        lines.append(
            f"All models are weak in absolute terms (best macro-F1 {best:.3f} against "
            f"{min(floor.values()):.3f}-{max(floor.values()):.3f} for deciding every emotion "
            f"present): the `{config.get('model_size', '?')}` model, {config.get('epochs', '?')} "
            f"epochs and {train_clips} training clips were what two shared cores allowed. Read "
            "each difference against the spread over seeds (the ± columns)."
        )
    return [" ".join(lines)]


def _condition_of(check: ClaimCheck) -> str:
    """The condition name a collapse check is about (from its claim text)."""
    return next(name for name in CONDITION_NAMES.values() if f" on {name} input" in check.claim)


def page_runs(results: Mapping[str, Any]) -> tuple[list[dict[str, Any]], set[str]]:
    """This grid's runs, plus an earlier grid's (`results["earlier"]`) for every variant this one
    did not run; returns the runs and the variants taken from the earlier grid."""
    runs = [dict(r) for r in results["runs"]]
    ran = {r["variant"] for r in runs}
    earlier_runs = (results.get("earlier") or {}).get("runs", [])
    taken = {r["variant"] for r in earlier_runs} - ran
    runs += [{**r, "earlier": True} for r in earlier_runs if r["variant"] in taken]
    return runs, taken


def tracking_description(uri: str) -> str:
    """Where the runs are tracked, without this machine's paths."""
    if uri.startswith("sqlite:"):
        return f"SQLite `{Path(uri.rsplit('/', 1)[-1]).name}` in the work folder"
    if uri.startswith(("http://", "https://")):
        return "an MLflow tracking server"
    return "a local MLflow store"


def setup_facts(results: Mapping[str, Any]) -> dict[str, str]:
    """What was run, as page lines: corpus, model, training, tracking, test sizes.

    Built from the driver's structured fields; a ready `setup` mapping is used as it is.
    """
    if "setup" in results:
        return dict(results["setup"])
    config, corpus = results["config"], results["corpus"]
    splits = corpus["clips_per_split"]
    model = results["model_config"]
    test_sizes: dict[str, float] = {}
    for run in results["runs"]:
        for condition, scores in run["test"].items():
            test_sizes[condition] = scores.get("samples", float("nan"))
    visual = corpus["feature_config"].get("visual", {})
    audio = corpus["feature_config"].get("audio", {})
    return {
        "Corpus": f"synthetic, `{corpus['synth_command']}`: {corpus['files']} media files, "
        f"{corpus['media_hours'] * 60:.0f} min of media, {sum(splits.values())} labelled clips "
        f"(train {splits['train']}, valid {splits['valid']}, test {splits['test']}; split by "
        f"speaker), extracted by `avemo extract` (Ray Data) with "
        f"{corpus['extract_errors']} errors; training reads them repacked into "
        f"{corpus.get('compacted_files', '?')} files",
        "Features": f"{audio.get('num_mel_bins', 80)}-bin log-mel at 10 ms; grey "
        f"{visual.get('crop_px', 64)} px face crops at {visual.get('fps', 5):g} fps",
        "Test clips per condition": ", ".join(
            f"{CONDITION_NAMES[c]} {int(test_sizes[c])}" for c in CONDITIONS if c in test_sizes
        )
        + " (a condition takes the labelled clips that hold its modalities)",
        "Model": f"`{config['model_size']}` cross-modal transformer, "
        f"{results['model_parameters']:,} parameters (d_model {model['d_model']}, "
        f"{model['audio_layers']}+{model['visual_layers']} encoder and {model['cross_layers']} "
        "cross-modal layers), the same for every model",
        "Training": f"{config['epochs']} epochs, batch {config['batch_size']} per worker, AdamW lr "
        f"{config['lr']:g}, {config['workers']} Ray Train worker(s) per run, identical for every "
        "model; the best epoch is chosen on validation macro-F1 of the conditions the model "
        "trains, and per-emotion thresholds are tuned on validation for each condition; the test "
        "split is used only for the numbers below",
        "Tracking": f"MLflow experiment `{results['experiment']}` "
        f"({tracking_description(results['tracking_uri'])}); "
        "each run tagged `avemo.experiment`, `avemo.variant`, `avemo.seed`, `avemo.mode`",
    }


def page(results: Mapping[str, Any], png_name: str) -> str:
    """The whole results page as markdown, from the driver's `results.json` content."""
    variants = [v["name"] for v in results["variants"]]
    runs, earlier = page_runs(results)
    summary = aggregate(runs)
    seeds = results["seeds"]
    out = [
        "# Results: the paper's claim, measured",
        "",
        "<!-- Written by bench/paper_claim.py from its results.json; do not edit by hand. -->",
        f"Produced by `{results['command']}` (commit `{results['commit']}`), "
        f"finished {results.get('finished_utc', '?')} "
        f"after {results.get('wall_s', 0) / 60:.0f} min.",
        *(
            [
                "(`+dirty`: other engineers' uncommitted files were in the shared working tree; "
                "the experiment's own code was committed.)"
            ]
            if str(results["commit"]).endswith("+dirty")
            else []
        ),
        "",
        "The claim (Takashima et al., Interspeech 2022): a conventional audio-visual model fails "
        "when a modality is missing; one cross-modal transformer trained by interactive "
        "co-learning handles audio+visual, audio-only and visual-only input with one set of "
        "weights, and the single-modal knowledge also helps the audio+visual result.",
        "",
        "## Setup",
        "",
        *(f"- **{key}**: {value}" for key, value in setup_facts(results).items()),
        f"- **Seeds**: {', '.join(str(s) for s in seeds)} ({len(seeds)}); cells are mean ± sample "
        "standard deviation over seeds.",
        f"- **Machine**: {results['machine']}",
        *_earlier_facts(results, earlier),
        "",
        "## Models",
        "",
        "| model | training | evaluated on |",
        "|---|---|---|",
        *(
            f"| `{v['name']}` | {v['description']} | "
            f"{', '.join(CONDITION_NAMES[c] for c in v['conditions'])} |"
            for v in results["variants"]
        ),
        "",
        "## Results on the test split",
        "",
        f"![macro-F1, mean WA and mean AUC per model and condition]({png_name})",
        "",
    ]
    for metric, label in METRICS.items():
        rows = table(summary, variants, metric, earlier=earlier)
        out += [f"### {label}", "", markdown_table(rows), ""]
    if "all_present_f1" in results:
        floor = results["all_present_f1"]
        out += [
            "For scale: deciding every emotion present scores macro-F1 "
            + ", ".join(f"{floor[c]:.3f} ({CONDITION_NAMES[c]})" for c in CONDITIONS if c in floor)
            + " on these test clips; mean WA and AUC are 0.5 at chance.",
            "",
        ]
    checks = check_claims(summary)
    reading = in_short(checks, summary, {**results, "runs": runs})
    if earlier:
        reading = [
            "Rows marked † come from an earlier grid with other training code (see Setup): a check "
            "that sets a † row against a row of this grid compares two code versions as well as "
            "two models. " + reading[0]
        ]
    out += ["## Reading", "", *reading, ""]
    out += ["The claim's parts, tested on macro-F1 (means over seeds):", ""]
    for check in checks:
        verdict = {True: "**holds**", False: "**does not hold**", None: "**not measured**"}[
            check.holds
        ]
        mixed = sorted(v for v in earlier if f"`{v}`" in check.claim)
        note = (
            f" (compares with † {', '.join(f'`{v}`' for v in mixed)}, from the earlier grid)"
            if mixed
            else ""
        )
        out.append(f"- {check.claim}: {verdict}. {check.measured}{note}.")
    uncalibrated = _uncalibrated_lines(runs, summary)
    if uncalibrated:
        out += [
            "",
            "The table tunes every model's thresholds per condition on validation. A conventional "
            "model deployed without single-modal validation data would keep its audio+visual "
            "thresholds:",
            "",
            *uncalibrated,
        ]
    ablations = _ablation_lines(summary)
    if ablations:
        out += ["", "Ablations (differences of mean macro-F1):", "", *ablations]
    if results.get("notes"):
        out += ["", *results["notes"]]
    reasons = {(m["variant"], m["seed"]): m["reason"] for m in results.get("missing", [])}
    done = {(r["variant"], r["seed"]) for r in runs}
    absent = [(v, seed) for v in variants for seed in seeds if (v, seed) not in done]
    out += ["", "## Missing runs", ""]
    if absent:
        out += [f"- `{v}` seed {seed}: {reasons.get((v, seed), 'not run')}" for v, seed in absent]
    else:
        out.append(
            f"None: all {len(variants)} models x {len(seeds)} seeds finished"
            + (" († rows: in the earlier grid)." if earlier else ".")
        )
    out += [
        "",
        "## Per-seed runs",
        "",
        "| model | seed | MLflow run | train s | "
        + " | ".join(f"F1 {c}" for c in CONDITIONS)
        + " |",
        "|---|---|---|---|" + "---|" * len(CONDITIONS),
    ]
    for run in sorted(runs, key=lambda r: (variants.index(r["variant"]), r["seed"])):
        f1s = [f"{run['test'][c]['f1']:.3f}" if c in run["test"] else "—" for c in CONDITIONS]
        mark = EARLIER_MARK if run.get("earlier") else ""
        out.append(
            f"| `{run['variant']}`{mark} | {run['seed']} | `{run.get('mlflow_run_id', '?')}` | "
            f"{run.get('train_s', float('nan')):.0f} | " + " | ".join(f1s) + " |"
        )
    return "\n".join(out) + "\n"


def _earlier_facts(results: Mapping[str, Any], earlier: Collection[str]) -> list[str]:
    """The setup line that says which rows come from an earlier grid, and how it differed."""
    if not earlier:
        return []
    before = results["earlier"]
    names = ", ".join(f"`{v}`" for v in (v["name"] for v in results["variants"]) if v in earlier)
    same = [
        key
        for key in ("clips", "corpus_seed", "model_size", "epochs", "batch_size", "lr", "workers")
        if before.get("config", {}).get(key) == results.get("config", {}).get(key)
    ]
    return [
        f"- **Rows marked †** ({names}): not rerun here; taken from an earlier grid, "
        f"`{before.get('command', '?')}` at commit `{before.get('commit', '?')}` (finished "
        f"{before.get('finished_utc', '?')}). Same {', '.join(same) or 'settings'}, but that "
        "commit's training code"
        + (f" ({before['differences']})" if before.get("differences") else "")
        + ": compare † rows with the others only loosely, and read every claim check that "
        "involves one with that in mind."
    ]


def write_page(results: Mapping[str, Any], page_path: str | Path, png_path: str | Path) -> Path:
    """Write the markdown page and its plot side by side; returns the page's path.

    Sections other scripts keep on the page (bench.common.page_sections) are carried over.
    """
    page_path, png_path = Path(page_path), Path(png_path)
    variants = [v["name"] for v in results["variants"]]
    plot(aggregate(page_runs(results)[0]), variants, png_path, title=str(results.get("title", "")))
    page_path.parent.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(png_path.resolve(), page_path.resolve().parent)
    kept = page_sections.sections(page_path.read_text()) if page_path.exists() else []
    text = page(results, Path(rel).as_posix())
    page_path.write_text("\n".join([text.rstrip("\n"), "", *kept]).rstrip("\n") + "\n")
    return page_path
