"""Sweep -> MedMNIST3D classification table: fake results.json folders, no training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from attnbench.analysis.classification import (
    RUN_COLUMNS,
    classification_table,
    classifier_label,
    cost_table,
    display_cost,
    display_frame,
    load_reference,
    load_runs,
    to_latex,
    to_markdown,
)
from attnbench.analysis.report import write_table
from attnbench.analysis.runs import FACT_COLUMNS
from attnbench.analysis.spec import experiment_spec, sweep_spec
from attnbench.data.catalog import MEDMNIST3D

ROOT = Path(__file__).resolve().parents[1]
ATTENTION = {"hot3d": "hot", "vit3d": "full"}  # the models' default model/attention choice
OOM = "RuntimeError: CUDA out of memory. Tried to allocate 4.00 GiB"
TARGET = "attnbench.lit.classification.ClassificationModule"
OUTPUT_NAMES = ("table.md", "table.tex", "table.csv", "runs.csv", "table.png")
HOT_NOTE = "HOT's own published numbers (Omranpour et al., arXiv:2412.02919) are not available here"


def write_job(root: Path, num: int, model: str, dataset: str, size: int = 28, *, status: str = "ok",
              acc: float | None = None, auc: float | None = None, attention: str | None = None,
              error: str | None = None, n_params: int = 820_000, hydra: bool = True) -> Path:
    """One job folder ``root/<num>/`` with ``results.json`` in the layout train.py writes (and ``.hydra/``)."""
    metrics: dict = {}
    if status == "ok":
        metrics = {"test/acc": acc, "test/auc": auc, "test/loss": 0.3, "val/acc": acc, "val/acc_best": acc,
                   "n_params": n_params, "epochs": 30 + num}
        if model in ATTENTION:  # train.py's attention FLOPs per example (attention.flops.FlopRecorder)
            metrics["attention_gflops"] = 0.5 * num
    choices = {"model": model, "data": "medmnist3d", "trainer": "gpu", "experiment": "hot/medmnist3d"}
    if model in ATTENTION:
        choices["model/attention"] = attention or ATTENTION[model]
    result = {
        "status": status, "error": error, "metrics": metrics, "best_checkpoint": None,
        "wall_time_s": 600.0 + 60 * num, "peak_memory_mb": 2048.0, "peak_memory_kind": "cuda_max_allocated",
        "choices": choices, "overrides": [f"model={model}", f"data.name={dataset}", f"data.size={size}"],
        "config": {"data": {"name": dataset, "size": size, "n_classes": 2},
                   "model": {"_target_": TARGET, "n_classes": 2}},
    }
    d = root / str(num)
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(result))
    if hydra:
        write_hydra(d, model, dataset, size, attention)
    return d


def write_hydra(job: Path, model: str, dataset: str, size: int, attention: str | None = None) -> None:
    """The ``.hydra/`` folder Hydra writes into every job before it runs."""
    (job / ".hydra").mkdir(parents=True, exist_ok=True)
    (job / ".hydra" / "config.yaml").write_text(
        f"data:\n  name: {dataset}\n  size: {size}\n  n_classes: ${{medmnist_classes:${{data.name}}}}\n"
        f"model:\n  _target_: {TARGET}\n")
    attn = f"      model/attention: {attention or ATTENTION[model]}\n" if model in ATTENTION else ""
    (job / ".hydra" / "hydra.yaml").write_text(
        f"hydra:\n  runtime:\n    choices:\n      model: {model}\n{attn}      data: medmnist3d\n")


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Two seeds of hot3d, a vit3d, a failed resnet3d on Organ 28; a missing vit3d on Nodule; 64^3 jobs."""
    root = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    write_job(root, 0, "hot3d", "organmnist3d", acc=0.900, auc=0.990)
    write_job(root, 1, "hot3d", "organmnist3d", acc=0.920, auc=0.994, hydra=False)
    write_job(root, 2, "vit3d", "organmnist3d", acc=0.850, auc=0.980, n_params=1_500_000)
    write_job(root, 3, "resnet3d", "organmnist3d", status="failed", error=OOM)
    write_job(root, 4, "hot3d", "nodulemnist3d", acc=0.860, auc=0.900)
    write_hydra(root / "5", "vit3d", "nodulemnist3d", 28)  # killed: .hydra/ only
    write_job(root, 6, "hot3d", "adrenalmnist3d", 64, attention="hot_linear", acc=0.800, auc=0.850)
    write_job(root, 7, "resnet3d", "adrenalmnist3d", 64, acc=0.780, auc=0.860, n_params=33_000_000)
    return root


@pytest.fixture
def reference() -> pd.DataFrame:
    return load_reference("medmnist3d")


SPEC = experiment_spec("hot/medmnist3d")  # the table the experiment declares


def cls_table(runs: pd.DataFrame, reference: pd.DataFrame, baselines: list[str] | None = None) -> pd.DataFrame:
    """The classification table with the experiment's baselines (or ``baselines``), notes and label."""
    return classification_table(runs, reference, baselines or SPEC.baseline, SPEC.notes, SPEC.baseline_label)


def md_rows(md: str) -> dict[tuple[str, str], dict[str, str]]:
    """The first Markdown table's rows keyed by (dataset, size), each a dict keyed by header."""
    lines = [ln for ln in md.split("\n\n## ")[0].splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[(cells[0], cells[1])] = dict(zip(header, cells, strict=True))
    return rows


# ---------------------------------------------------------------------------------------------- reference
@pytest.mark.parametrize("dataset, model, acc, auc", [
    ("organmnist3d", "ResNet-18 (3D)", 0.907, 0.996),
    ("organmnist3d", "ResNet-18 (ACS)", 0.900, 0.994),
    ("nodulemnist3d", "auto-sklearn", 0.874, 0.914),
    ("adrenalmnist3d", "ResNet-18 (2.5D)", 0.772, 0.718),
])
def test_reference_values(reference, dataset, model, acc, auc):
    row = reference.set_index(["dataset", "size", "model"]).loc[(dataset, 28, model)]
    assert (row["acc"], row["auc"]) == (acc, auc)


def test_reference_shape(reference):
    assert list(reference.columns) == ["dataset", "size", "model", "acc", "auc", "source", "confirmed"]
    assert len(reference) == 6 * 8
    assert set(reference["dataset"]) == set(MEDMNIST3D)
    assert set(reference["size"]) == {28}
    assert reference["confirmed"].dtype == bool and reference["confirmed"].all()
    with pytest.raises(FileNotFoundError, match="medmnist3d"):
        load_reference("no_such_table")


# ---------------------------------------------------------------------------------------------- runs
def test_label_names_only_non_default_attention():
    assert classifier_label({"model": "hot3d", "model/attention": "hot"}) == "hot3d"
    assert classifier_label({"model": "vit3d", "model/attention": "full"}) == "vit3d"
    assert classifier_label({"model": "resnet3d"}) == "resnet3d"
    assert classifier_label({"model": "hot3d", "model/attention": "hot_linear"}) == "hot3d[hot_linear]"


def test_load_runs_keeps_failed_and_missing(sweep):
    runs = load_runs(sweep)
    assert list(runs.columns) == [*RUN_COLUMNS, *FACT_COLUMNS]
    assert len(runs) == 8
    assert runs["status"].value_counts().to_dict() == {"ok": 6, "failed": 1, "missing": 1}
    assert set(runs["model"]) == {"hot3d", "hot3d[hot_linear]", "vit3d", "resnet3d"}
    failed = runs[runs["status"] == "failed"].iloc[0]
    assert (failed["model"], failed["dataset"], failed["size"], failed["error"]) == (
        "resnet3d", "organmnist3d", 28, OOM)
    missing = runs[runs["status"] == "missing"].iloc[0]
    assert (missing["model"], missing["dataset"], missing["size"]) == ("vit3d", "nodulemnist3d", 28)
    assert "no results.json" in missing["error"] and missing["run_dir"] == str(sweep / "5")
    ok = runs[runs["run_dir"] == str(sweep / "2")].iloc[0]
    assert (ok["acc"], ok["auc"], ok["val_acc_best"], ok["epochs"], ok["n_params"]) == (
        0.850, 0.980, 0.850, 32, 1_500_000)


def test_the_sweep_names_its_table(sweep, tmp_path):
    """The table is the one the experiment declares (choices.experiment), not guessed from targets."""
    spec = sweep_spec(sweep)
    assert (spec.kind, spec.reference, spec.baseline) == ("classification", "medmnist3d",
                                                          ["ResNet-18 (3D)", "ResNet-50 (3D)"])
    fc = tmp_path / "forecast" / "0"
    fc.mkdir(parents=True)
    (fc / "results.json").write_text(json.dumps({
        "status": "ok", "metrics": {"test/acc": 0.4}, "choices": {"model": "hot", "experiment": "hot/forecasting"},
        "config": {"data": {"name": "ETTh1", "pred_len": 96}, "model": {"_target_": TARGET}}}))
    assert sweep_spec(fc.parent).kind == "forecasting"  # a target or metric name does not change the table
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sweep_spec(tmp_path / "nope")


def test_empty_or_absent_sweep_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results.json"):
        load_runs(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_runs(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------- table
def test_table_values(sweep, reference):
    table = cls_table(load_runs(sweep), reference)
    assert list(table.index) == [("organmnist3d", 28), ("nodulemnist3d", 28), ("adrenalmnist3d", 64)]
    organ = table.loc[("organmnist3d", 28)]
    assert organ[("ours", "hot3d", "acc")] == pytest.approx(0.910)
    assert organ[("ours", "hot3d", "auc")] == pytest.approx(0.992)
    assert organ[("ours", "hot3d", "n")] == 2
    assert organ[("ours", "vit3d", "acc")] == 0.850
    assert organ[("ours", "resnet3d", "failed")] == 1 and pd.isna(organ[("ours", "resnet3d", "acc")])
    assert organ[("published", "ResNet-18 (3D)", "acc")] == 0.907
    assert organ[("published", "AutoKeras", "auc")] == 0.979
    # best of ours (hot3d 0.910 / 0.992) - best ResNet (3D) (ResNet-18: 0.907 / 0.996)
    assert organ[("diff", "best", "acc")] == pytest.approx(0.003)
    assert organ[("diff", "best", "auc")] == pytest.approx(-0.004)
    assert table.loc[("nodulemnist3d", 28), ("ours", "vit3d", "missing")] == 1
    adrenal = table.loc[("adrenalmnist3d", 64)]
    assert adrenal[("ours", "hot3d[hot_linear]", "acc")] == 0.800
    assert adrenal.xs("published", level="group").isna().all()  # no published 64^3 numbers
    assert pd.isna(adrenal[("diff", "best", "acc")])


def test_markdown_cells_notes_and_failures(sweep, reference):
    runs = load_runs(sweep)
    md = to_markdown(cls_table(runs, reference), runs)
    rows = md_rows(md)
    organ = rows[("organmnist3d", "28")]
    assert organ["hot3d ACC"] == "**0.910** ± 0.014" and organ["hot3d AUC"] == "0.992 ± 0.003"  # 2 seeds
    assert organ["hot3d n"] == "2"
    assert organ["resnet3d ACC"] == "failed" and organ["resnet3d n"] == "0 (+1 failed)"
    assert organ["ResNet-18 (3D) AUC"] == "**0.996**" and organ["ResNet-18 (3D) ACC"] == "0.907"
    assert organ["Δ best vs ResNet (3D) ACC"] == "+0.003" and organ["Δ best vs ResNet (3D) AUC"] == "-0.004"
    assert rows[("nodulemnist3d", "28")]["vit3d ACC"] == "missing"
    adrenal = rows[("adrenalmnist3d", "64")]
    assert adrenal["ResNet-18 (3D) ACC"] == "–" and adrenal["hot3d[hot_linear] ACC"] == "**0.800**"
    assert "Published numbers are for 28³ only; our runs at 64³ are not directly comparable" in md
    assert "MedMNIST v2" in md and "†" not in md  # every reference value is confirmed
    failed = md.split("## Failed or missing jobs (2)")[1]
    assert OOM in failed and str(sweep / "3") in failed and str(sweep / "5") in failed
    cost = md.split("## Cost of our runs")[1].split("## Failed")[0]
    assert "| vit3d params" in cost and "1.50M" in cost and "33.00M" in cost
    assert "| hot3d min" in cost and "10.5" in cost  # (600 + 660) / 2 s = 10.5 min


def test_unconfirmed_value_gets_dagger(tmp_path):
    write_job(tmp_path / "s", 0, "hot3d", "organmnist3d", acc=0.950, auc=0.999)
    ref = tmp_path / "ref.csv"
    ref.write_text("paper,table,row,column,metric,value,source,confirmed\n"
                   "p,t,organmnist3d/28,ResNet-18 (3D),auc,0.996,paper,true\n"
                   "p,t,organmnist3d/28,ResNet-18 (3D),acc,0.907,paper,false\n"
                   "p,t,organmnist3d/28,ResNet-50 (3D),auc,0.994,paper,true\n"
                   "p,t,organmnist3d/28,ResNet-50 (3D),acc,0.883,paper,true\n")
    table = cls_table(load_runs(tmp_path / "s"), load_reference(str(ref)))
    frame = display_frame(table, "md")
    assert frame.loc[("organmnist3d", 28), ("ResNet-18 (3D)", "ACC")] == "0.907†"
    assert frame.loc[("organmnist3d", 28), ("hot3d", "ACC")] == "**0.950**"
    assert "† not confirmed" in to_markdown(table, load_runs(tmp_path / "s"))
    with pytest.raises(ValueError, match="choose from"):
        cls_table(load_runs(tmp_path / "s"), load_reference(str(ref)), baselines=["ResNet-18 (2.5D)"])


def test_cost_table(sweep):
    cost = cost_table(load_runs(sweep))
    assert cost.loc[("organmnist3d", 28), ("cost", "hot3d", "minutes")] == pytest.approx(10.5)
    assert cost.loc[("organmnist3d", 28), ("cost", "hot3d", "epochs")] == pytest.approx(30.5)
    assert cost.loc[("adrenalmnist3d", 64), ("cost", "resnet3d", "n_params")] == 33_000_000
    assert pd.isna(cost.loc[("organmnist3d", 28), ("cost", "resnet3d", "minutes")])  # failed
    assert pd.isna(cost.loc[("adrenalmnist3d", 64), ("cost", "resnet3d", "attention_gflops")])  # no attention
    gflops = cost.loc[("organmnist3d", 28), ("cost", "hot3d", "attention_gflops")]
    assert gflops > 0 and display_cost(cost).loc[("organmnist3d", 28), ("hot3d", "attn GFLOPs")] == f"{gflops:.3g}"


def test_latex(sweep, reference):
    runs = load_runs(sweep)
    tex = to_latex(cls_table(runs, reference), runs)
    for needle in (r"\toprule", r"\bottomrule", r"\multicolumn{2}{c}{ResNet-18 (3D)}", r"\textbf{0.910}",
                   r"hot3d[hot\_linear]", r"$\Delta$ best", "28$^3$", "failed", "missing",
                   r"\label{tab:medmnist3d-cost}"):
        assert needle in tex, needle
    assert tex.count(r"\begin{table}") == 2


# ---------------------------------------------------------------------------------------------- outputs, CLI
def test_write_outputs(sweep, tmp_path):
    out = tmp_path / "paper"
    md, paths = write_table(sweep, out)
    assert paths == [out / name for name in OUTPUT_NAMES]
    assert HOT_NOTE in md  # the experiment's note
    for name in OUTPUT_NAMES:
        assert (out / name).stat().st_size > 0, name
    assert (out / "table.md").read_text() == md
    assert (out / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_csv(out / "runs.csv")) == 8
    wide = pd.read_csv(out / "table.csv", index_col=[0, 1])
    assert wide.loc[("organmnist3d", 28), "ours/hot3d/acc"] == pytest.approx(0.910)
    assert wide.loc[("organmnist3d", 28), "published/ResNet-18 (3D)/acc"] == 0.907
    assert "cost/vit3d/n_params" in wide.columns


def test_cli_dispatches_classification(sweep, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_table.py"), str(sweep), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "## Classification: test ACC / AUC" in proc.stdout and "ResNet-18 (3D) ACC" in proc.stdout
    assert proc.stdout.strip() == (out / "table.md").read_text().strip()
    for name in OUTPUT_NAMES:
        assert (out / name).is_file() and name in proc.stderr, name
