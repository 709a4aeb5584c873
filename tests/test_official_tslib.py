"""scripts/official/compare_tslib.py: our forecasting windows against Time-Series-Library's datasets (run ``slow``
where ATTNBENCH_OFFICIAL_TSLIB names a checkout of thuml/Time-Series-Library; needs scikit-learn, TSLib's scaler)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import write_ett_csv
from tests.test_official_scripts import DIFF, OFFICIAL, official_checkout


@pytest.mark.slow
def test_windows_match_the_official_time_series_library(tmp_path):
    """Synthetic files in the real layouts (ETTh1 at its 17,420 rows, ETTm1 past TSLib's 20 months, an ILI-shaped
    custom file): every window count equal, x / y / marks of the first, middle and last windows within float32
    rounding, the HOT split's counts as described and the README's ETTh1 96->720 example (2,764 against 2,161)."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_TSLIB", "data_provider/data_loader.py")
    pytest.importorskip("sklearn", reason="TSLib's datasets scale with sklearn: pip install scikit-learn")
    write_ett_csv(tmp_path / "ETT-small" / "ETTh1.csv", n_rows=17420, freq="h")
    write_ett_csv(tmp_path / "ETT-small" / "ETTm1.csv", n_rows=57700, freq="15min")
    write_ett_csv(tmp_path / "illness" / "national_illness.csv", n_rows=966, freq="h")  # 7 variables, OT last
    p = subprocess.run([sys.executable, str(OFFICIAL / "compare_tslib.py"), "--official", str(checkout),
                        "--data-dir", str(tmp_path), "--datasets", "ETTh1", "ETTm1", "national_illness"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    diffs = [float(d) for d in DIFF.findall(p.stdout)]
    assert len(diffs) == 3 * (6 + 3), p.stdout  # per data set: M/S x three flags, marks x three flags
    assert max(diffs) < 1e-5, p.stdout
    assert "README example ETTh1 96->720 test windows: data.split=official 2764, TSLib 2161" in p.stdout, p.stdout
    assert "no undocumented difference" in p.stdout and "UNDOCUMENTED" not in p.stdout, p.stdout
