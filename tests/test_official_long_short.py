"""scripts/official/compare_long_short.py against a checkout of CAB's efficient-attention library (``slow``; skips
unless ``ATTNBENCH_OFFICIAL_LONG_SHORT`` names one)."""

from __future__ import annotations

import pytest

from tests.test_official_scripts import official_checkout, run_official


@pytest.mark.slow
def test_long_short_matches_cabs_attention_ls(tmp_path):
    """Three lengths, unpadded and padded: ours equals the official AttentionLS at float64 rounding once its two
    float32 softmaxes run in float64, and at float32 rounding as it runs."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_LONG_SHORT",
                                 "efficient-attention/efficient_attention/modules/transformer_ls.py")
    run = run_official("compare_long_short.py", checkout, cwd=tmp_path)
    assert len(run.lines) == 3 * 2 * 2, run.stdout  # lengths x (unpadded, padded) x (as run, float64 softmaxes)
    exact = [d for line, d in run.lines if "float64 softmaxes" in line]
    assert len(exact) == 6 and max(exact) < 1e-12, run.stdout
    assert max(run.diffs) < 1e-6, run.stdout
