"""scripts/official/compare_bigbird.py against HF transformers' ``BigBirdBlockSparseAttention`` with its own random
blocks (``slow``; skips unless ``ATTNBENCH_OFFICIAL_BIGBIRD`` is ``installed`` (the installed transformers) or names a
transformers checkout)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.test_official_longformer import transformers_args
from tests.test_official_scripts import DIFF, OFFICIAL


@pytest.mark.slow
def test_bigbird_matches_hf_block_sparse_attention(tmp_path):
    """7 training-mode cases (blocks of 4 .. 64, 1 .. 3 random blocks, padded rows, HF's per-head and old plans):
    ours with HF's random blocks equals HF's kernel at float64 rounding. HF's eval mode (every random block = block
    0) is not a sparsity pattern: the script shows it differs from ours without random blocks."""
    args = transformers_args("ATTNBENCH_OFFICIAL_BIGBIRD", "src/transformers/models/big_bird/modeling_big_bird.py")
    p = subprocess.run([sys.executable, str(OFFICIAL / "compare_bigbird.py"), *args], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    train = [float(d) for d in DIFF.findall("\n".join(x for x in p.stdout.splitlines() if x.startswith("train ")))]
    evals = [float(d) for d in DIFF.findall("\n".join(x for x in p.stdout.splitlines() if x.startswith("eval ")))]
    assert len(train) == 7 and max(train) < 1e-12, p.stdout
    assert len(evals) == 1 and evals[0] > 1e-3, p.stdout  # HF eval reweights block 0: a real difference
