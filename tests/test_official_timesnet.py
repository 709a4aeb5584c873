"""scripts/official/compare_timesnet.py: our TimesNet against Time-Series-Library's (run ``slow`` where
ATTNBENCH_OFFICIAL_TSLIB names a checkout of thuml/Time-Series-Library; skipped otherwise)."""

from __future__ import annotations

import pytest

from tests.conftest import write_ett_csv
from tests.test_official_scripts import official_checkout, run_official


@pytest.mark.slow
def test_timesnet_matches_the_official_time_series_library(tmp_path):
    """Five settings (TSLib's ETTh1, ETTh2 and Exchange sizes, ILI's lengths, features S), the gradients of one,
    and a batch of ETTh1-layout windows through our datamodule: same parameter count, same periods picked, every
    forecast within 1e-5 on copied weights (float32)."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_TSLIB", "models/TimesNet.py")
    write_ett_csv(tmp_path / "ETT-small" / "ETTh1.csv", n_rows=17420, freq="h")
    run = run_official("compare_timesnet.py", checkout, "--data-dir", tmp_path, cwd=tmp_path)
    assert len(run.diffs) == 5 + 1 + 1, run.stdout  # five settings, one gradient check, the data windows
    assert max(run.diffs) < 1e-5, run.stdout
    assert "PERIODS DIFFER" not in run.stdout, run.stdout
