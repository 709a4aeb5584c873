"""Accuracy vs attention FLOPs and learning curves from stored sweeps: fake job folders in the on-disk layout
(results.json, csv/metrics.csv, multirun.yaml), no training."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from attnbench.analysis.report import write_table
from attnbench.analysis.spec import parse_spec
from scripts.make_table import main as make_table

PNG = b"\x89PNG\r\n\x1a\n"
LRA_TARGET = "attnbench.lit.classification.ClassificationModule"
GLUE_TARGET = "attnbench.lit.text_classification.TextClassificationModule"
CURVES = {"metrics": ["val/acc", "train/loss_step"], "by": ["callbacks.tree_bootstrap.order", "model/attention"],
          "smooth": {"train/loss_step": 2}}
TABLE = {"kind": "tasks", "rows": ["task"], "columns": "model", "metrics": ["acc"], "direction": "higher",
         "reference": "lra", "baseline": [], "curves": CURVES}


def metrics_csv(train: dict[int, float], val: dict[int, float]) -> str:
    """A Lightning CSVLogger file: train rows and val rows apart, the other columns empty."""
    lines = ["epoch,step,train/loss_step,val/acc,val/loss"]
    lines += [f"0,{s},{v},," for s, v in train.items()] + [f"0,{s},,{v},1.0" for s, v in val.items()]
    return "\n".join(lines) + "\n"


def lra_job(root: Path, num: int, attention: str, order: str, seed: int, *, acc: float | None = None,
            gflops: float | None = None, log: str | None = None, table: dict | None = None) -> Path:
    """One job folder ``<num>_...`` with results.json (and csv/metrics.csv when ``log``), as train.py writes."""
    d = root / f"{num}_callbacks.tree_bootstrap.order={order},model-attention={attention},seed={seed}"
    d.mkdir(parents=True)
    ok = acc is not None
    metrics = {"test/acc": acc, "val/acc": acc, "n_params": 1000, "epochs": 1, "attention_gflops": gflops} if ok \
        else {}
    result = {"status": "ok" if ok else "failed", "error": None if ok else "RuntimeError: boom", "metrics": metrics,
              "choices": {"model": "lra_encoder", "model/attention": attention, "experiment": "treeformer/listops",
                          "data": "lra"},
              "overrides": [f"model/attention={attention}", f"callbacks.tree_bootstrap.order={order}",
                            f"seed={seed}"],
              "config": {"seed": seed, "table": table or TABLE, "data": {"task": "listops"},
                         "model": {"_target_": LRA_TARGET, "net": {"attention": {"name": attention}}},
                         "callbacks": {"tree_bootstrap": {"order": order}}}}
    (d / "results.json").write_text(json.dumps(result))
    if log is not None:
        (d / "csv").mkdir()
        (d / "csv" / "metrics.csv").write_text(log)
    return d


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """full (order=off) and treeformer_tf (order=both), two seeds each; a failed treeformer_tf (order=off) that
    wrote no log."""
    root = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    lra_job(root, 0, "full", "off", 0, acc=0.35, gflops=0.04,
            log=metrics_csv({4: 2.0, 9: 1.0}, {9: 0.2, 19: 0.3}))
    lra_job(root, 1, "full", "off", 1, acc=0.37, gflops=0.04,
            log=metrics_csv({4: 3.0, 9: 2.0}, {9: 0.4, 19: 0.5}))
    lra_job(root, 2, "treeformer_tf", "both", 0, acc=0.40, gflops=0.01,
            log=metrics_csv({4: 2.0, 9: 1.5}, {9: 0.3, 19: 0.6}))
    lra_job(root, 3, "treeformer_tf", "both", 1, acc=0.42, gflops=0.01,
            log=metrics_csv({4: 2.0, 9: 1.5}, {9: 0.3, 19: 0.6}))
    lra_job(root, 4, "treeformer_tf", "off", 0)
    return root


def test_cost_table_share_of_full_and_plot(sweep, tmp_path):
    out = tmp_path / "out"
    md, paths = write_table(sweep, out)
    names = [p.name for p in paths]
    assert names[:4] == ["table.md", "table.tex", "table.csv", "runs.csv"]
    assert {"cost.csv", "acc_vs_attention_gflops.png"} <= set(names)
    assert (out / "acc_vs_attention_gflops.png").read_bytes()[:8] == PNG
    cost = pd.read_csv(out / "cost.csv").set_index("model")
    tree = "ours: treeformer_tf (callbacks.tree_bootstrap.order=both)"
    full = "ours: full (callbacks.tree_bootstrap.order=off)"
    assert cost.loc[tree, "attention_gflops"] == pytest.approx(0.01)
    assert cost.loc[tree, "share_of_full"] == pytest.approx(0.25)
    assert cost.loc[full, "share_of_full"] == pytest.approx(1.0)
    assert cost.loc[tree, "acc"] == pytest.approx(41.0) and cost.loc[tree, "n"] == 2
    assert pd.isna(cost.loc["Transformer", "attention_gflops"])  # published rows have none
    main, cost_md = md.split("## Attention cost")
    assert "| ours: treeformer_tf (callbacks.tree_bootstrap.order=both) | 41.00 ± 1.41 (n=2) | 41.00 |" in main
    assert f"| {tree} | 41.00 ± 1.41 (n=2) | 0.01 | 0.250 |" in cost_md
    assert "| ours: treeformer_tf (callbacks.tree_bootstrap.order=off) | failed | – | – |" in cost_md
    assert "| Transformer | 36.37 | – | – |" in cost_md


def test_curves_csv_holds_group_means_and_failed_job_is_reported(sweep, tmp_path):
    out = tmp_path / "out"
    md, paths = write_table(sweep, out)
    for name in ("curves_val_acc.png", "curves_train_loss_step.png"):
        assert out / name in paths and (out / name).read_bytes()[:8] == PNG
    pts = pd.read_csv(out / "curves.csv", keep_default_na=False)
    assert set(pts["line"]) == {"order=off, attention=full", "order=both, attention=treeformer_tf"}  # no failed
    at = pts.set_index(["metric", "line", "step"])
    full = "order=off, attention=full"
    row = at.loc[("val/acc", full, 9)]
    assert (row["mean"], row["min"], row["max"], row["n"]) == pytest.approx((0.3, 0.2, 0.4, 2))
    assert at.loc[("val/acc", full, 19), "mean"] == pytest.approx(0.4)
    # train/loss_step smoothed per job over 2 points: seed 0 (2.0, 1.5), seed 1 (3.0, 2.5) -> means 2.5, 2.0
    assert at.loc[("train/loss_step", full, 4), "mean"] == pytest.approx(2.5)
    assert at.loc[("train/loss_step", full, 9), "mean"] == pytest.approx(2.0)
    assert at.loc[("val/acc", "order=both, attention=treeformer_tf", 19), "n"] == 2
    section = md.split("## Learning curves")[1]
    assert "| val/acc | order=both, attention=treeformer_tf | 19 | 0.6000 (0.6000–0.6000) | 2 |" in section
    assert "| val/acc | order=off, attention=full | 19 | 0.4000 (0.3000–0.5000) | 2 |" in section
    assert "Not plotted (1):" in section
    assert "model-attention=treeformer_tf,seed=0: failed, no csv/metrics.csv" in section


def test_a_truncated_run_is_a_line_of_its_own(tmp_path):
    root = tmp_path / "sweep"
    lra_job(root, 0, "full", "off", 0, acc=0.3, gflops=0.04, log=metrics_csv({4: 2.0}, {9: 0.2}))
    debug = lra_job(root, 1, "full", "off", 1, acc=0.9, gflops=0.04, log=metrics_csv({4: 1.0}, {9: 0.9}))
    result = json.loads((debug / "results.json").read_text())
    result["choices"]["debug"] = "fast"
    (debug / "results.json").write_text(json.dumps(result))
    md, _ = write_table(root, tmp_path / "out")
    pts = pd.read_csv(tmp_path / "out" / "curves.csv").set_index(["metric", "line", "step"])
    assert pts.loc[("val/acc", "order=off, attention=full", 9), "mean"] == pytest.approx(0.2)  # not pooled
    assert pts.loc[("val/acc", "order=off, attention=full‡", 9), "mean"] == pytest.approx(0.9)
    assert "‡ truncated run: debug run (debug=fast) (a line of its own)." in md.split("## Learning curves")[1]


def test_bad_curves_key_names_the_key_and_the_allowed_ones(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"experiment=x: unknown key table.curves.metric; allowed: metrics, by, "
                                         r"panels, smooth"):
        parse_spec({**TABLE, "curves": {"metric": ["val/acc"], "by": ["seed"]}}, "experiment=x")
    with pytest.raises(ValueError, match=r"table.curves.smooth.val/loss: not in table.curves.metrics; allowed: "
                                         r"val/acc, train/loss_step"):
        parse_spec({**TABLE, "curves": {**CURVES, "smooth": {"val/loss": 3}}}, "experiment=x")
    with pytest.raises(ValueError, match=r"table.curves.by is required"):
        parse_spec({**TABLE, "curves": {"metrics": ["val/acc"]}}, "experiment=x")
    root = tmp_path / "sweep"
    lra_job(root, 0, "full", "off", 0, acc=0.3, gflops=0.04, table={**TABLE, "curves": {"colour": "red"}})
    assert make_table([str(root)]) == 2
    assert "unknown key table.curves.colour; allowed: metrics, by, panels, smooth" in capsys.readouterr().err


def test_glue_cost_plot_and_curves_per_task_panel(tmp_path):
    """GLUE: score_vs_attention_gflops.png; curves of val/score, one panel per task; no full row: no share."""
    table = {"kind": "glue", "rows": ["task"], "columns": "model", "metrics": ["score"], "direction": "higher",
             "reference": "treeformer_glue", "baseline": [],
             "curves": {"metrics": ["val/score"], "by": ["callbacks.tree_bootstrap.order"], "panels": "data.task"}}
    root = tmp_path / "sweep"
    for i, (task, order, score) in enumerate([("rte", "both", 60.0), ("rte", "off", 55.0), ("sst2", "both", 80.0)]):
        d = root / str(i)
        (d / "csv").mkdir(parents=True)
        (d / "csv" / "metrics.csv").write_text(f"epoch,step,val/score\n0,10,{score - 5}\n1,20,{score}\n")
        (d / "results.json").write_text(json.dumps({
            "status": "ok", "metrics": {"test/score": score, "attention_gflops": 0.2},
            "choices": {"model": "tree_bert", "model/attention": "treeformer_tf"},
            "overrides": [f"data.task={task}", f"callbacks.tree_bootstrap.order={order}"],
            "config": {"table": table, "data": {"task": task}, "callbacks": {"tree_bootstrap": {"order": order}},
                       "model": {"_target_": GLUE_TARGET, "net": {"attention": {"name": "treeformer_tf"}}}}}))
    md, paths = write_table(root, tmp_path / "out")
    assert {"score_vs_attention_gflops.png", "curves_val_score.png", "table.png"} <= {p.name for p in paths}
    assert "| ours: tree_bert[treeformer_tf] boot=both | 60.00 (n=1) | 0.2 | – |" in md  # no full job: no share
    pts = pd.read_csv(tmp_path / "out" / "curves.csv").set_index(["panel", "line", "step"])
    assert pts.loc[("rte", "order=off", 20), "mean"] == pytest.approx(55.0)
    assert pts.loc[("sst2", "order=both", 10), "mean"] == pytest.approx(75.0)
    assert "| val/score | rte | order=both | 20 | 60.0000 | 1 |" in md


def test_results_without_attention_flops_render_as_before(tmp_path):
    root = tmp_path / "sweep"
    lra_job(root, 0, "full", "off", 0, acc=0.3, gflops=None, table={k: v for k, v in TABLE.items() if k != "curves"})
    md, paths = write_table(root, tmp_path / "out")
    assert "## Attention cost" not in md and "## Learning curves" not in md
    assert [p.name for p in paths] == ["table.md", "table.tex", "table.csv", "runs.csv"]
