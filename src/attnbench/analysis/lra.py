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
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.analysis import reference as published
from attnbench.analysis.model_tasks import ModelTaskLayout
from attnbench.analysis.render import Rendered
from attnbench.analysis.runs import job_parts
from attnbench.analysis.runs import load_runs as load_jobs
from attnbench.analysis.spec import TableSpec

TASKS = {"listops": "ListOps", "text": "Text", "retrieval": "Retrieval", "image": "Image",
         "pathfinder": "Pathfinder"}  # the paper's column order
RUN_COLUMNS = ["task", "model", "status", "error", "acc", "epochs", "wall_time_s", "n_params",
               "attention", "attention_gflops", "run_dir"]


def _job_row(job_dir: Path, result: dict[str, Any], status: str | None = None) -> list[dict[str, Any]]:
    choices, data, metrics, base = job_parts(job_dir, result, ("task",), status, " (not an LRA job?)")
    acc = metrics.get("test/acc")
    att = (((result.get("config") or {}).get("model") or {}).get("net") or {}).get("attention") or {}
    return [{**base, "task": str(data["task"]), "model": str(att.get("name") or choices["model"]),
             "acc": None if acc is None else 100.0 * float(acc)}]


def load_runs(sweep_dir: str | Path) -> pd.DataFrame:
    """Every job under ``sweep_dir`` (failed and missing jobs kept); columns ``RUN_COLUMNS`` + ``FACT_COLUMNS``."""
    return load_jobs(sweep_dir, _job_row, RUN_COLUMNS, ("data.task", "lra_task"),
                     ("acc", "epochs", "wall_time_s", "n_params", "attention_gflops"), ["model", "task", "run_dir"])


load_reference = functools.partial(published.for_kind, kind="tasks")  # columns task, model, acc, ...


LAYOUT = ModelTaskLayout(
    metric="acc", tasks=TASKS, extra_tasks=True, unconfirmed_shown_only=True,
    ours_note="Ours: test accuracy in %, mean ± std over seeds (n runs; no ± for one run).",
    caption="Long Range Arena: test accuracy in % (higher is better).", label="tab:lra")


def task_table(runs: pd.DataFrame, reference: pd.DataFrame, notes: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows ``ours: <attention>`` then the published models; columns the tasks our sweep ran (paper order; others
    after them), then ``Avg`` (``analysis.model_tasks``)."""
    return LAYOUT.table(runs, reference, notes)


def majority_note(runs: pd.DataFrame) -> str | None:
    """``Majority class ...: ListOps 16.15 % (label 0: 323 of 2,000), ...``: the share of each task's most frequent
    test label, counted from the row sums of a job's ``confusion_matrix.csv`` (lit.artifacts writes it; the
    records keep it), so the floor a classifier must beat comes from the data, not from typing; None without one."""
    parts = []
    for task, name in TASKS.items():
        for run_dir in runs.loc[runs["task"] == task, "run_dir"]:
            path = Path(run_dir) / "confusion_matrix.csv"
            if path.is_file():
                counts = pd.read_csv(path, index_col=0).sum(axis=1)
                parts.append(f"{name} {100 * counts.max() / counts.sum():.2f} % (label {counts.idxmax()}: "
                             f"{counts.max():,} of {counts.sum():,})")
                break
    return ("Majority class (the most frequent test label's share, from a job's confusion_matrix.csv): "
            + ", ".join(parts) + ".") if parts else None


def rendered(sweep_dir: str | Path, spec: TableSpec) -> Rendered:
    """The task table of a sweep: table.md, table.tex, table.csv (the shown cells), runs.csv (one row per job)."""
    runs = load_runs(sweep_dir)
    ref = load_reference(spec.reference)
    majority = majority_note(runs)
    table = task_table(runs, ref, [*spec.notes, *([majority] if majority else [])])
    return LAYOUT.rendered(table, runs, ref)
