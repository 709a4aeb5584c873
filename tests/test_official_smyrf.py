"""scripts/official/compare_smyrf.py against a checkout of the official SMYRF code (``slow``; skips unless
``ATTNBENCH_OFFICIAL_SMYRF`` names one)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.test_official_scripts import DIFF, OFFICIAL, official_checkout


@pytest.mark.slow
def test_smyrf_matches_the_official_smyrf(tmp_path):
    """Self-attention at n = 40, 65, 100, 1000 (clusters of 32, unpadded and with a shorter second row) and four
    uneven query/key lengths: ours equals the official SmyrfAttention at float64 rounding."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_SMYRF", "smyrf/torch/attn.py")
    p = subprocess.run([sys.executable, str(OFFICIAL / "compare_smyrf.py"), "--official", str(checkout)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    diffs = [float(d) for d in DIFF.findall(p.stdout)]
    assert len(diffs) == 4 * 2 + 4, p.stdout  # four lengths x (unpadded, uneven rows), four cross shapes
    assert max(diffs) < 1e-12, p.stdout
