"""Long Range Arena sweep -> one row per attention, one column per task (test accuracy, %), and ``Avg``, beside the
published rows (``table: kind: tasks``; LRA's Table 1).

    runs = load_runs("outputs/lra_table/multiruns/<time>")
    print(to_markdown(task_table(runs, load_reference("lra")), runs))

A job's cell is its ``test/acc`` x 100; its row is the attention entry it ran (``model.net.attention.name``, plus
the overrides that set jobs apart, ``analysis.runs.label_variants``; the task and its preset ``lra_task`` are the
columns); jobs that differ only by seed share a cell, shown as
mean ± std (n=seeds). ``Avg`` is the mean over the tasks shown, for ours and the published rows alike (LRA's
printed Avg is over all five tasks; the experiment's notes give it). Failed and missing jobs stay visible as
cells and are listed with their error.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.analysis import reference as published
from attnbench.analysis.render import Fmt, Rendered, latex_table, tex_escape, tex_note
from attnbench.analysis.runs import job_parts, mean_std, status_kind, sweep_notes, truncation_notes
from attnbench.analysis.runs import load_runs as load_jobs
from attnbench.analysis.spec import TableSpec

TASKS = {"listops": "ListOps", "text": "Text", "retrieval": "Retrieval", "image": "Image",
         "pathfinder": "Pathfinder"}  # the paper's column order
RUN_COLUMNS = ["task", "model", "status", "error", "acc", "epochs", "wall_time_s", "n_params", "run_dir"]


def _job_row(job_dir: Path, result: dict[str, Any], status: str | None = None) -> list[dict[str, Any]]:
    choices, data, metrics, base = job_parts(job_dir, result, ("task",), status, " (not an LRA job?)")
    acc = metrics.get("test/acc")
    att = (((result.get("config") or {}).get("model") or {}).get("net") or {}).get("attention") or {}
    return [{**base, "task": str(data["task"]), "model": str(att.get("name") or choices["model"]),
             "acc": None if acc is None else 100.0 * float(acc)}]


def load_runs(sweep_dir: str | Path) -> pd.DataFrame:
    """Every job under ``sweep_dir`` (failed and missing jobs kept); columns ``RUN_COLUMNS`` + ``FACT_COLUMNS``."""
    return load_jobs(sweep_dir, _job_row, RUN_COLUMNS, ("data.task", "lra_task"),
                     ("acc", "epochs", "wall_time_s", "n_params"), ["model", "task", "run_dir"])


load_reference = functools.partial(published.for_kind, kind="tasks")  # columns task, model, acc, ...


def _avg(values: list[Any]) -> float | None:
    nums = [v for v in values if isinstance(v, float) and not math.isnan(v)]
    return sum(nums) / len(nums) if nums and len(nums) == len(values) else None


def task_table(runs: pd.DataFrame, reference: pd.DataFrame, notes: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows ``ours: <attention>`` then the published models; columns the tasks our sweep ran (paper order; others
    after them), then ``Avg``. Hidden ``_std:<task>`` / ``_n:<task>`` hold the spread over seeds; a published row
    with a value not marked confirmed has ``_unconfirmed``."""
    ran = set(runs["task"])
    tasks = [t for t in TASKS if t in ran] + sorted(ran - set(TASKS))
    out: dict[str, dict[str, Any]] = {}
    for model, g in runs.groupby("model", sort=False):
        row: dict[str, Any] = {}
        for t in tasks:
            jobs = g[g["task"] == t]
            mean, std, n = mean_std(jobs[jobs["status"] == "ok"]["acc"])
            row[t] = mean if n else (status_kind(jobs["status"].iloc[0]) if len(jobs) else None)
            row[f"_std:{t}"], row[f"_n:{t}"] = std, n
        row["Avg"] = _avg([row[t] for t in tasks])
        out[f"ours: {model}"] = row
    for model, g in reference.groupby("model", sort=False):
        by_task = g.set_index("task")
        row = {t: (float(by_task.loc[t, "acc"]) if t in by_task.index else None) for t in tasks}
        row["Avg"] = _avg(list(row.values()))
        row["_unconfirmed"] = not bool(g[g["task"].isin(tasks)]["confirmed"].all())
        out[model] = row
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame = frame[[c for c in frame.columns if not c.startswith("_")] + [c for c in frame.columns if c.startswith("_")]]
    frame.index.name = "model"
    frame.attrs.update(sweep_notes(runs), notes=list(notes))
    return frame


def _cell(v: Any, std: Any = None, n: Any = None, pm: str = "±", dash: str = "–") -> str:
    """``36.37 ± 0.41 (n=3)`` for ours (``(n=1)`` without ±), ``36.37`` for a published value."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return dash
    if not isinstance(v, float):
        return str(v)
    text = f"{v:.2f}" + ("" if std is None or pd.isna(std) else f" {pm} {std:.2f}")
    return text + ("" if n is None or pd.isna(n) else f" (n={int(n)})")


def display_frame(table: pd.DataFrame, fmt: Fmt = "md") -> pd.DataFrame:
    """String cells; index the row names (``?`` on published rows with an unconfirmed value); columns the
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
    notes = ["Ours: test accuracy in %, mean ± std over seeds (n runs; no ± for one run).",
             *truncation_notes(table.attrs)]
    if reference is not None and not reference.empty:
        notes.append(f"Published rows: {reference['source'].iloc[0]}.")
    return notes + table.attrs.get("notes", [])


def to_markdown(table: pd.DataFrame, runs: pd.DataFrame, reference: pd.DataFrame | None = None) -> str:
    """Markdown: the table, its notes, and the jobs without a result with their errors."""
    frame = display_frame(table, "md")
    lines = ["| model | " + " | ".join(frame.columns) + " |", "|---|" + "---|" * frame.shape[1]]
    lines += [f"| {model} | " + " | ".join(row) + " |"
              for model, row in zip(frame.index, frame.to_numpy().tolist(), strict=True)]
    notes = ["", *_notes(table, reference)]
    bad = runs[runs["status"] != "ok"]
    if not bad.empty:
        notes += ["", "Jobs without a result:"] + [f"- {r.model} / {r.task}: {r.status}: {r.error} ({r.run_dir})"
                                                    for r in bad.itertuples()]
    return "\n".join(lines + notes) + "\n"


def to_latex(table: pd.DataFrame, reference: pd.DataFrame | None = None, label: str = "tab:lra") -> str:
    """LaTeX ``table`` (booktabs, 2 decimals) with the notes under it."""
    return "% needs \\usepackage{booktabs,graphicx}\n" + latex_table(
        display_frame(table, "tex"), "Long Range Arena: test accuracy in % (higher is better).", label,
        [tex_note(n) for n in _notes(table, reference)], fit_width=True)


def rendered(sweep_dir: str | Path, spec: TableSpec) -> Rendered:
    """The task table of a sweep: table.md, table.tex, table.csv (the shown cells), runs.csv (one row per job)."""
    runs = load_runs(sweep_dir)
    ref = load_reference(spec.reference)
    table = task_table(runs, ref, spec.notes)
    shown = table.drop(columns=[c for c in table.columns if c.startswith("_")])
    return Rendered(markdown=to_markdown(table, runs, ref), latex=to_latex(table, ref),
                    csv={"table.csv": (shown, True), "runs.csv": (runs, False)})
