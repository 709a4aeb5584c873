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
from attnbench.analysis.render import Fmt, Rendered, latex_table, legend_below, tex_escape, tex_note
from attnbench.analysis.runs import (
    job_parts,
    mean_std,
    model_label,
    status_kind,
    sweep_notes,
    truncation_notes,
)
from attnbench.analysis.runs import load_runs as load_jobs
from attnbench.analysis.spec import TableSpec

TASKS = {"cola": "CoLA", "mnli_m": "MNLI-m", "mnli_mm": "MNLI-mm", "mrpc": "MRPC", "qnli": "QNLI", "qqp": "QQP",
         "rte": "RTE", "sst2": "SST-2", "stsb": "STS-B", "wnli": "WNLI", "imdb": "IMDB"}  # the paper's order
# the loader adds runs.FACT_COLUMNS
RUN_COLUMNS = ["task", "model", "status", "error", "score", "epochs", "wall_time_s", "n_params", "run_dir"]
GLUE_KEYS = ("data.task", "model.net.pretrained", "model.net.attention.n_hashes",
             "model.net.attention.cluster_size",
             "callbacks.tree_bootstrap.order")  # overrides the table (or the model label) already names
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
    return label


def _job_row(job_dir: Path, result: dict[str, Any], status: str | None = None) -> list[dict[str, Any]]:
    choices, data, metrics, base = job_parts(job_dir, result, ("task",), status, " (not a GLUE job?)")
    return [{**base, "task": str(data["task"]), "model": glue_label(choices, result.get("config") or {}),
             "score": metrics.get("test/score")}]


def load_runs(sweep_dir: str | Path) -> pd.DataFrame:
    """Every job under ``sweep_dir`` (``runs.read_jobs``: failed and missing jobs kept); columns
    ``RUN_COLUMNS`` + ``FACT_COLUMNS``."""
    return load_jobs(sweep_dir, _job_row, RUN_COLUMNS, GLUE_KEYS, ("score", "epochs", "wall_time_s", "n_params"),
                     ["model", "task", "run_dir"])


load_reference = functools.partial(published.for_kind, kind="glue")  # columns task, model, score, ...


def glue_table(runs: pd.DataFrame, reference: pd.DataFrame, notes: list[str] | tuple[str, ...] = ()
               ) -> pd.DataFrame:
    """Rows: our models then the published ones; columns: the tasks our sweep ran (paper order), then ``Avg``.

    A cell of ours is the mean ``test/score`` over its ok jobs (seeds), ``failed``/``missing`` when none
    succeeded; hidden columns ``_std:<task>`` and ``_n:<task>`` hold the std over seeds and n.
    Published values not marked confirmed get a trailing ``?``. ``attrs``: the truncation legend and ``notes``
    (the experiment's lines under the table).
    """
    tasks = [t for t in TASKS if t in set(runs["task"])]
    out: dict[str, dict[str, Any]] = {}
    for model, g in runs.groupby("model", sort=False):
        row: dict[str, Any] = {}
        for t in tasks:
            jobs = g[g["task"] == t]
            mean, std, n = mean_std(jobs[jobs["status"] == "ok"]["score"])
            row[t] = mean if n else (status_kind(jobs["status"].iloc[0]) if len(jobs) else None)
            row[f"_std:{t}"], row[f"_n:{t}"] = std, n
        nums = [row[t] for t in tasks if isinstance(row[t], float)]
        row["Avg"] = sum(nums) / len(nums) if len(nums) == len(tasks) else None
        out[f"ours: {model}"] = row
    for model, g in reference.groupby("model", sort=False):
        by_task = g.set_index("task")
        row = {t: (float(by_task.loc[t, "score"]) if t in by_task.index else None) for t in tasks}
        nums = [v for v in row.values() if v is not None]
        row["Avg"] = sum(nums) / len(nums) if nums and len(nums) == len(tasks) else None
        row["_unconfirmed"] = not bool(g["confirmed"].all())
        out[model] = row
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame = frame[[c for c in frame.columns if not c.startswith("_")] + [c for c in frame.columns if c.startswith("_")]]
    frame.index.name = "model"
    frame.attrs.update(sweep_notes(runs), notes=list(notes))
    return frame


def _cell(v: Any, std: Any = None, n: Any = None, pm: str = "±", dash: str = "–") -> str:
    """``67.00 ± 1.41 (n=2)`` for ours (``(n=1)`` without ±), ``68.59`` for a published value."""
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return dash
    if not isinstance(v, float):
        return str(v)
    text = f"{v:.2f}" + ("" if std is None or pd.isna(std) else f" {pm} {std:.2f}")
    return text + ("" if n is None or pd.isna(n) else f" (n={int(n)})")


def display_frame(table: pd.DataFrame, fmt: Fmt = "md") -> pd.DataFrame:
    """String cells, index the row names (``?`` on published rows with an unconfirmed value), columns the
    tasks' paper names and ``Avg``."""
    tex = fmt == "tex"
    cols = [c for c in table.columns if not c.startswith("_")]
    cells = {f"{model}{'?' if row.get('_unconfirmed') is True else ''}":
             [_cell(row[c], row.get(f"_std:{c}"), row.get(f"_n:{c}"), r"$\pm$" if tex else "±", "--" if tex else "–")
              for c in cols] for model, row in table.iterrows()}
    frame = pd.DataFrame.from_dict(cells, orient="index", columns=[TASKS.get(c, c) for c in cols])
    frame.index = [tex_escape(str(m)) if tex else m for m in frame.index]
    frame.index.name = "model"
    return frame


def _notes(table: pd.DataFrame, reference: pd.DataFrame | None) -> list[str]:
    """The legend: seeds, truncation marks, where the published rows come from, then the experiment's notes
    (what a score means for its tasks)."""
    notes = ["Ours: mean ± std over seeds (n runs; no ± for one run).", *truncation_notes(table.attrs)]
    if reference is not None and not reference.empty:
        notes.append(f"Published rows: {reference['source'].iloc[0]}.")
    return notes + table.attrs.get("notes", [])


def to_markdown(table: pd.DataFrame, runs: pd.DataFrame, reference: pd.DataFrame | None = None) -> str:
    """Markdown: the table, its notes, and the jobs without a result with their errors."""
    frame = display_frame(table, "md")
    lines = ["| model | " + " | ".join(frame.columns) + " |", "|---|" + "---|" * frame.shape[1]]
    lines += [f"| {model} | " + " | ".join(row) + " |" for model, row in zip(frame.index, frame.to_numpy().tolist(),
                                                                            strict=True)]
    notes = ["", *_notes(table, reference)]
    bad = runs[runs["status"] != "ok"]
    if not bad.empty:
        notes += ["", "Jobs without a result:"] + [f"- {r.model} / {r.task}: {r.status}: {r.error} ({r.run_dir})"
                                                    for r in bad.itertuples()]
    return "\n".join(lines + notes) + "\n"


def to_latex(table: pd.DataFrame, reference: pd.DataFrame | None = None, label: str = "tab:glue") -> str:
    """LaTeX ``table`` (booktabs, 2 decimals) with the notes under it."""
    return "% needs \\usepackage{booktabs,graphicx}\n" + latex_table(
        display_frame(table, "tex"), "Text classification: score in % (higher is better).", label,
        [tex_note(n) for n in _notes(table, reference)], fit_width=True)


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
    shown = table.drop(columns=[c for c in table.columns if c.startswith("_")])
    return Rendered(markdown=to_markdown(table, runs, ref), latex=to_latex(table, ref),
                    csv={"table.csv": (shown, True), "runs.csv": (runs, False)}, figure=score_figure(table))
