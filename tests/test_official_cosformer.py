"""scripts/official/compare_cosformer.py against a checkout of CAB (``ATTNBENCH_OFFICIAL_COSFORMER``; skipped when
unset) and, when ``ATTNBENCH_OFFICIAL_COSFORMER_AUTHORS`` names one, the authors' OpenNLPLab/cosFormer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_official_scripts import official_checkout, run_official


@pytest.mark.slow
def test_cosformer_matches_the_official_cosformer(tmp_path):
    """Non-causal self (n = 50, 257) and cross attention (40 / 100, 100 / 40), outputs and q / k / v gradients, at
    float64 rounding against CAB's module (its angle table built in float64; as it is, float32 rounding); with the
    authors' module, the causal prefix sums too."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_COSFORMER",
                                 "efficient-attention/efficient_attention/modules/cosformer.py")
    authors = os.environ.get("ATTNBENCH_OFFICIAL_COSFORMER_AUTHORS")
    extra = ["--official-authors", authors] if authors and (Path(authors) / "cosformer.py").is_file() else []
    run = run_official("compare_cosformer.py", checkout, *extra, cwd=tmp_path)
    assert len(run.lines) == 4 * 5 + (4 * 2 if extra else 0), run.stdout  # (output + 3 gradients) per case
    for line, diff in run.lines:
        assert diff < (1e-6 if "float32 angles" in line else 1e-10), line
