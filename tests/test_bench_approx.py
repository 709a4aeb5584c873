"""Approximation-error table: exact limits give zero error, the trivial row and layer-level note are there."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from attnbench.bench.approx import ApproxConfig, make_inputs, run
from attnbench.config import ConfigError


def test_patterns_have_their_structure():
    cfg = ApproxConfig(length=64, grid=[8, 8], batch=1, heads=1, head_dim=16, seeds=[0])
    q, k, _ = make_inputs("local", cfg, 0)
    a = torch.softmax(q @ k.transpose(-1, -2) / 4.0, -1)[0, 0]  # (N, N)
    assert (a.argmax(-1) == torch.arange(64)).all()  # each token attends most to itself
    assert a[10, 11] > a[10, 20] > a[10, 40]  # and less with distance (locally)
    q, k, _ = make_inputs("clustered", cfg, 0)
    assert torch.equal(q, k)
    torch.testing.assert_close((q * q).sum(-1) / 4.0, torch.full((1, 1, 64), 6.0, dtype=torch.float64))
    q, k, _ = make_inputs("low_rank", cfg, 0)
    assert torch.linalg.matrix_rank(q[0, 0] @ k[0, 0].T) == cfg.rank


def test_exact_limits_have_zero_error(tmp_path):
    cfg = ApproxConfig(entries=["local", "nystrom", "smyrf", "treeformer_tf", "linear", "efficient"],
                       length=48, grid=[6, 8], batch=1, heads=2, head_dim=16, seeds=[0, 1],
                       options={"local": {"window": 48}, "nystrom": {"n_landmarks": 48, "pinv_iters": 40},
                                "smyrf": {"cluster_size": 64}, "treeformer_tf": {"height": 0}},
                       out_dir=str(tmp_path))
    df = run(cfg)
    err = df.groupby("entry")["rel_error"].max()
    for e in ("local", "smyrf", "treeformer_tf"):
        assert err[e] < 1e-12, e
    assert err["nystrom"] < 1e-4
    assert err["linear"] > 0.05 and err["mean(v)"] > 0.05  # real approximations are not exact
    assert "efficient" not in set(df["entry"])
    assert set(df["pattern"]) == {"random", "clustered", "local", "low_rank"}
    assert len(df) == 2 * 4 * 6  # seeds x patterns x (5 entries + mean(v))
    saved = pd.read_csv(tmp_path / "approx.csv")
    assert math.isclose(saved["rel_error"].sum(), df["rel_error"].sum())
    md = (tmp_path / "approx.md").read_text()
    assert "| local | window=48 |" in md and "Not measured" in md and "efficient" in md
    from attnbench.analysis.records import save  # its machine.json makes the folder a benchmark record

    rec = save(tmp_path, tmp_path.parent / f"{tmp_path.name}_record", allow_dirty=True)  # a dev tree may be dirty
    assert rec["kind"] == "bench" and rec["bench"] == "approx" and rec["command"] == "python -m attnbench.bench.approx"


def test_bad_config_names_the_key():
    with pytest.raises(ConfigError, match="grid"):
        ApproxConfig(length=50, grid=[6, 8])
    with pytest.raises(ConfigError, match="patterns"):
        ApproxConfig(patterns=["zigzag"])
    with pytest.raises(ConfigError, match="nope"):
        ApproxConfig(entries=["nope"])
