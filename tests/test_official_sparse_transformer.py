"""scripts/official/compare_sparse_transformer.py against Long Range Arena's Sparse Transformer patterns and, where
``ATTNBENCH_OFFICIAL_DEEPSPEED`` names a DeepSpeed checkout, its ``FixedSparsityConfig`` layout (``slow``; skips unless
``ATTNBENCH_OFFICIAL_SPARSE_TRANSFORMER`` names a checkout of google-research/long-range-arena)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.test_official_scripts import DIFF, OFFICIAL, official_checkout

DS_FILE = "deepspeed/ops/sparse_attention/sparsity_config.py"


@pytest.mark.slow
def test_sparse_transformer_matches_the_lra_patterns(tmp_path):
    """LRA's fixed (l 50, c 10; l 8, c 2) and strided masks at 3 lengths each equal ours entry for entry, and our
    kernel equals dense attention under LRA's mask (its -1e10 bias) at float64 rounding. With DeepSpeed: its layout
    equals ours without the first-position summaries wherever the length is a multiple of l."""
    checkout = official_checkout("ATTNBENCH_OFFICIAL_SPARSE_TRANSFORMER",
                                 "lra_benchmarks/models/sparse_transformer/sparse_attention.py")
    cmd = [sys.executable, str(OFFICIAL / "compare_sparse_transformer.py"), "--official", str(checkout)]
    ds = os.environ.get("ATTNBENCH_OFFICIAL_DEEPSPEED")
    if ds and os.path.isfile(os.path.join(ds, DS_FILE)):
        cmd += ["--deepspeed", ds]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    lra = [line for line in p.stdout.splitlines() if line.startswith(("mask ", "attention "))]
    diffs = [float(d) for d in DIFF.findall("\n".join(lra))]
    assert len(diffs) == 12 + 4, p.stdout  # 4 settings x 3 lengths of masks, 4 attention cases
    assert max(diffs) < 1e-12, p.stdout
    for line in p.stdout.splitlines():  # DeepSpeed: at lengths that are multiples of l, equal once our extra goes
        m = re.match(r"deepspeed .*\(l=(\d+) c=\d+\) L=(\d+) \w+ last c only: max \|ours - official\| (\S+)", line)
        if m and int(m.group(2)) % int(m.group(1)) == 0:
            assert float(m.group(3)) == 0, line
