"""scripts/official/compare_hot.py against a checkout of the official HOT code (``ATTNBENCH_OFFICIAL_HOT``; skipped
when unset)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.test_official_scripts import DIFF, OFFICIAL, official_checkout


@pytest.mark.slow
def test_hot_forecaster_matches_the_official_hot(tmp_path):
    """Eight comparisons (pe rope / nope x Kronecker product / sum x eval / train) on copied weights in float64: within
    1e-6 with RoPE (float32 angle tables), float64 rounding without."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_HOT", "src/models/ts.py")
    p = subprocess.run([sys.executable, str(OFFICIAL / "compare_hot.py"), "--official", str(checkout)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    lines = [line for line in p.stdout.splitlines() if DIFF.search(line)]
    assert len(lines) == 8, p.stdout
    for line in lines:
        diff = float(DIFF.search(line).group(1))
        assert diff < (1e-6 if "pe=rope" in line else 1e-12), line
