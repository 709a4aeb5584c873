"""The models x tasks layout shared by the GLUE / IMDB, LRA and perplexity tables: one row per model (ours, then
the published ones), one column per task, an optional ``Avg``.

A kind describes itself once (``ModelTaskLayout``: which runs column holds a job's value, the tasks' headers in
the paper's order, the legend, the caption) and gets the table, its Markdown and LaTeX from here::

    LAYOUT = ModelTaskLayout(metric="acc", tasks={"listops": "ListOps"}, ours_note="Ours: ...",
                             caption="...", label="tab:lra")
    table = LAYOUT.table(runs, reference, notes)       # hidden _std:<task>, _n:<task>, _unconfirmed columns
    md, tex = LAYOUT.to_markdown(table, runs, reference), LAYOUT.to_latex(table, reference)
    rendered = LAYOUT.rendered(table, runs, reference)  # + attention-cost tables, <metric>_vs_attention_gflops.png

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

from attnbench.analysis.render import Fmt, Rendered, latex_table, legend_below, panel_grid, tex_escape, tex_note
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

    # ------------------------------------------------------------------------------ accuracy vs attention cost
    def cost_table(self, table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
        """Long form, one line per task shown x table row: ``task``, ``model`` (the table's row), ``status``
        (``failed`` / ``missing`` where the table shows one, else ""), the metric,
        its ``<metric>_std`` and ``n`` (as in the table), ``attention_gflops`` (mean over the row's ok jobs of the
        task; per example forward, ``attention.flops``; NaN for published rows and rows without a number) and
        ``share_of_full``: that over the mean of the sweep's ok ``full``-attention jobs of the task (NaN when the
        sweep ran none)."""
        ok = runs[runs["status"] == "ok"]
        lines = []
        for t in [c for c in table.columns if not c.startswith("_") and c != "Avg"]:
            full = pd.to_numeric(ok[(ok["task"] == t) & (ok["attention"] == "full")]["attention_gflops"]).dropna()
            full_gflops = float(full.mean()) if len(full) else math.nan
            for row_name, row in table.iterrows():
                name = str(row_name)
                jobs = ok[(ok["task"] == t) & (ok["model"] == name.removeprefix("ours: "))] \
                    if name.startswith("ours: ") else ok.iloc[:0]
                gflops, _, _ = mean_std(jobs["attention_gflops"])
                value = row[t] if isinstance(row[t], float) else math.nan
                lines.append({"task": t, "model": name, "status": row[t] if isinstance(row[t], str) else "",
                              self.metric: value,
                              f"{self.metric}_std": row.get(f"_std:{t}", math.nan), "n": row.get(f"_n:{t}"),
                              "attention_gflops": gflops, "share_of_full": gflops / full_gflops})
        return pd.DataFrame(lines, columns=["task", "model", "status", self.metric, f"{self.metric}_std", "n",
                                            "attention_gflops", "share_of_full"])

    def cost_markdown(self, cost: pd.DataFrame) -> str:
        """One Markdown table per task: the metric (as in the main table), attention GFLOPs per example and the
        share of full attention's; ``–`` where a row has none."""
        lines = ["", "## Attention cost", ""]
        for t, g in cost.groupby("task", sort=False):
            lines += [f"### {self.tasks.get(str(t), str(t))}", "",
                      f"| model | {self.metric} | attention GFLOPs / example | share of full |", "|---|---|---|---|"]
            std = f"{self.metric}_std"
            lines += [f"| {r.model} | {r.status or cell(getattr(r, self.metric), getattr(r, std), r.n)} | "
                      + ("–" if pd.isna(r.attention_gflops) else f"{r.attention_gflops:.4g}") + " | "
                      + ("–" if pd.isna(r.share_of_full) else f"{r.share_of_full:.3f}") + " |"
                      for r in g.itertuples()]
            lines.append("")
        lines.append("Attention GFLOPs: attention-kernel FLOPs of one example's forward pass (attention.flops), "
                     "mean over a row's ok jobs; share of full: over the mean of the sweep's full-attention jobs "
                     "of the task (– when the sweep ran none). Published rows and rows without a result have none.")
        return "\n".join(lines) + "\n"

    def cost_figure(self, cost: pd.DataFrame) -> Any:
        """The metric against attention GFLOPs per example (log x), one labelled point per row of ours that has
        both (error bar: ± std over seeds when n > 1), one panel per task."""
        pts = cost.dropna(subset=["attention_gflops", self.metric])
        tasks = list(dict.fromkeys(pts["task"]))
        models = list(dict.fromkeys(pts["model"]))
        fig, axes = panel_grid(len(tasks))
        handles: dict[str, Any] = {}
        for ax, t in zip(axes, tasks, strict=False):
            for r in pts[pts["task"] == t].itertuples():
                std = getattr(r, f"{self.metric}_std")
                handles[r.model] = ax.errorbar([r.attention_gflops], [getattr(r, self.metric)],
                                               yerr=None if pd.isna(std) else [std], fmt="o", capsize=3,
                                               color=f"C{models.index(r.model) % 10}")
                ax.annotate(r.model.removeprefix("ours: "), (r.attention_gflops, getattr(r, self.metric)),
                            textcoords="offset points", xytext=(4, 4), fontsize=7)
            ax.set(xscale="log", xlabel="attention GFLOPs per example", ylabel=self.metric,
                   title=self.tasks.get(t, t))
            ax.grid(True, which="both", alpha=0.3)
        for ax in axes[len(tasks):]:
            ax.set_visible(False)
        if handles:
            legend_below(fig, list(handles.values()), list(handles))
        return fig

    def rendered(self, table: pd.DataFrame, runs: pd.DataFrame, reference: pd.DataFrame | None,
                 figure: Any = None) -> Rendered:
        """table.md (+ the attention-cost tables when a run logged ``attention_gflops``), table.tex, table.csv,
        runs.csv, [cost.csv], [table.png], [``<metric>_vs_attention_gflops.png``]. Results without attention FLOPs
        (written before train.py logged them) render exactly as before."""
        md = self.to_markdown(table, runs, reference)
        csv = {"table.csv": (self.shown(table), True), "runs.csv": (runs, False)}
        figures = {}
        if pd.to_numeric(runs["attention_gflops"]).notna().any():
            cost = self.cost_table(table, runs)
            md += self.cost_markdown(cost)
            csv["cost.csv"] = (cost, False)
            figures[f"{self.metric}_vs_attention_gflops.png"] = self.cost_figure(cost)
        return Rendered(markdown=md, latex=self.to_latex(table, reference), csv=csv, figure=figure, figures=figures)
