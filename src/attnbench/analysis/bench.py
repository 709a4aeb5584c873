"""Benchmark reports: every benchmark's Markdown tables, set-up line and cost-vs-size figures come from here.

    md = table(rows)                       # Markdown, "(none)" when empty
    md = grid(df, rows=["entry"], col="length", cell=lambda r: f"{r['ms_median']:.1f}")  # one column per length
    head = machine_line(machine, "B 4, H 8")
    scaling_figure(df, "out.png", x="length", xlabel="length L",
                   panels=[Panel("ms_median", "time (ms)", {"pass": "fwd"}, "forward")], colour="entry")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

STYLES = ("-", "--", ":", "-.")


def table(rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> str:
    """Rows (dicts or a frame) as a Markdown table with cells exactly as given; ``(none)`` when empty."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    return frame.to_markdown(index=False, disable_numparse=True) if len(frame) else "(none)"


def grid(df: pd.DataFrame, *, rows: Sequence[str], col: str, cell: Callable[[pd.Series], str],
         col_label: Callable[[Any], str] = lambda v: f"{v:,}", missing: str = "-") -> str:
    """A Markdown table with one row per distinct ``rows`` key of ``df`` (first-seen order) and one column per
    value of ``col`` (sorted), each cell ``cell(row)`` of the frame row at that key and column (``missing`` where
    there is none; the first where there are several)."""
    cols = sorted(df[col].unique())
    out = []
    for key, g in df.groupby(list(rows), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        by = g.drop_duplicates(col).set_index(col)
        out.append({**dict(zip(rows, map(str, key), strict=True)),
                    **{col_label(c): cell(by.loc[c]) if c in by.index else missing for c in cols}})
    return table(out)


def machine_line(machine: Mapping[str, Any], setting: str = "") -> str:
    """``Device: <name> (<device>), torch <v>, <n> thread(s)[; setting]; wall time <s> s; load average a -> b.``
    from the benchmark's ``machine`` record (``bench.common.machine_info`` plus ``wall_s``, ``loadavg_start``,
    ``loadavg_end``)."""
    parts = [f"Device: {machine['device_name']} ({machine['device']}), torch {machine['torch']}, "
             f"{machine['threads']} thread(s)"]
    if setting:
        parts.append(setting)
    parts.append(f"wall time {machine['wall_s']:.0f} s")
    parts.append(f"load average {machine['loadavg_start'][0]:.2f} -> {machine['loadavg_end'][0]:.2f}.")
    return "; ".join(parts)


def figure_title(machine: Mapping[str, Any], setting: str) -> str:
    """``<device name>, <setting>, <n> thread(s)``: a benchmark figure's title from its ``machine`` record."""
    return f"{machine['device_name']}, {setting}, {machine['threads']} thread(s)"


@dataclass(frozen=True)
class Panel:
    """One axes: ``metric`` against the figure's x, over the rows matching ``where`` (column -> value)."""

    metric: str
    ylabel: str
    where: Mapping[str, Any] = field(default_factory=dict)
    title: str = ""


def scaling_figure(df: pd.DataFrame, path: str | Path, *, x: str, xlabel: str, panels: Sequence[Panel],
                   colour: str, style: str | None = None, ncols: int = 2, title: str = "",
                   panel_size: tuple[float, float] = (5.5, 4.0)) -> Any:
    """Log-log lines of each panel's metric vs ``x`` over the ``status == "ok"`` rows: one colour per value of
    ``colour``, one line style per value of ``style`` (if given), the same colour for a value in every panel.
    Writes ``path`` (PNG) and returns the matplotlib Figure."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    ok = df[df["status"] == "ok"] if "status" in df else df
    colours = sorted(df[colour].unique(), key=str)
    styles = sorted(df[style].unique(), key=str) if style else []
    nrows = -(-len(panels) // ncols)
    ncols = min(ncols, len(panels))
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, p in zip(axes, panels, strict=False):
        sel = ok
        for col, val in p.where.items():
            sel = sel[sel[col] == val]
        keys = [colour, style] if style else [colour]
        for key, g in sel.groupby(keys):
            key = key if isinstance(key, tuple) else (key,)
            g = g.sort_values(x)
            label = str(key[0]) + (f" ({style}={key[1]})" if style else "")
            ax.plot(g[x], g[p.metric], marker="o", ms=3, color=f"C{colours.index(key[0]) % 10}",
                    ls=STYLES[styles.index(key[1]) % len(STYLES)] if style else "-", label=label)
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=p.ylabel, title=p.title)
        ax.grid(True, which="both", alpha=0.3)
        if len(sel):
            ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(Path(path), dpi=110)
    return fig


# bench.hot_step's variants: what a user sets to run each (the training command is `python train.py model=hot
# data=ett`); `fast` is what that command runs by default, so every speed-up is stated against it first
HOT_STEP_VARIANTS = {
    "fast": "default (fast paths on, `nn.Dropout` masks)",
    "reference": "fast paths off (the slow references)",
    "fast_packed": "`dropout_rng=packed`",
    "bf16": "`trainer.precision=bf16-mixed`",
    "bf16_packed": "`trainer.precision=bf16-mixed dropout_rng=packed`",
    "compiled": "`model.compile=true`",
}


def hot_step_rows(df: pd.DataFrame) -> pd.DataFrame:
    """bench.hot_step's rows (``hot_step.csv``) with the speed-ups recomputed from the medians: ``vs_default``
    against the ``fast`` variant (what training runs by default), ``vs_reference`` against the slow path."""
    med = df.set_index("variant")["step_ms_median"]
    out = df.copy()
    out["vs_default"] = med["fast"] / out["step_ms_median"]
    out["vs_reference"] = med["reference"] / out["step_ms_median"]
    return out


def half_line(machine: Mapping[str, Any]) -> str:
    """Whether the benchmark's CPU has native bfloat16 matmuls, with the measured matmul rates."""
    native = machine.get("bf16_native")
    said = {True: "native bfloat16 matmuls (AVX512-BF16 / AMX)",
            False: "no native bfloat16 (no AVX512-BF16 / AMX: bfloat16 is emulated)",
            None: "bfloat16 support unknown (this torch has no oneDNN probe)"}[native]
    rates = f"sgemm {machine['sgemm_gflops']:.0f} GFLOP/s"
    if "bf16_gemm_gflops" in machine:
        rates += f", bfloat16 GEMM {machine['bf16_gemm_gflops']:.1f} GFLOP/s"
    return f"{said}; {rates}"


def commit_line(machine: Mapping[str, Any]) -> str:
    """``commit abc1234`` (``, with uncommitted changes``) from a record's ``code``."""
    code = machine.get("code") or {}
    if not code.get("commit"):
        return "commit not recorded"
    return f"commit {code['commit'][:7]}" + (", with uncommitted changes" if code.get("dirty") else "")


def hot_step_markdown(df: pd.DataFrame, machine: Mapping[str, Any]) -> str:
    """bench.hot_step's report: one row per variant, speed-ups against the default first, then the machine."""
    rows = hot_step_rows(df)
    order = [v for v in HOT_STEP_VARIANTS if v in set(rows["variant"])]
    rows = rows.set_index("variant").loc[order].reset_index()
    body = table([{
        "variant": r["variant"], "how to run it": HOT_STEP_VARIANTS[r["variant"]],
        "step ms (median, IQR)": f"{r['step_ms_median']:,.1f} ({r['step_ms_iqr']:,.1f})",
        "vs default": f"{r['vs_default']:.2f}x", "vs reference": f"{r['vs_reference']:.2f}x",
        "matmul floor ms": f"{r['floor_ms']:,.1f}",
        "first loss rel. diff": f"{r['loss_rel_diff']:.1e}", "no-dropout loss rel. diff": f"{r['eval_rel_diff']:.1e}",
    } for _, r in rows.iterrows()])
    first = rows.iloc[0]
    return (f"{body}\n\nOne training step of `python train.py model={first['model']} data={first['data']}` (batch "
            f"{first['batch_size']}), {first['threads']} thread(s), {first['repeats']} timed repeats interleaved. "
            f"{machine['cpu_model']}, torch {machine['torch']}: {half_line(machine)}; {commit_line(machine)}.\n")


def hot_step_speedups(df: pd.DataFrame, machine: Mapping[str, Any]) -> str:
    """The README's speed-up lines: each faster option against the default, then against the slow reference,
    with the CPU feature bfloat16 needs and whether the benchmark's CPU has it."""
    rows = hot_step_rows(df).set_index("variant")
    lines = []
    for v in ("fast_packed", "bf16", "bf16_packed", "compiled"):
        if v not in rows.index:
            continue
        r = rows.loc[v]
        need = " (needs native bfloat16: AVX512-BF16 or AMX)" if v.startswith("bf16") else ""
        lines.append(f"- {HOT_STEP_VARIANTS[v]}{need}: **{r['vs_default']:.2f}x** the default's speed "
                     f"({r['step_ms_median']:,.0f} against {rows.loc['fast', 'step_ms_median']:,.0f} ms a step); "
                     f"{r['vs_reference']:.2f}x against the slow reference path.")
    return ("\n".join(lines) + f"\n\nMeasured by `make bench-step` on {machine['cpu_model']} ({machine['threads']} "
            f"thread(s); {half_line(machine)}; {commit_line(machine)}); "
            "the full table is in docs/benchmarks.md.\n")
