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
from attnbench.analysis.render import (
    Fmt,
    Rendered,
    Style,
    failed_section,
    latex_table,
    legend_below,
    panel_grid,
    tex_note,
)
from attnbench.analysis.runs import cell_stats, job_parts, model_label, sweep_notes, truncation_notes
from attnbench.analysis.runs import load_runs as load_jobs
from attnbench.analysis.spec import TableSpec

RUN_COLUMNS = ["dataset", "horizon", "model", "status", "error", "mse", "mae", "wall_time_s",
               "peak_memory_mb", "n_params", "epochs", "epoch_s", "run_dir"]  # then runs.FACT_COLUMNS
# overrides the table's rows already name (lstf=ETTh1_S: data set, features and horizon, as CAB's LSTF groups them)
FORECAST_KEYS = ("data.name", "data.features", "data.pred_len", "model.horizons", "lstf")
_PER_HORIZON = re.compile(r"^test/mse_(\d+)$")  # several horizons scored from one long forecast
_KEYS = ["dataset", "horizon", "model"]


# ---------------------------------------------------------------------------------------------- loading
def _rows(job_dir: Path, result: dict[str, Any], status: str | None = None) -> list[dict[str, Any]]:
    """Long-form rows of one job: one per scored horizon (per configured horizon if it has no scores)."""
    choices, data, metrics, base = job_parts(job_dir, result, ("name", "pred_len"), status)
    status = base["status"]
    features = data.get("features", "M")  # M: all variables in and out (the published tables); S, MS: one out
    base |= {"dataset": str(data["name"]) + ("" if features == "M" else f" ({features})"),
             "model": model_label(choices)}
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
                     ("mse", "mae", "wall_time_s", "peak_memory_mb", "n_params", "epochs", "epoch_s"),
                     [*_KEYS, "run_dir"], ("horizon",))


load_reference = functools.partial(published.for_kind, kind="forecasting")  # columns dataset, horizon, model, ...


# ---------------------------------------------------------------------------------------------- table
OURS = ("mse", "mae", "mse_std", "mae_std", "n", "failed", "missing")  # n: ok runs averaged (seeds)
COST = ("n_params", "epochs", "epoch_s", "wall_time_s", "peak_memory_mb")  # means over a cell's ok runs


def published_name(label: str, ref_models: Sequence[str]) -> str | None:
    """The published model one of our runs reruns: ``model=itransformer`` (its attention the model's own or
    ``full``) is iTransformer, case aside; a variant (other overrides, another attention) or a truncated run is
    none."""
    for r in ref_models:
        if label in (r.lower(), f"{r.lower()}[full]"):
            return r
    return None


def forecasting_table(runs: pd.DataFrame, reference: pd.DataFrame, baseline: str,
                      notes: Sequence[str] = ()) -> pd.DataFrame:
    """Long table, index (dataset, horizon, model), one row per model of ours and per published model, for the
    (dataset, horizon) pairs we ran.

    A run of ours that reruns a published model (``published_name``) shares its row, named as published.
    Columns: ``OURS`` (mean and sample std over seeds, NaN for one; n ok runs, failed and missing jobs);
    ``pub_mse|pub_mae|pub_confirmed``: the row's published value; ``vs_pub_<m>``: ours minus it;
    ``vs_base_pub_<m>`` and ``vs_base_rerun_<m>``: ours minus the published ``baseline`` and minus our rerun of
    it (negative = better; none for a truncated run, or a rerun against itself); ``COST``; ``ours`` (a run of
    ours is in the row), ``truncated``. ``attrs``: ``baseline``, ``baseline_rerun`` (its row name, None when not
    rerun), ``sources``, ``notes``.
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

    runs = runs.assign(name=[published_name(m, ref_models) or m for m in runs["model"]])
    stats = cell_stats(runs, ["dataset", "horizon", "name"], ["mse", "mae"])
    ok = runs[runs["status"] == "ok"]
    cost = ok.groupby(["dataset", "horizon", "name"])[[c for c in COST if c in ok]].mean()
    ours = [m for m in sorted(set(runs["name"]) - set(ref_models))]  # hot, full, variants; then the published
    names = ours + ref_models
    ran = set(zip(runs["dataset"], runs["horizon"], runs["name"], strict=True))
    published_at = set(zip(reference["dataset"], reference["horizon"], reference["model"], strict=True))
    index = pd.MultiIndex.from_tuples(
        [(d, h, m) for d, h in pairs.itertuples(index=False) for m in names
         if (d, h, m) in ran or (d, h, m) in published_at], names=["dataset", "horizon", "model"])
    table = stats.reindex(index)[list(OURS)].join(cost.reindex(index).reindex(columns=list(COST)))
    for c in ("n", "failed", "missing"):
        table[c] = table[c].fillna(0).astype(int)
    table["ours"] = [k in ran for k in index]
    marked = set(runs.loc[runs["mark"] != "", "name"])
    table["truncated"] = [m in marked for m in index.get_level_values("model")]
    ref = reference.set_index(["dataset", "horizon", "model"]).reindex(index)
    for c in ("mse", "mae"):
        table[f"pub_{c}"] = ref[c]
    table["pub_confirmed"] = ref["confirmed"]

    fair = table["ours"] & ~table["truncated"]  # a truncated run gets no difference (README; as classification)
    base_pub = reference[reference["model"] == baseline].set_index(["dataset", "horizon"])
    rerun = baseline if (table["n"][index.get_level_values("model") == baseline] > 0).any() else None
    dh = pd.MultiIndex.from_arrays([index.get_level_values("dataset"), index.get_level_values("horizon")])
    for c in ("mse", "mae"):
        table[f"vs_pub_{c}"] = (table[c] - table[f"pub_{c}"]).where(fair)
        table[f"vs_base_pub_{c}"] = (table[c] - base_pub[c].reindex(dh).to_numpy()).where(fair)
        base_rerun = table[c].where(fair).xs(baseline, level="model") if rerun else pd.Series(dtype=float)
        table[f"vs_base_rerun_{c}"] = (table[c] - base_rerun.reindex(dh).to_numpy()).where(
            fair & (index.get_level_values("model") != baseline))
    table.attrs["baseline"] = baseline
    table.attrs["baseline_rerun"] = rerun
    table.attrs["sources"] = sorted(reference["source"].unique())
    table.attrs["notes"] = list(notes)
    table.attrs.update(sweep_notes(runs))
    return table


# ---------------------------------------------------------------------------------------------- writers
def _bests(table: pd.DataFrame) -> pd.Series:
    """Per (dataset, horizon) the lowest MSE (3 decimals) among our untruncated means and the published values;
    NaN without at least two values (bold needs a rival)."""
    ours = table["mse"].where(table["ours"] & ~table["truncated"])
    vals = pd.concat([ours, table["pub_mse"]]).astype(float).round(3)
    keys = [vals.index.get_level_values("dataset"), vals.index.get_level_values("horizon")]
    best = vals.groupby(keys).min().where(vals.groupby(keys).count() >= 2)
    return best.reindex(pd.MultiIndex.from_arrays([table.index.get_level_values("dataset"),
                                                   table.index.get_level_values("horizon")])).set_axis(table.index)


def display_frame(table: pd.DataFrame, fmt: Fmt = "md") -> pd.DataFrame:
    """String cells for writing: 3 decimals (mean ± std over seeds), the best MSE per (dataset, horizon) in
    bold (never a truncated run's), ``failed``/``missing`` where a model of ours has no score, a dagger on
    published values not confirmed by a second source; differences as ``MSE / MAE``."""
    st = Style(fmt)
    best = _bests(table)
    baseline, rerun = table.attrs.get("baseline", "baseline"), table.attrs.get("baseline_rerun")
    out: dict[str, list[str]] = {c: [] for c in ("MSE", "MAE", "n", "published MSE", "published MAE",
                                                 "ours − published", f"{st.delta} {baseline} (published)")}
    if rerun:
        out[f"{st.delta} {baseline} (rerun)"] = []
    for (_, _, _), r, b in zip(table.index, table.itertuples(index=False), best, strict=True):
        no_score = "failed" if r.failed else "missing" if r.missing else st.dash
        for c in ("mse", "mae"):
            v, sd = getattr(r, c), getattr(r, f"{c}_std")
            out[c.upper()].append(st.score(v, b if c == "mse" else float("nan"), std=sd) if r.n else no_score)
        out["n"].append((f"{r.n}" + (f" (+{r.failed} failed)" if r.failed else "")
                         + (f" (+{r.missing} missing)" if r.missing else "")) if r.ours else "")
        mark = "" if pd.isna(r.pub_confirmed) or r.pub_confirmed else st.dagger
        out["published MSE"].append(st.score(r.pub_mse, b, mark))
        out["published MAE"].append(st.score(r.pub_mae, float("nan"), mark))
        pairs = {"ours − published": "vs_pub", f"{st.delta} {baseline} (published)": "vs_base_pub"}
        if rerun:
            pairs[f"{st.delta} {baseline} (rerun)"] = "vs_base_rerun"
        for col, key in pairs.items():
            mse, mae = getattr(r, f"{key}_mse"), getattr(r, f"{key}_mae")
            out[col].append(st.dash if pd.isna(mse) else f"{st.signed(mse)} / {st.signed(mae)}")
    # published values and differences that no row has (a table with no published value at its lengths) are left
    # out; the legend says which published table the rows were matched against
    frame = pd.DataFrame({c: v for c, v in out.items() if c in ("MSE", "MAE", "n") or set(v) != {st.dash}})
    frame.index = pd.MultiIndex.from_arrays(
        [[st.name(str(d)) for d in table.index.get_level_values("dataset")],
         list(table.index.get_level_values("horizon")),
         [st.name(str(m)) for m in table.index.get_level_values("model")]], names=["dataset", "H", "model"])
    return frame


def cost_frame(table: pd.DataFrame, fmt: Fmt = "md") -> pd.DataFrame:
    """String cells of what our runs cost, one row per (dataset, horizon, model) of ours: parameters (M),
    epochs trained, seconds per epoch (validation included), minutes per job, peak memory (MB)."""
    st = Style(fmt)
    rows = table[table["ours"]]

    def num(v: float, f: str) -> str:
        return st.dash if pd.isna(v) else format(v, f)

    frame = pd.DataFrame({
        "params (M)": [num(v / 1e6, ".3f") for v in rows["n_params"]],
        "epochs": [num(v, ".1f") for v in rows["epochs"]],
        "s / epoch": [num(v, ".1f") for v in rows["epoch_s"]],
        "min / job": [num(v / 60, ".1f") for v in rows["wall_time_s"]],
        "peak MB": [num(v, ".0f") for v in rows["peak_memory_mb"]]})
    frame.index = pd.MultiIndex.from_arrays(
        [[st.name(str(v)) for v in rows.index.get_level_values(k)] for k in ("dataset", "horizon", "model")],
        names=["dataset", "H", "model"])
    return frame


COST_NOTE = ("Means over ok runs. params: trainable parameters; epochs: epochs trained (early stopping on val); "
             "s / epoch: fit time per epoch, validation included (results written before epoch times were "
             "recorded: –); min / job: the job's wall time, test and start-up included; peak MB: the job's peak "
             "resident memory on a CPU, peak allocated on a GPU.")


def _notes(table: pd.DataFrame, fmt: Fmt) -> list[str]:
    baseline = table.attrs.get("baseline", "the baseline")
    sources = "; ".join(table.attrs.get("sources", []))
    matched = table["ours"] & table["pub_mse"].notna()
    diffs = [f"Δ {baseline} (published) takes the published value" if table["vs_base_pub_mse"].notna().any() else "",
             f"Δ {baseline} (rerun), our rerun of it" if table["vs_base_rerun_mse"].notna().any() else ""]
    notes = ["Ours: mean ± std over seeds (n runs; no ± for one run). "
             + ("A rerun of a published model shares its row with the published value (model="
                f"{baseline.lower()} is {baseline}). " if matched.any() else "")
             + ("Differences are MSE / MAE, ours minus the other; negative = better; "
                + "; ".join(d for d in diffs if d) + ". " if any(diffs) else "")
             + "Best MSE per data set and horizon in bold.",
             f"Published numbers: {sources}.", *truncation_notes(table.attrs)]
    if table["pub_confirmed"].isin([False]).to_numpy().any():
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
    """Markdown: the table, its notes, the cost of our runs, and the failed/missing jobs with their errors."""
    lines = ["## Forecasting: test MSE / MAE (lower is better)", "",
             display_frame(table, "md").reset_index().to_markdown(index=False, disable_numparse=True), ""]
    lines += [f"- {n}" for n in _notes(table, "md")]
    lines += ["", "## Cost of our runs", "",
              cost_frame(table, "md").reset_index().to_markdown(index=False, disable_numparse=True), "",
              f"- {COST_NOTE}"]
    lines += failed_section(failed_runs(runs))
    return "\n".join(lines) + "\n"


def to_latex(table: pd.DataFrame, label: str = "tab:forecasting") -> str:
    """LaTeX: the table (booktabs rules, 3 decimals) with the notes under it, and the cost table."""
    main = latex_table(display_frame(table, "tex"), "Forecasting: test MSE and MAE (lower is better).", label,
                       _notes(table, "tex"), fit_width=True)
    cost = latex_table(cost_frame(table, "tex"), "Cost of our runs.", f"{label}-cost",
                       [Style("tex").note(COST_NOTE)])
    return "% needs \\usepackage{booktabs,graphicx}\n" + main + "\n" + cost


def mse_figure(table: pd.DataFrame) -> Any:
    """Grouped bars of test MSE per horizon, one panel per data set: ours (outlined, ± one std over seeds) and
    the published values (plain); a failed/missing run of ours shows as a red x."""
    from matplotlib import rcParams

    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    models = list(dict.fromkeys(table.index.get_level_values("model")))
    series = [(f"{m} (ours)", m, "mse") for m in models if table.xs(m, level="model")["ours"].any()]
    series += [(f"{m} (published)", m, "pub_mse") for m in models
               if table.xs(m, level="model")["pub_mse"].notna().any()]
    datasets = list(dict.fromkeys(table.index.get_level_values("dataset")))
    fig, axes = panel_grid(len(datasets))
    handles: dict[str, Any] = {}
    for ax, d in zip(axes[: len(datasets)], datasets, strict=True):
        sub = table.loc[d]
        horizons = list(dict.fromkeys(sub.index.get_level_values("horizon")))
        shown = [(i, lab, m, col) for i, (lab, m, col) in enumerate(series)
                 if m in sub.index.get_level_values("model")
                 and (sub.xs(m, level="model")[col].notna().any() or col == "mse" and sub.xs(m, level="model")[
                     ["failed", "missing"]].to_numpy().any())]
        width = 0.8 / max(1, len(shown))
        for k, (i, lab, m, col) in enumerate(shown):
            rows = sub.xs(m, level="model").reindex(horizons)
            xs = [j + (k - (len(shown) - 1) / 2) * width for j in range(len(horizons))]
            ours = col == "mse"
            handles[lab] = ax.bar(xs, rows[col].to_numpy(dtype=float), width, color=colors[i % len(colors)],
                                  linewidth=0.6, edgecolor="black" if ours else "none",
                                  yerr=rows["mse_std"].to_numpy(dtype=float) if ours else None, capsize=2,
                                  error_kw={"linewidth": 0.8})
            bad = (rows["failed"].fillna(0) + rows["missing"].fillna(0)).to_numpy() if ours else [0] * len(xs)
            crosses = [x for x, b in zip(xs, bad, strict=True) if b]
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
    order = [lab for lab, _, _ in series if lab in handles]
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
