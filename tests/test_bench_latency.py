"""The CPU latency benchmark: a tiny end-to-end run (files, columns, FLOPs beside latency) and config checks."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest

from attnbench.attention import available, build, get
from attnbench.attention.flops import attention_flops
from attnbench.bench.harness import load_config
from attnbench.bench.latency import CSV_COLUMNS, flop_rows, run
from attnbench.config import ConfigError


@pytest.mark.slow
def test_tiny_run_writes_csv_md_png_with_flops(tmp_path, capsys):
    out = tmp_path / "latency"
    cfg = load_config("latency", ["entries=[full,linformer,treeformer_tf,treeformer_tc]", "lengths=[32,64]",
                                  "repeats=1", "warmup=0", "d_model=16", "n_heads=2", "d_mlp=32", "n_layers=2",
                                  "options.linformer.k=8", "options.treeformer_tf.height=2",
                                  "options.treeformer_tc.height=2", f"out_dir={out}"])
    run(cfg)
    df = pd.read_csv(out / "latency.csv")
    assert list(df.columns) == CSV_COLUMNS
    assert len(df) == 8 and (df["status"] == "ok").all(), df[["entry", "length", "status", "reason"]]
    assert set(zip(df["entry"], df["length"], strict=True)) == {
        (e, L) for e in ("full", "linformer", "treeformer_tf", "treeformer_tc") for L in (32, 64)}
    assert (df["threads"] == 1).all() and (df["batch"] == 1).all() and (df["n_timed"] == 1).all()
    assert (df["ms_median"] > 0).all() and df["ms_median"].map(math.isfinite).all()
    # attention GFLOPs beside latency: 2 layers of the entry's formula at batch 1, head_dim 8
    full = df[df["entry"] == "full"].set_index("length")
    for L in (32, 64):
        want = 2 * attention_flops(build("full"), B=1, H=2, q_axes=L, D=8).total / 1e9
        assert full.loc[L, "attn_gflops"] == pytest.approx(want)
    assert full.loc[64, "attn_gflops"] / full.loc[32, "attn_gflops"] == pytest.approx(4.0)  # ~ L^2
    tf = df[df["entry"] == "treeformer_tf"]
    assert (tf["attn_gflops_measured"] > 0).all()  # measured leaf slots of the point's input
    assert df[df["entry"] == "full"]["attn_gflops_measured"].isna().all()  # shape-only cost: no measurement
    md = (out / "latency.md").read_text()
    assert "| length" in md and "treeformer_tf (ms)" in md and "full attn GFLOPs" in md
    assert "faster than full" in md
    assert (out / "latency.png").stat().st_size > 0 and (out / "machine.json").is_file()
    flops = pd.read_csv(out / "attention_flops.csv")  # every sequence entry, timed or not
    assert set(flops["entry"]) == {e for e in available() if not get(e).caps.tensor}
    assert "| smyrf" in (out / "attention_flops.md").read_text()
    assert "Crossovers" in capsys.readouterr().out


def test_default_config_is_the_paper_setting_and_bad_keys_are_named():
    cfg = load_config("latency")
    assert cfg.entries == ["full", "linformer", "treeformer_tf", "treeformer_tc"]
    assert (cfg.threads, cfg.batch, cfg.device.value) == (1, 1, "cpu") and cfg.lengths == [512, 1024, 2048, 4096]
    with pytest.raises(ConfigError, match="entries"):
        load_config("latency", ["entries=[hot]"])  # a tensor entry
    with pytest.raises(ConfigError, match="n_heads"):
        load_config("latency", ["n_heads=3"])
    with pytest.raises(ConfigError, match="options.linformer"):
        load_config("latency", ["+options.linformer.nope=1"])


def test_flop_table_rows_scale_and_name_unbuildable_entries():
    """The FLOP table: full ~ L^2, linear ~ L over the configured lengths; an entry whose required option is unset
    is a row with the reason, not a crash."""
    cfg = dataclasses.replace(load_config("latency", ["lengths=[512,1024]"]), options={})
    rows = pd.DataFrame(flop_rows(cfg)).set_index(["entry", "length"])
    assert rows.loc[("full", 1024), "attn_gflops"] / rows.loc[("full", 512), "attn_gflops"] == pytest.approx(4.0)
    assert rows.loc[("linear", 1024), "attn_gflops"] / rows.loc[("linear", 512), "attn_gflops"] == pytest.approx(2.0)
    assert "options.linformer" in rows.loc[("linformer", 512), "reason"]
    assert pd.isna(rows.loc[("linformer", 512), "attn_gflops"])
