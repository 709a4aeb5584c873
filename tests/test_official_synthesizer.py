"""scripts/official/compare_synthesizer.py against a checkout of 10-zin/Synthesizer (``slow``; skips unless
``ATTNBENCH_OFFICIAL_SYNTHESIZER`` names one)."""

from __future__ import annotations

import pytest

from tests.test_official_scripts import official_checkout, run_official


@pytest.mark.slow
def test_synthesizer_matches_the_10zin_synthesizer(tmp_path):
    """Dense and random at two lengths, each unmasked, with key padding and causal: ours equals the official
    DenseAttention / RandomAttention on the same weights at float64 rounding."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_SYNTHESIZER", "synth/synthesizer/modules.py")
    run = run_official("compare_synthesizer.py", checkout, cwd=tmp_path)
    assert len(run.diffs) == 2 * 2 * 3, run.stdout  # variants x lengths x masks
    assert max(run.diffs) < 1e-12, run.stdout
