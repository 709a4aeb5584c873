"""The models x tasks layout shared by the GLUE / IMDB, LRA and perplexity tables: one row per model (ours, then
the published ones), one column per task, an optional ``Avg``.

A kind describes itself once (``ModelTaskLayout``: which runs column holds a job's value, the tasks' headers in
the paper's order, the legend, the caption) and gets the table, its Markdown and LaTeX from here::

    LAYOUT = ModelTaskLayout(metric="acc", tasks={"listops": "ListOps"}, ours_note="Ours: ...",
                             caption="...", label="tab:lra")
    table = LAYOUT.table(runs, reference, notes)       # hidden _std:<task>, _n:<task>, _unconfirmed columns
    md, tex = LAYOUT.to_markdown(table, runs, reference), LAYOUT.to_latex(table, reference)

Our cell is the mean over a model's ok jobs of that task (seeds), ``failed`` / ``missing`` when none succeeded;
failed and missing jobs are listed under the table with their error. A published value not marked confirmed puts
``?`` on its row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from attnbench.analysis.render import Fmt, latex_table, tex_escape, tex_note
from attnbench.analysis.runs import mean_std, status_kind, sweep_notes, truncation_notes


def average(values: Sequence[Any]) -> float | None:
    """The mean when every value is a number (not NaN), else None."""
    nums = [v for v in values if isinstance(v, float) and not math.isnan(v)]
    return sum(nums) / len(nums) if nums and len(nums) == len(values) else None


def cell(v: Any, std: Any = None, n: Any = None, pm: str = "±", dash: str = "–") -> str:
    """``36.37 ± 0.41 (n=3)`` for ours (``(n=1)`` without ±), ``36.37`` for a published value, a status as is."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return dash
    if not isinstance(v, float):
        return str(v)
    text = f"{v:.2f}" + ("" if std is None or pd.isna(std) else f" {pm} {std:.2f}")
    return text + ("" if n is None or pd.isna(n) else f" (n={int(n)})")


@dataclass(frozen=True)
class ModelTaskLayout:
    """One table kind of the models x tasks shape."""

    metric: str  # the runs column (and reference column) holding a value
    tasks: Mapping[str, str]  # task key -> column header, in the paper's order
    ours_note: str  # the legend's first line
    caption: str
    label: str
    avg: bool = True  # an ``Avg`` column (mean over the tasks shown; None unless every one has a number)
    extra_tasks: bool = False  # tasks the sweep ran that ``tasks`` does not list come after them (else dropped)
    published_prefix: str = ""  # before a published model's name ("CAB: ")
    skip_empty_published: bool = False  # leave out a published model with no value in the tasks shown
    unconfirmed_shown_only: bool = False  # ``?`` only for unconfirmed values in the tasks shown

    def shown_tasks(self, runs: pd.DataFrame) -> list[str]:
        ran = set(runs["task"])
        return [t for t in self.tasks if t in ran] + (sorted(ran - set(self.tasks)) if self.extra_tasks else [])

    def table(self, runs: pd.DataFrame, reference: pd.DataFrame, notes: Sequence[str] = ()) -> pd.DataFrame:
        """Rows ``ours: <model>`` then the published models; columns the tasks shown, then ``Avg``; hidden
        ``_std:<task>`` / ``_n:<task>`` (spread over seeds) and ``_unconfirmed``; ``attrs``: the truncation
        legend and ``notes`` (the experiment's lines under the table)."""
        tasks = self.shown_tasks(runs)
        out: dict[str, dict[str, Any]] = {}
        for model, g in runs.groupby("model", sort=False):
            row: dict[str, Any] = {}
            for t in tasks:
                jobs = g[g["task"] == t]
                mean, std, n = mean_std(jobs[jobs["status"] == "ok"][self.metric])
                row[t] = mean if n else (status_kind(jobs["status"].iloc[0]) if len(jobs) else None)
                row[f"_std:{t}"], row[f"_n:{t}"] = std, n
            if self.avg:
                row["Avg"] = average([row[t] for t in tasks])
            out[f"ours: {model}"] = row
        for model, g in reference.groupby("model", sort=False):
            by_task = g.set_index("task")
            row = {t: (float(by_task.loc[t, self.metric]) if t in by_task.index else None) for t in tasks}
            if self.skip_empty_published and all(v is None for v in row.values()):
                continue
            if self.avg:
                row["Avg"] = average(list(row.values()))
            scope = g[g["task"].isin(tasks)] if self.unconfirmed_shown_only else g
            row["_unconfirmed"] = not bool(scope["confirmed"].all())
            out[f"{self.published_prefix}{model}"] = row
        frame = pd.DataFrame.from_dict(out, orient="index")
        hidden = [c for c in frame.columns if c.startswith("_")]
        frame = frame[[c for c in frame.columns if c not in hidden] + hidden]
        frame.index.name = "model"
        frame.attrs.update(sweep_notes(runs), notes=list(notes))
        return frame

    def display_frame(self, table: pd.DataFrame, fmt: Fmt = "md") -> pd.DataFrame:
        """String cells; index the row names (``?`` on published rows with an unconfirmed value); columns the
        tasks' headers (and ``Avg``)."""
        tex = fmt == "tex"
        cols = [c for c in table.columns if not c.startswith("_")]
        cells = {f"{model}{'?' if row.get('_unconfirmed') is True else ''}":
                 [cell(row[c], row.get(f"_std:{c}"), row.get(f"_n:{c}"), r"$\pm$" if tex else "±",
                       "--" if tex else "–") for c in cols] for model, row in table.iterrows()}
        frame = pd.DataFrame.from_dict(cells, orient="index", columns=[self.tasks.get(c, c) for c in cols])
        frame.index = [tex_escape(str(m)) if tex else m for m in frame.index]
        frame.index.name = "model"
        return frame

    def notes(self, table: pd.DataFrame, reference: pd.DataFrame | None) -> list[str]:
        """The legend: seeds, truncation marks, where the published rows come from, then the experiment's notes."""
        notes = [self.ours_note, *truncation_notes(table.attrs)]
        if reference is not None and not reference.empty:
            notes.append(f"Published rows: {reference['source'].iloc[0]}.")
        return notes + table.attrs.get("notes", [])

    def to_markdown(self, table: pd.DataFrame, runs: pd.DataFrame, reference: pd.DataFrame | None = None) -> str:
        """Markdown: the table, its notes, and the jobs without a result with their errors."""
        frame = self.display_frame(table, "md")
        lines = ["| model | " + " | ".join(frame.columns) + " |", "|---|" + "---|" * frame.shape[1]]
        lines += [f"| {model} | " + " | ".join(row) + " |"
                  for model, row in zip(frame.index, frame.to_numpy().tolist(), strict=True)]
        notes = ["", *self.notes(table, reference)]
        bad = runs[runs["status"] != "ok"]
        if not bad.empty:
            notes += ["", "Jobs without a result:"] + [f"- {r.model} / {r.task}: {r.status}: {r.error} ({r.run_dir})"
                                                        for r in bad.itertuples()]
        return "\n".join(lines + notes) + "\n"

    def to_latex(self, table: pd.DataFrame, reference: pd.DataFrame | None = None) -> str:
        """LaTeX ``table`` (booktabs, 2 decimals) with the notes under it."""
        return "% needs \\usepackage{booktabs,graphicx}\n" + latex_table(
            self.display_frame(table, "tex"), self.caption, self.label,
            [tex_note(n) for n in self.notes(table, reference)], fit_width=True)

    def shown(self, table: pd.DataFrame) -> pd.DataFrame:
        """The table without its hidden columns (table.csv)."""
        return table.drop(columns=[c for c in table.columns if c.startswith("_")])
