"""scripts/official/compare_probsparse.py against a checkout of Informer2020 (``slow``; skips unless
``ATTNBENCH_OFFICIAL_PROBSPARSE`` names one)."""

from __future__ import annotations

import pytest

from tests.test_official_scripts import official_checkout, run_official


@pytest.mark.slow
def test_probsparse_matches_informer2020(tmp_path):
    """Noncausal self-attention at 96 / 720 tokens, two uneven cross shapes, the masked (causal) variant and the
    projection layer: ours equals the official ProbAttention on the same key samples at float64 rounding."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_PROBSPARSE", "models/attn.py")
    run = run_official("compare_probsparse.py", checkout, cwd=tmp_path)
    assert len(run.diffs) == 2 + 2 + 1 + 2, run.stdout  # self, cross, causal, layer
    assert max(run.diffs) < 1e-12, run.stdout
