"""scripts/official/compare_linear.py against checkouts of Time-Series-Library (DLinear, ``ATTNBENCH_OFFICIAL_TSLIB``)
and RTSF (RLinear, ``ATTNBENCH_OFFICIAL_RTSF``); skipped when either is unset."""

from __future__ import annotations

import pytest

from tests.test_official_scripts import official_checkout, run_official


@pytest.mark.slow
def test_dlinear_and_rlinear_match_the_official_models(tmp_path):
    """Six comparisons on copied weights in float32 (DLinear individual false / true; RLinear the same, in eval and
    train mode): equal parameter counts, every forecast within 1e-5."""
    tslib = official_checkout("ATTNBENCH_OFFICIAL_TSLIB", "models/DLinear.py")
    rtsf = official_checkout("ATTNBENCH_OFFICIAL_RTSF", "models/RLinear.py")
    run = run_official("compare_linear.py", tslib, "--official-rtsf", rtsf, cwd=tmp_path)
    assert len(run.lines) == 6, run.stdout
    assert sum(line.startswith("DLinear") for line, _ in run.lines) == 2
    for line, diff in run.lines:
        assert diff <= 1e-5, line
