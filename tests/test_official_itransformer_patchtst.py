"""scripts/official/compare_itransformer_patchtst.py: our iTransformer and PatchTST against Time-Series-Library's
(run ``slow`` where ATTNBENCH_OFFICIAL_TSLIB names a checkout of thuml/Time-Series-Library)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.test_official_scripts import DIFF, OFFICIAL, official_checkout


@pytest.mark.slow
def test_itransformer_and_patchtst_match_the_official_time_series_library(tmp_path):
    """Six cases (iTransformer with and without calendar tokens and with one variable; PatchTST in eval and train
    mode and at ILI's lengths): the same parameter count and the same forecast on copied weights, float32."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_TSLIB", "models/iTransformer.py")
    p = subprocess.run([sys.executable, str(OFFICIAL / "compare_itransformer_patchtst.py"), "--official",
                        str(checkout)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    diffs = [float(d) for d in DIFF.findall(p.stdout)]
    assert len(diffs) == 6, p.stdout
    assert max(diffs) <= 1e-5, p.stdout
