"""scripts/official/compare_hot.py against a checkout of the official HOT code (``ATTNBENCH_OFFICIAL_HOT``; skipped
when unset)."""

from __future__ import annotations

import pytest

from tests.test_official_scripts import official_checkout, run_official


@pytest.mark.slow
def test_hot_forecaster_matches_the_official_hot(tmp_path):
    """Eight comparisons (pe rope / nope x Kronecker product / sum x eval / train) on copied weights in float64: within
    1e-6 with RoPE (float32 angle tables), float64 rounding without."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_HOT", "src/models/ts.py")
    run = run_official("compare_hot.py", checkout, cwd=tmp_path)
    assert len(run.lines) == 8, run.stdout
    for line, diff in run.lines:
        assert diff < (1e-6 if "pe=rope" in line else 1e-12), line
