"""scripts/official/compare_linear.py against checkouts of Time-Series-Library (DLinear, ``ATTNBENCH_OFFICIAL_TSLIB``)
and RTSF (RLinear, ``ATTNBENCH_OFFICIAL_RTSF``); skipped when either is unset."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.test_official_scripts import DIFF, OFFICIAL, official_checkout


@pytest.mark.slow
def test_dlinear_and_rlinear_match_the_official_models(tmp_path):
    """Six comparisons on copied weights in float32 (DLinear individual false / true; RLinear the same, in eval and
    train mode): equal parameter counts, every forecast within 1e-5."""
    tslib = official_checkout("ATTNBENCH_OFFICIAL_TSLIB", "models/DLinear.py")
    rtsf = official_checkout("ATTNBENCH_OFFICIAL_RTSF", "models/RLinear.py")
    p = subprocess.run([sys.executable, str(OFFICIAL / "compare_linear.py"), "--official", str(tslib),
                        "--official-rtsf", str(rtsf)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    lines = [line for line in p.stdout.splitlines() if DIFF.search(line)]
    assert len(lines) == 6, p.stdout
    assert sum(line.startswith("DLinear") for line in lines) == 2
    for line in lines:
        assert float(DIFF.search(line).group(1)) <= 1e-5, line
