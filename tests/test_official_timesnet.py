"""scripts/official/compare_timesnet.py: our TimesNet against Time-Series-Library's (run ``slow`` where
ATTNBENCH_OFFICIAL_TSLIB names a checkout of thuml/Time-Series-Library; skipped otherwise)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import write_ett_csv
from tests.test_official_scripts import DIFF, OFFICIAL, official_checkout


@pytest.mark.slow
def test_timesnet_matches_the_official_time_series_library(tmp_path):
    """Five settings (TSLib's ETTh1, ETTh2 and Exchange sizes, ILI's lengths, features S), the gradients of one,
    and a batch of ETTh1-layout windows through our datamodule: same parameter count, same periods picked, every
    forecast within 1e-5 on copied weights (float32)."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_TSLIB", "models/TimesNet.py")
    write_ett_csv(tmp_path / "ETT-small" / "ETTh1.csv", n_rows=17420, freq="h")
    p = subprocess.run([sys.executable, str(OFFICIAL / "compare_timesnet.py"), "--official", str(checkout),
                        "--data-dir", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    diffs = [float(d) for d in DIFF.findall(p.stdout)]
    assert len(diffs) == 5 + 1 + 1, p.stdout  # five settings, one gradient check, the data windows
    assert max(diffs) < 1e-5, p.stdout
    assert "PERIODS DIFFER" not in p.stdout, p.stdout
