"""The benchmarks page: goals from docstrings, saved JSON results, captured output of a run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.common import benchmarks_page

SAVING = '''"""Speed of nothing. Goal: >= 2x faster than something."""
import sys
sys.path.insert(0, {root!r})
from bench.common.benchmarks_page import save_output
save_output(__file__, ["python", "-m", "bench.saving"],
            [{{"name": "speedup", "value": 2.5, "unit": "x", "goal": ">= 2x", "met": True}}],
            out_dir=sys.argv[1])
'''
PRINTING = '''"""Peak memory of nothing. Goal: <= 1.5x."""
import sys
print("ratio 1.23 (goal <= 1.5x)", "quick" if "--quick" in sys.argv else "full")
'''


def _bench(tmp_path: Path) -> tuple[Path, Path]:
    bench, out = tmp_path / "bench", tmp_path / "out"
    bench.mkdir()
    (bench / "__init__.py").write_text("")  # run as `python -m bench.NAME` from tmp_path
    root = str(benchmarks_page.REPO_ROOT)
    (bench / "saving.py").write_text(SAVING.format(root=root))
    (bench / "printing.py").write_text(PRINTING)
    (bench / "never_run.py").write_text('"""Not measured yet."""\n')
    (bench / "_helper.py").write_text("X = 1\n")
    (bench / "write_benchmarks_page.py").write_text('"""The writer."""\n')
    return bench, out


def test_scripts_exclude_helpers_and_the_writer(tmp_path: Path) -> None:
    bench, _ = _bench(tmp_path)
    names = [p.stem for p in benchmarks_page.benchmark_scripts(bench)]
    assert names == ["never_run", "printing", "saving"]


def test_page_shows_goal_command_machine_and_numbers(tmp_path: Path) -> None:
    bench, out = _bench(tmp_path)
    import subprocess

    subprocess.run([sys.executable, str(bench / "saving.py"), str(out)], check=True)
    ran = benchmarks_page.run_script(bench / "printing.py", ["--quick"], out, timeout_s=60)
    assert json.loads(ran.read_text())["returncode"] == 0
    page = benchmarks_page.write_page(tmp_path / "benchmarks.md", bench, out).read_text()
    saving = page.split("## `bench/saving.py`", 1)[1].split("## ", 1)[0]
    assert "> Speed of nothing. Goal: >= 2x faster than something." in saving
    assert "`python -m bench.saving`" in saving
    assert "CPUs (nproc)" in saving
    assert "| speedup | 2.5 | x | >= 2x | yes |" in saving
    printing = page.split("## `bench/printing.py`", 1)[1].split("## ", 1)[0]
    assert "`python -m bench.printing --quick`" in printing
    assert "ratio 1.23 (goal <= 1.5x) quick" in printing
    assert "Not run yet" in page.split("## `bench/never_run.py`", 1)[1]
    assert "_helper" not in page and "The writer." not in page


def test_results_table_takes_a_flat_mapping() -> None:
    text = benchmarks_page.results_table({"samples_per_s": 123.456, "ok": False})
    assert text.splitlines()[2:] == ["| samples_per_s | 123.5 |", "| ok | no |"]


def test_a_scripts_own_record_wins_over_a_captured_run(tmp_path: Path) -> None:
    bench, out = _bench(tmp_path)
    import subprocess

    subprocess.run([sys.executable, str(bench / "saving.py"), str(out)], check=True)
    benchmarks_page.run_script(bench / "saving.py", [str(out)], out, timeout_s=60)
    assert (out / "saving.run.json").exists()
    page = benchmarks_page.write_page(tmp_path / "b.md", bench, out).read_text()
    assert "| speedup | 2.5 | x | >= 2x | yes |" in page
