"""scripts/official/compare_itransformer_patchtst.py: our iTransformer and PatchTST against Time-Series-Library's
(run ``slow`` where ATTNBENCH_OFFICIAL_TSLIB names a checkout of thuml/Time-Series-Library)."""

from __future__ import annotations

import pytest

from tests.test_official_scripts import official_checkout, run_official


@pytest.mark.slow
def test_itransformer_and_patchtst_match_the_official_time_series_library(tmp_path):
    """Six cases (iTransformer with and without calendar tokens and with one variable; PatchTST in eval and train
    mode and at ILI's lengths): the same parameter count and the same forecast on copied weights, float32."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_TSLIB", "models/iTransformer.py")
    run = run_official("compare_itransformer_patchtst.py", checkout, cwd=tmp_path)
    assert len(run.diffs) == 6, run.stdout
    assert max(run.diffs) <= 1e-5, run.stdout
