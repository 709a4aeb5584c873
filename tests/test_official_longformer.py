"""scripts/official/compare_longformer.py against HF transformers' ``LongformerSelfAttention`` (``slow``; skips unless
``ATTNBENCH_OFFICIAL_LONGFORMER`` is ``installed`` (the installed transformers) or names a transformers checkout)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.test_official_scripts import DIFF, OFFICIAL, official_checkout


def transformers_args(var: str, marker: str) -> list[str]:
    """``--official`` and the checkout ``$var`` names, or nothing when it is ``installed``; skips when unset."""
    value = os.environ.get(var)
    if not value:
        pytest.skip(f"{var} is unset: 'installed' (the installed transformers) or a transformers checkout")
    if value == "installed":
        return []
    return ["--official", str(official_checkout(var, marker))]


@pytest.mark.slow
def test_longformer_matches_hf_longformer_self_attention(tmp_path):
    """8 cases (window 2 .. 64, 0 .. 4 global tokens, padded rows, lengths not multiples of the window): ours equals
    HF's kernel at float64 rounding with its softmax in float64, and at float32 rounding as is."""
    args = transformers_args("ATTNBENCH_OFFICIAL_LONGFORMER",
                             "src/transformers/models/longformer/modeling_longformer.py")
    p = subprocess.run([sys.executable, str(OFFICIAL / "compare_longformer.py"), *args], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    exact = [float(d) for d in DIFF.findall("\n".join(x for x in p.stdout.splitlines() if "float64 softmax" in x))]
    as_is = [float(d) for d in DIFF.findall("\n".join(x for x in p.stdout.splitlines() if " as is:" in x))]
    assert len(exact) == len(as_is) == 8, p.stdout
    assert max(exact) < 1e-12 and max(as_is) < 1e-6, p.stdout
