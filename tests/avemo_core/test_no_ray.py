"""avemo_core is a plain library: importing any of it never loads Ray, and no file imports Ray."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import avemo_core

MODULES = (
    "avemo_core.model",
    "avemo_core.colearning",
    "avemo_core.training",
    "avemo_core.metrics",
    "avemo_core.checkpoint",
    "avemo_core.features.audio",
    "avemo_core.features.visual",
    "avemo_core.data",
    "avemo_core.schema",
)


def test_importing_the_library_does_not_load_ray() -> None:
    code = f"import {', '.join(MODULES)}, sys; assert 'ray' not in sys.modules, 'ray was imported'"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr


def ray_imports(source: str) -> list[str]:
    """Every `import ray...` / `from ray... import` statement in a module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [name for name in names if name == "ray" or name.startswith("ray.")]
    return found


def test_scanner_finds_ray_imports() -> None:
    source = "import os\nimport ray.data as rd\nfrom ray import train\nfrom rayon import x\n"
    assert ray_imports(source) == ["ray.data", "ray"]


def test_no_file_under_avemo_core_imports_ray() -> None:
    root = Path(avemo_core.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) >= 10
    offenders = {str(f.relative_to(root)): ray_imports(f.read_text()) for f in files}
    assert {f: names for f, names in offenders.items() if names} == {}
