"""scripts/official/compare_listops.py: our ListOps generator against the official ``lra_benchmarks/data/listops.py``
(run ``slow`` where ATTNBENCH_OFFICIAL_LISTOPS names a checkout of google-research/long-range-arena)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.test_official_scripts import DIFF, OFFICIAL, official_checkout


@pytest.mark.slow
def test_listops_generator_is_the_official_draw_for_draw(tmp_path):
    """The official ``main`` (seeded, its set iterating in drawing order) writes the same bytes as ours at four
    settings; its operators' values equal ours on 84,400 argument lists; the official hash-order set holds the
    same trees. About a minute."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_LISTOPS", "lra_benchmarks/data/listops.py")
    p = subprocess.run([sys.executable, str(OFFICIAL / "compare_listops.py"), "--official", str(checkout)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    diffs = DIFF.findall(p.stdout)
    assert len(diffs) == 2 + 4 + 1, p.stdout  # constants, labels, four settings, the hash-order pool
    assert all(d == "0" for d in diffs), p.stdout
    assert p.stdout.count("byte-identical") == 4, p.stdout
