"""Sweep results -> forecasting table beside published numbers (Markdown, LaTeX, CSV, PNG).

    runs = load_runs("outputs/hot_forecasting/multiruns/<time>")  # long form: one row per run x horizon
    table = forecasting_table(runs, load_reference("forecasting_lookback96"), baseline="iTransformer")
    print(to_markdown(table, runs))

The layout of ``table.kind: forecasting`` (``analysis.spec``); ``analysis.report.write_table`` writes it. A
failed job stays in the table as a ``failed`` cell and is listed with its error; a job folder without
``results.json`` (killed, or still running) shows as ``missing``. Jobs that differ only by seed share a cell:
mean ± std over seeds, with n; a truncated run (debug, batch limits, budget overrides; see ``analysis.runs``)
gets its own column whose label carries a footnote marker explained under the table.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.analysis import reference as published
from attnbench.analysis.render import Fmt, Rendered, Style, bests, failed_section, latex_table, legend_below, tex_note
from attnbench.analysis.runs import MARK, cell_stats, job_parts, model_label, sweep_notes, truncation_notes
from attnbench.analysis.runs import load_runs as load_jobs
from attnbench.analysis.spec import TableSpec

RUN_COLUMNS = ["dataset", "horizon", "model", "status", "error", "mse", "mae", "wall_time_s",
               "peak_memory_mb", "n_params", "run_dir"]  # then runs.FACT_COLUMNS
OUR_METRICS = ("mse", "mae", "mse_std", "mae_std", "n", "failed", "missing")  # n: ok runs averaged (seeds)
FORECAST_KEYS = ("data.name", "data.pred_len", "model.horizons")  # overrides the table's rows already name
_PER_HORIZON = re.compile(r"^test/mse_(\d+)$")  # several horizons scored from one long forecast
_KEYS = ["dataset", "horizon", "model"]


# ---------------------------------------------------------------------------------------------- loading
def _rows(job_dir: Path, result: dict[str, Any], status: str | None = None) -> list[dict[str, Any]]:
    """Long-form rows of one job: one per scored horizon (per configured horizon if it has no scores)."""
    choices, data, metrics, base = job_parts(job_dir, result, ("name", "pred_len"), status)
    status = base["status"]
    base |= {"dataset": str(data["name"]), "model": model_label(choices)}
    horizons = sorted(int(m.group(1)) for k in metrics if (m := _PER_HORIZON.match(k)))
    if horizons:
        return [{**base, "horizon": h, "mse": metrics[f"test/mse_{h}"], "mae": metrics.get(f"test/mae_{h}")}
                for h in horizons]
    if status == "ok":
        return [{**base, "horizon": int(data["pred_len"]), "mse": metrics.get("test/mse"),
                 "mae": metrics.get("test/mae")}]
    planned = ((result.get("config") or {}).get("model") or {}).get("horizons") or [data["pred_len"]]
    return [{**base, "horizon": int(h), "mse": None, "mae": None} for h in planned]


def load_runs(sweep_dir: str | Path) -> pd.DataFrame:
    """Every job under ``sweep_dir`` (``runs.read_jobs``: failed and missing jobs kept), one row per run x
    horizon; columns ``RUN_COLUMNS`` + ``FACT_COLUMNS``, ``model`` naming the overrides that tell jobs apart
    and the truncation marker (``runs.label_variants``)."""
    return load_jobs(sweep_dir, _rows, RUN_COLUMNS, FORECAST_KEYS,
                     ("mse", "mae", "wall_time_s", "peak_memory_mb", "n_params"), [*_KEYS, "run_dir"], ("horizon",))


load_reference = functools.partial(published.for_kind, kind="forecasting")  # columns dataset, horizon, model, ...


# ---------------------------------------------------------------------------------------------- table
def forecasting_table(runs: pd.DataFrame, reference: pd.DataFrame, baseline: str,
                      notes: Sequence[str] = ()) -> pd.DataFrame:
    """Wide table, index (dataset, horizon) of the pairs we ran, columns (group, model, metric).

    ``("ours", m, mse|mae|mse_std|mae_std|n|failed|missing)``: our runs averaged over seeds (std: sample
    standard deviation, NaN for one seed); n counts the ok ones.
    ``("published", r, mse|mae|confirmed)``: every reference model. ``("diff", m, mse|mae)``: ours minus
    the published ``baseline`` (negative = better), for the untruncated models only. ``attrs`` holds
    ``baseline``, ``sources`` and ``notes`` (the experiment's lines under the table).
    """
    ref_models = list(dict.fromkeys(reference["model"]))
    if baseline not in ref_models:
        raise ValueError(f"baseline {baseline!r} is not in the reference; choose one of {ref_models}")
    if runs.empty:
        raise ValueError("no runs to tabulate")
    order = list(dict.fromkeys(reference["dataset"]))  # reference order first, then the rest by name
    rank = {d: i for i, d in enumerate(order + sorted(set(runs["dataset"]) - set(order)))}
    pairs = runs[["dataset", "horizon"]].drop_duplicates()
    pairs = pairs.sort_values(["dataset", "horizon"], key=lambda s: s.map(rank) if s.name == "dataset" else s)
    index = pd.MultiIndex.from_frame(pairs)

    stats = cell_stats(runs, _KEYS, ["mse", "mae"])
    ref = reference.set_index(_KEYS)
    base = ref.xs(baseline, level="model").reindex(index)
    cols: dict[tuple[str, str, str], pd.Series] = {}
    models = sorted(runs["model"].unique())
    for m in models:
        s = stats.xs(m, level="model").reindex(index)
        for c in OUR_METRICS:
            cols[("ours", m, c)] = s[c] if c.startswith(("mse", "mae")) else s[c].fillna(0).astype(int)
    for m in (m for m in models if MARK not in m):  # a truncated run gets no Δ (README; as classification)
        for c in ("mse", "mae"):
            cols[("diff", m, c)] = cols[("ours", m, c)] - base[c]
    for r in ref_models:
        s = ref.xs(r, level="model").reindex(index)
        for c in ("mse", "mae", "confirmed"):
            cols[("published", r, c)] = s[c]
    table = pd.DataFrame(cols, index=index)
    table.columns = pd.MultiIndex.from_tuples(list(cols), names=["group", "model", "metric"])
    table.attrs["baseline"] = baseline
    table.attrs["sources"] = sorted(reference["source"].unique())
    table.attrs["notes"] = list(notes)
    table.attrs.update(sweep_notes(runs))
    return table


# ---------------------------------------------------------------------------------------------- writers
def display_frame(table: pd.DataFrame, fmt: Fmt = "md") -> pd.DataFrame:
    """String cells for writing: 3 decimals (mean ± std over seeds), best MSE per row in bold (never a truncated
    run's), ``failed``/``missing`` where a model has no score, a dagger on published values not confirmed by a
    second source."""
    st = Style(fmt)
    ours, pub = table["ours"], table["published"]
    best = bests(table, "mse", higher=False)  # MSE decides; MAE is never bold
    never = pd.Series(float("nan"), index=best.index)
    out: dict[tuple[str, str], list[str]] = {}
    for m in ours.columns.get_level_values("model").unique():
        s = ours[m]
        no_score = ["failed" if f else "missing" if k else st.dash
                    for f, k in zip(s["failed"], s["missing"], strict=True)]
        for c in ("mse", "mae"):
            out[(st.name(m), c.upper())] = [
                st.score(v, b, std=sd) if n else ns
                for v, sd, n, b, ns in zip(s[c], s[f"{c}_std"], s["n"], best if c == "mse" else never, no_score,
                                           strict=True)]
        out[(st.name(m), "n")] = [
            f"{n}" + (f" (+{f} failed)" if f else "") + (f" (+{k} missing)" if k else "")
            for n, f, k in zip(s["n"], s["failed"], s["missing"], strict=True)]
    for m in ours.columns.get_level_values("model").unique():
        if ("diff", m, "mse") not in table.columns:  # truncated
            continue
        for c in ("mse", "mae"):
            out[(f"{st.delta} {st.name(m)}", c.upper())] = [st.signed(v) for v in table[("diff", m, c)]]
    for r in pub.columns.get_level_values("model").unique():
        s = pub[r]
        for c in ("mse", "mae"):
            out[(st.name(r), c.upper())] = [
                st.score(v, b, "" if pd.isna(ok) or ok else st.dagger)
                for v, ok, b in zip(s[c], s["confirmed"], best if c == "mse" else never, strict=True)]
    frame = pd.DataFrame(out)
    frame.columns = pd.MultiIndex.from_tuples(list(out))
    frame.index = pd.MultiIndex.from_arrays(
        [[st.name(str(d)) for d in table.index.get_level_values("dataset")],
         list(table.index.get_level_values("horizon"))], names=["dataset", "H"])
    return frame


def _notes(table: pd.DataFrame, fmt: Fmt) -> list[str]:
    baseline = table.attrs.get("baseline", "the baseline")
    sources = "; ".join(table.attrs.get("sources", []))
    pub = table["published"]
    unconfirmed = pub.xs("confirmed", level="metric", axis=1).isin([False]).to_numpy().any()
    notes = [f"Δ = ours − {baseline} (published); negative = better. Best MSE per row in bold. "
             "Ours: mean ± std over seeds (n runs; no ± for one run).",
             f"Published numbers: {sources}.", *truncation_notes(table.attrs)]
    if unconfirmed:
        notes.append("† not confirmed against a second source.")
    notes += table.attrs.get("notes", [])
    return [tex_note(n) for n in notes] if fmt == "tex" else notes


def failed_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per failed or missing job: model, dataset, horizons, status, error, run_dir."""
    bad = runs[runs["status"] != "ok"]
    return (bad.groupby("run_dir", sort=True)
            .agg(model=("model", "first"), dataset=("dataset", "first"),
                 horizons=("horizon", lambda h: ",".join(str(x) for x in sorted(h))),
                 status=("status", "first"), error=("error", "first"))
            .reset_index()[["model", "dataset", "horizons", "status", "error", "run_dir"]])


def to_markdown(table: pd.DataFrame, runs: pd.DataFrame) -> str:
    """Markdown: the table, its notes, and a section listing failed/missing jobs with their errors."""
    frame = display_frame(table, "md")
    frame.columns = [f"{a} {b}" for a, b in frame.columns]
    lines = ["## Forecasting: test MSE / MAE (lower is better)", "",
             frame.reset_index().to_markdown(index=False, disable_numparse=True), ""]
    lines += [f"- {n}" for n in _notes(table, "md")]
    lines += failed_section(failed_runs(runs))
    return "\n".join(lines) + "\n"


def to_latex(table: pd.DataFrame, label: str = "tab:forecasting") -> str:
    """LaTeX ``table`` (booktabs rules, 3 decimals, multicolumn headers) with the notes under it."""
    return latex_table(display_frame(table, "tex"), "Forecasting: test MSE and MAE (lower is better).", label,
                       _notes(table, "tex"))


def mse_figure(table: pd.DataFrame) -> Any:
    """Grouped bars of test MSE, ours (outlined) beside the published models, one panel per data set.

    A model without a number in a panel is left out of it; a failed/missing run of ours shows as a red x; an
    error bar spans ± one std over seeds.
    """
    from matplotlib import rcParams
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas on savefig

    ours, pub = table["ours"], table["published"]
    our_models = list(ours.columns.get_level_values("model").unique())
    series = ([(m, ours[(m, "mse")], ours[(m, "failed")] + ours[(m, "missing")]) for m in our_models]
              + [(r, pub[(r, "mse")], None) for r in pub.columns.get_level_values("model").unique()])
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    datasets = list(dict.fromkeys(table.index.get_level_values("dataset")))
    ncols = min(3, len(datasets))
    nrows = -(-len(datasets) // ncols)
    fig = Figure(figsize=(max(7.0, 5 * ncols), 3.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    handles: dict[str, Any] = {}
    for ax, d in zip(axes[: len(datasets)], datasets, strict=True):
        horizons = list(table.loc[d].index)
        shown = [(i, name, mse.loc[d].to_numpy(dtype=float), None if bad is None else bad.loc[d].to_numpy())
                 for i, (name, mse, bad) in enumerate(series)
                 if mse.loc[d].notna().any() or (bad is not None and bad.loc[d].any())]
        width = 0.8 / len(shown)
        for k, (i, name, ys, bad) in enumerate(shown):
            xs = [j + (k - (len(shown) - 1) / 2) * width for j in range(len(horizons))]
            std = ours[(name, "mse_std")].loc[d].to_numpy(dtype=float) if bad is not None else None
            handles[name] = ax.bar(xs, ys, width, color=colors[i % len(colors)], linewidth=0.6,
                                   edgecolor="black" if bad is not None else "none", yerr=std, capsize=2,
                                   error_kw={"linewidth": 0.8})
            crosses = [x for x, b in zip(xs, bad if bad is not None else [0] * len(xs), strict=True) if b]
            if crosses:
                (handles["failed / missing"],) = ax.plot(crosses, [0] * len(crosses), "x", color="red",
                                                          markersize=9, clip_on=False)
        ax.set_xticks(range(len(horizons)), [str(h) for h in horizons])
        ax.set_xlim(-0.5, len(horizons) - 0.5)
        ax.set_title(d)
        ax.set_xlabel("horizon")
        ax.set_ylabel("test MSE")
    for ax in axes[len(datasets):]:
        ax.set_visible(False)
    order = [name for name, _, _ in series if name in handles]
    order += ["failed / missing"] if "failed / missing" in handles else []
    legend_below(fig, [handles[n] for n in order], order)
    return fig


def rendered(sweep_dir: str | Path, spec: TableSpec) -> Rendered:
    """The forecasting table of a sweep: table.md, table.tex, table.csv (long-form runs), table.png."""
    if len(spec.baseline) != 1:
        raise ValueError(f"{spec.experiment}: table.baseline={spec.baseline!r}; a forecasting table takes one "
                         "published model")
    runs = load_runs(sweep_dir)
    table = forecasting_table(runs, load_reference(spec.reference), spec.baseline[0], spec.notes)
    return Rendered(markdown=to_markdown(table, runs), latex=to_latex(table), csv={"table.csv": (runs, False)},
                    figure=mse_figure(table))
