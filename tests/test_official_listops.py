"""scripts/official/compare_listops.py: our ListOps generator against the official ``lra_benchmarks/data/listops.py``
(run ``slow`` where ATTNBENCH_OFFICIAL_LISTOPS names a checkout of google-research/long-range-arena)."""

from __future__ import annotations

import pytest

from tests.test_official_scripts import official_checkout, run_official


@pytest.mark.slow
def test_listops_generator_is_the_official_draw_for_draw(tmp_path):
    """The official ``main`` (seeded, its set iterating in drawing order) writes the same bytes as ours at four
    settings; its operators' values equal ours on 84,400 argument lists; the official hash-order set holds the
    same trees. About a minute."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_LISTOPS", "lra_benchmarks/data/listops.py")
    run = run_official("compare_listops.py", checkout, cwd=tmp_path)
    assert len(run.diffs) == 2 + 4 + 1, run.stdout  # constants, labels, four settings, the hash-order pool
    assert all(d == 0 for d in run.diffs), run.stdout  # counts of differing rows
    assert run.stdout.count("byte-identical") == 4, run.stdout
