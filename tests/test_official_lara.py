"""scripts/official/compare_lara.py against a checkout of CAB (``ATTNBENCH_OFFICIAL_LARA``; skipped when unset)."""

from __future__ import annotations

import pytest

from tests.test_official_scripts import official_checkout, run_official


@pytest.mark.slow
def test_lara_matches_cabs_lara(tmp_path):
    """Evaluation at n = 64, 50, 203, 10 and training with the same draws (the code's noise and the paper's, fed to
    the official code as the same sample), outputs and q / k / v gradients, all at float64 rounding."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_LARA", "efficient-attention/efficient_attention/modules/lara.py")
    run = run_official("compare_lara.py", checkout, cwd=tmp_path)
    assert len(run.lines) == (4 + 2 * 2) * 4, run.stdout  # (output + 3 gradients) per case
    assert max(run.diffs) < 1e-10, run.stdout
