"""Learning curves of a sweep, declared by ``table.curves`` (``analysis.spec.CurveSpec``), whatever the table kind.

    curves:
      metrics: [val/acc, train/loss_step]   # columns of each job's Lightning CSV log, against its ``step``
      by: [callbacks.tree_bootstrap.order, model/attention]   # one line per value (a Hydra choice or config path)
      panels: data.task                     # optional: one panel per value
      smooth: {train/loss_step: 10}         # optional: rolling mean over that many logged points, per metric

Each ok job's ``<job>/csv/metrics.csv`` is read (the rows where the metric was logged, the last value per step),
smoothed per job, then pooled per line: mean over the jobs (seeds) at each step, min and max (the shaded band
when n > 1). Writes ``curves_<metric>.png`` per metric and ``curves.csv`` (the plotted points); table.md gets a
section naming the plots, the last logged value of each line, and the jobs not plotted (failed, missing, or
without a log) with why.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.analysis.render import Rendered, legend_below, panel_grid
from attnbench.analysis.runs import MARK, read_jobs, spread, status_kind, truncation_reasons
from attnbench.analysis.spec import CurveSpec

LOG = Path("csv") / "metrics.csv"  # the Lightning CSVLogger's file inside a job folder (conf/logger/csv.yaml)
POINT_COLUMNS = ["metric", "panel", "line", "step", "mean", "min", "max", "n"]
UNSET = "unset"  # a ``by``/``panels`` key a job's config does not have


def job_value(result: dict[str, Any], key: str) -> str:
    """The value of ``key`` for one job: its Hydra choice (``model/attention``), else the config path
    (``callbacks.tree_bootstrap.order``); ``UNSET`` when the job has neither."""
    choices = result.get("choices") or {}
    if key in choices:
        return str(choices[key])
    node: Any = result.get("config") or {}
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return UNSET
        node = node[part]
    return str(node)


def line_label(result: dict[str, Any], by: list[str]) -> str:
    """``order=both, attention=treeformer_tf``: each ``by`` key's last name and the job's value."""
    return ", ".join(f"{re.split(r'[./]', k)[-1]}={job_value(result, k)}" for k in by)


def metric_file(metric: str) -> str:
    """``val/acc`` -> ``curves_val_acc.png``."""
    return "curves_" + re.sub(r"[^A-Za-z0-9]+", "_", metric).strip("_") + ".png"


def load_curves(sweep_dir: str | Path, spec: CurveSpec) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(long form: one row per ok job x metric x logged step, columns ``job``, ``panel``, ``line``, ``metric``,
    ``step``, ``value`` (smoothed as declared); the jobs not plotted and why; the truncation markers' legend).
    A truncated run (``analysis.runs.truncation_reasons``) gets a line of its own, marked ``‡``."""
    frames, skipped = [], []
    marks: dict[str, str] = {}  # truncation reasons -> marker, as analysis.runs.label_variants
    for job, result, status in read_jobs(sweep_dir):
        status = status_kind(status or result.get("status"))
        log_file = job / LOG
        if status != "ok":
            skipped.append(f"{job}: {status}" + ("" if log_file.is_file() else f", no {LOG}"))
            continue
        if not log_file.is_file():
            skipped.append(f"{job}: no {LOG}")
            continue
        log = pd.read_csv(log_file)
        panel = job_value(result, spec.panels) if spec.panels else ""
        truncated = "; ".join(truncation_reasons(result))
        if truncated:  # never pooled with full runs: a line of its own, the reason in table.md
            marks.setdefault(truncated, MARK if not marks else f"{MARK}{len(marks) + 1}")
        line = line_label(result, spec.by) + (marks[truncated] if truncated else "")
        for metric in spec.metrics:
            if metric not in log.columns or "step" not in log.columns:
                skipped.append(f"{job}: {metric} not logged in {LOG}")
                continue
            points = log[["step", metric]].dropna().groupby("step")[metric].last().sort_index()
            window = spec.smooth.get(metric)
            if window:
                points = points.rolling(window, min_periods=1).mean()
            frames.append(pd.DataFrame({"job": str(job), "panel": panel, "line": line, "metric": metric,
                                        "step": points.index.astype(int), "value": points.to_numpy()}))
    columns = ["job", "panel", "line", "metric", "step", "value"]
    legend = [f"{mark} truncated run: {why} (a line of its own)." for why, mark in marks.items()]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)), skipped, legend


def curve_points(curves: pd.DataFrame) -> pd.DataFrame:
    """Per metric, panel, line and step: mean, min, max over the jobs logged there and their number ``n``."""
    if curves.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    g = curves.groupby(["metric", "panel", "line", "step"], sort=True)["value"]
    return g.agg(mean="mean", min="min", max="max", n="count").reset_index()[POINT_COLUMNS]


def curve_figure(points: pd.DataFrame, metric: str, smooth: int | None = None) -> Any:
    """``metric`` against step: one line per ``line`` (mean over jobs), shaded min–max where n > 1; one panel per
    ``panel``; the same colour for a line in every panel."""
    pts = points[points["metric"] == metric]
    panels = list(dict.fromkeys(pts["panel"]))
    lines = sorted(dict.fromkeys(pts["line"]))
    fig, axes = panel_grid(len(panels))
    handles: dict[str, Any] = {}
    for ax, panel in zip(axes, panels, strict=False):
        for line, g in pts[pts["panel"] == panel].groupby("line", sort=True):
            colour = f"C{lines.index(line) % 10}"
            (handles[str(line)],) = ax.plot(g["step"], g["mean"], color=colour, marker="o" if len(g) < 20 else None,
                                            ms=3)
            band = g[g["n"] > 1]
            if len(band):
                ax.fill_between(band["step"], band["min"], band["max"], color=colour, alpha=0.2, linewidth=0)
        ylabel = metric + (f" (rolling mean of {smooth} points)" if smooth else "")
        ax.set(xlabel="step", ylabel=ylabel, title=str(panel))
        ax.grid(True, alpha=0.3)
    for ax in axes[max(1, len(panels)):]:
        ax.set_visible(False)
    if handles:
        legend_below(fig, list(handles.values()), list(handles))
    return fig


def curves_markdown(points: pd.DataFrame, spec: CurveSpec, skipped: list[str], legend: Sequence[str] = ()) -> str:
    """The table.md section: the plots, the last logged value of each line (mean over its jobs, min–max when
    n > 1), the truncation markers' ``legend``, and the jobs not plotted with why."""
    lines = ["", "## Learning curves", "",
             ", ".join(f"{metric_file(m)} ({m})" for m in spec.metrics) + ": against the training step, one line "
             f"per {', '.join(spec.by)}" + (f", one panel per {spec.panels}" if spec.panels else "")
             + "; mean over the jobs (seeds), shaded min–max when n > 1; the points are in curves.csv."]
    if spec.smooth:
        lines.append("Smoothed per job (rolling mean over logged points): "
                     + ", ".join(f"{m} {w}" for m, w in spec.smooth.items()) + ".")
    if not points.empty:
        last = points.sort_values("step").groupby(["metric", "panel", "line"], sort=True).tail(1)
        lines += ["", "| metric | " + ("panel | " if spec.panels else "") + "line | last step | value (min–max) "
                  "| n |", "|---|" + ("---|" if spec.panels else "") + "---|---|---|---|"]
        for r in last.sort_values(["metric", "panel", "line"]).itertuples():
            value = spread(r.mean, float("nan"), 4) + ("" if r.n < 2 else f" ({r.min:.4f}–{r.max:.4f})")
            lines.append(f"| {r.metric} | " + (f"{r.panel} | " if spec.panels else "")
                         + f"{r.line} | {r.step} | {value} | {r.n} |")
    lines += ["", *legend] if legend else []
    if skipped:
        lines += ["", f"Not plotted ({len(skipped)}):"] + [f"- {s}" for s in skipped]
    return "\n".join(lines) + "\n"


def add_curves(rendered: Rendered, sweep_dir: str | Path, spec: CurveSpec) -> Rendered:
    """``rendered`` with the learning curves appended: the table.md section, curves.csv, ``curves_<metric>.png``."""
    curves, skipped, legend = load_curves(sweep_dir, spec)
    points = curve_points(curves)
    rendered.markdown += curves_markdown(points, spec, skipped, legend)
    rendered.csv["curves.csv"] = (points, False)
    for metric in spec.metrics:
        rendered.figures[metric_file(metric)] = curve_figure(points, metric, spec.smooth.get(metric))
    return rendered
