"""scripts/official/compare_tslib.py: our forecasting windows against Time-Series-Library's datasets (run ``slow``
where ATTNBENCH_OFFICIAL_TSLIB names a checkout of thuml/Time-Series-Library; needs scikit-learn, TSLib's scaler)."""

from __future__ import annotations

import pytest

from tests.conftest import write_ett_csv
from tests.test_official_scripts import official_checkout, run_official


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
    run = run_official("compare_tslib.py", checkout, "--data-dir", tmp_path, "--datasets", "ETTh1", "ETTm1",
                       "national_illness", cwd=tmp_path)
    assert len(run.diffs) == 3 * (6 + 3), run.stdout  # per data set: M/S x three flags, marks x three flags
    assert max(run.diffs) < 1e-5, run.stdout
    assert "README example ETTh1 96->720 test windows: data.split=official 2764, TSLib 2161" in run.stdout, run.stdout
    assert "no undocumented difference" in run.stdout and "UNDOCUMENTED" not in run.stdout, run.stdout
