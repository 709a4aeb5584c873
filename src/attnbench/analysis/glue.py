"""GLUE / IMDB sweep (SMYRF-BERT) -> one row per model, one column per task (score, %), beside the paper's rows.

    runs = load_runs("outputs/smyrf_glue/multiruns/<time>")
    print(to_markdown(glue_table(runs, load_reference("smyrf_glue")), runs))

A job's cell is its ``test/score`` (the mean of the task's GLUE metrics on dev, see
``lit.text_classification``); jobs that differ only by seed share a cell, shown as mean ± std (n=seeds); a
truncated run's row carries a footnote marker (``analysis.runs``). ``Avg`` is the plain mean over the tasks
shown, for ours and for the published rows alike (the paper's own Avg also counts MNLI-m/mm, QNLI and QQP;
it is given in a note). Failed and missing jobs stay visible as cells and are listed with their error.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.analysis import reference as published
from attnbench.analysis.model_tasks import ModelTaskLayout
from attnbench.analysis.render import Rendered, legend_below
from attnbench.analysis.runs import job_parts, model_label
from attnbench.analysis.runs import load_runs as load_jobs
from attnbench.analysis.spec import TableSpec

TASKS = {"cola": "CoLA", "mnli_m": "MNLI-m", "mnli_mm": "MNLI-mm", "mrpc": "MRPC", "qnli": "QNLI", "qqp": "QQP",
         "rte": "RTE", "sst2": "SST-2", "stsb": "STS-B", "wnli": "WNLI", "imdb": "IMDB"}  # the paper's order
# the loader adds runs.FACT_COLUMNS
RUN_COLUMNS = ["task", "model", "status", "error", "score", "epochs", "wall_time_s", "n_params",
               "attention", "attention_gflops", "run_dir"]
GLUE_KEYS = ("data.task", "model.net.pretrained", "model.net.attention.n_hashes",
             "model.net.attention.cluster_size", "callbacks.tree_bootstrap.order",
             "model.init_from")  # overrides the table (or the model label) already names
DEFAULT_PRETRAINED = "bert-base-uncased"


def glue_label(choices: dict[str, Any], config: dict[str, Any]) -> str:
    """``model`` (+ ``[attention]`` when swapped to a non-default entry), plus ``(pretrained)`` when not BERT-base
    and the SMYRF budget ``n_hashes x cluster_size`` when SMYRF runs."""
    model = str(choices["model"])
    default = "full" if model == "bert" else "smyrf" if model.startswith("smyrf_bert") else model
    if choices.get("model/attention") == default:
        choices = {k: v for k, v in choices.items() if k != "model/attention"}
    label = model_label(choices)
    net = (config.get("model") or {}).get("net") or {}
    att = net.get("attention") or {}
    if att.get("name") == "smyrf":
        label += f" {att.get('n_hashes')}x{att.get('cluster_size')}"
    pretrained = net.get("pretrained")
    if pretrained and pretrained != DEFAULT_PRETRAINED:
        label += f" ({Path(str(pretrained)).name})"
    boot = ((config.get("callbacks") or {}).get("tree_bootstrap") or {}).get("order")
    if boot:  # Treeformer's bootstrapping schedule (lit.treeformer): with or without
        label += f" boot={boot}"
    if (config.get("model") or {}).get("init_from"):  # started from an MLM continued pre-training checkpoint
        label += " +MLM"
    return label


def _job_row(job_dir: Path, result: dict[str, Any], status: str | None = None) -> list[dict[str, Any]]:
    choices, data, metrics, base = job_parts(job_dir, result, ("task",), status, " (not a GLUE job?)")
    return [{**base, "task": str(data["task"]), "model": glue_label(choices, result.get("config") or {}),
             "score": metrics.get("test/score")}]


def load_runs(sweep_dir: str | Path) -> pd.DataFrame:
    """Every job under ``sweep_dir`` (``runs.read_jobs``: failed and missing jobs kept); columns
    ``RUN_COLUMNS`` + ``FACT_COLUMNS``."""
    return load_jobs(sweep_dir, _job_row, RUN_COLUMNS, GLUE_KEYS,
                     ("score", "epochs", "wall_time_s", "n_params", "attention_gflops"),
                     ["model", "task", "run_dir"])


load_reference = functools.partial(published.for_kind, kind="glue")  # columns task, model, score, ...


LAYOUT = ModelTaskLayout(
    metric="score", tasks=TASKS, ours_note="Ours: mean ± std over seeds (n runs; no ± for one run).",
    caption="Text classification: score in % (higher is better).", label="tab:glue")


def glue_table(runs: pd.DataFrame, reference: pd.DataFrame, notes: list[str] | tuple[str, ...] = ()
               ) -> pd.DataFrame:
    """Rows: our models then the published ones; columns: the tasks our sweep ran (paper order), then ``Avg``
    (``analysis.model_tasks``: mean test/score over seeds, hidden ``_std:<task>`` / ``_n:<task>``)."""
    return LAYOUT.table(runs, reference, notes)


def score_figure(table: pd.DataFrame) -> Any:
    """Grouped bars of the score per task: our rows (outlined) beside the published ones; a task where one of
    ours failed or is missing shows a red x at zero."""
    from matplotlib import rcParams
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas on savefig

    tasks = [c for c in table.columns if not c.startswith("_") and c != "Avg"]
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    fig = Figure(figsize=(max(7.0, 1.5 * len(tasks) + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    handles: dict[str, Any] = {}
    width = 0.8 / max(1, len(table))
    for k, (model, row) in enumerate(table.iterrows()):
        xs = [j + (k - (len(table) - 1) / 2) * width for j in range(len(tasks))]
        ys = [row[t] if isinstance(row[t], float) else float("nan") for t in tasks]
        ours = str(model).startswith("ours: ")
        std = [row.get(f"_std:{t}") for t in tasks] if ours else None
        handles[str(model)] = ax.bar(xs, ys, width, color=colors[k % len(colors)], linewidth=0.6,
                                     edgecolor="black" if ours else "none", yerr=std, capsize=2,
                                     error_kw={"linewidth": 0.8})
        bad = [x for x, t in zip(xs, tasks, strict=True) if ours and isinstance(row[t], str)]
        if bad:
            (handles["failed / missing"],) = ax.plot(bad, [0] * len(bad), "x", color="red", markersize=9,
                                                     clip_on=False)
    ax.set_xticks(range(len(tasks)), [TASKS.get(t, t) for t in tasks])
    ax.set_xlim(-0.5, len(tasks) - 0.5)
    ax.set_ylabel("score (%)")
    order = sorted(handles, key=lambda name: name == "failed / missing")  # the marker's entry last
    legend_below(fig, [handles[n] for n in order], order)
    return fig


def rendered(sweep_dir: str | Path, spec: TableSpec) -> Rendered:
    """The GLUE / IMDB table of a sweep: table.md, table.tex, table.csv (the shown cells), runs.csv (one row per
    job), table.png."""
    runs = load_runs(sweep_dir)
    ref = load_reference(spec.reference)
    table = glue_table(runs, ref, spec.notes)
    return LAYOUT.rendered(table, runs, ref, figure=score_figure(table))
