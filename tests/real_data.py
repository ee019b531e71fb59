"""Real recorded data for tests: `../shared/data/<name>` beside the repository root.

A user's fresh clone does not have it, so tests that need it skip with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO_ROOT.parent / "shared" / "data"


def real_data(name: str) -> Path:
    """The folder `../shared/data/<name>` (relative to the repository root), or pytest.skip."""
    folder = DATA_ROOT / name
    if not folder.is_dir():
        pytest.skip(
            f"real data {name!r} not found at {folder} (../shared/data/{name} from the "
            "repository root; see that folder's README.md): a fresh clone does not have it"
        )
    return folder
