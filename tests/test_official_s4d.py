"""scripts/official/compare_s4d.py against a checkout of CAB's efficient-attention library, and optionally of
state-spaces/s4 (``slow``; skips unless ``ATTNBENCH_OFFICIAL_S4D`` names the CAB checkout; ``ATTNBENCH_OFFICIAL_S4``
adds the s4 one)."""

from __future__ import annotations

import os

import pytest

from tests.test_official_scripts import official_checkout, run_official


@pytest.mark.slow
def test_s4d_matches_cabs_s4d(tmp_path):
    """Bidirectional and unidirectional, unpadded and padded, at two lengths: ours equals the official S4D layer at
    float64 rounding once its float32 kernel cast is left out, and at float32 rounding as it runs; with the s4
    checkout, the minimal S4DKernel's kernel too."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_S4D", "efficient-attention/efficient_attention/modules/s4d.py")
    s4 = os.environ.get("ATTNBENCH_OFFICIAL_S4")
    extra = ("--official-s4", s4) if s4 else ()
    run = run_official("compare_s4d.py", checkout, *extra, cwd=tmp_path)
    assert len(run.lines) == 2 * 2 * 5 + (1 if s4 else 0), run.stdout  # lengths x (as run, float64) x cases
    exact = [d for line, d in run.lines if "float64 kernel" in line or "s4 minimal" in line]
    assert len(exact) == 10 + (1 if s4 else 0) and max(exact) < 1e-12, run.stdout
    assert max(run.diffs) < 1e-6, run.stdout
