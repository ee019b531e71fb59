"""The real-data locator: a folder that is not there skips the test, naming where it looked."""

from __future__ import annotations

import pytest

from tests.real_data import real_data


def test_missing_real_data_skips_with_the_reason() -> None:
    with pytest.raises(pytest.skip.Exception, match="no-such-data-set.*fresh clone"):
        real_data("no-such-data-set")
