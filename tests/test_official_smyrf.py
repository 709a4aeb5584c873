"""scripts/official/compare_smyrf.py against a checkout of the official SMYRF code (``slow``; skips unless
``ATTNBENCH_OFFICIAL_SMYRF`` names one)."""

from __future__ import annotations

import pytest

from tests.test_official_scripts import official_checkout, run_official


@pytest.mark.slow
def test_smyrf_matches_the_official_smyrf(tmp_path):
    """Self-attention at n = 40, 65, 100, 1000 (clusters of 32, unpadded and with a shorter second row) and four
    uneven query/key lengths: ours equals the official SmyrfAttention at float64 rounding."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_SMYRF", "smyrf/torch/attn.py")
    run = run_official("compare_smyrf.py", checkout, cwd=tmp_path)
    assert len(run.diffs) == 4 * 2 + 4, run.stdout  # four lengths x (unpadded, uneven rows), four cross shapes
    assert max(run.diffs) < 1e-12, run.stdout
