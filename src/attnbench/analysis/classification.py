"""Classification sweep (MedMNIST3D) -> test ACC/AUC beside published baselines, plus a cost table.

    runs = load_runs("outputs/hot_medmnist3d/multiruns/<time>")  # one row per job
    table = classification_table(runs, load_reference("medmnist3d"))
    print(to_markdown(table, runs))

The layout of ``table.kind: classification`` (``analysis.spec``). The conventions are those of ``tables`` (the
forecasting table): a failed job stays as a ``failed`` cell and is listed with its error, a job folder with
``.hydra/`` but no ``results.json`` (killed, or still running) shows as ``missing``, jobs that differ only by
seed share a cell (mean ± std, n), truncated runs carry a footnote marker
(``analysis.runs``). Both metrics are higher-is-better.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.analysis import reference as published
from attnbench.analysis.render import Fmt, Rendered, Style, bests, failed_section, latex_table, legend_below
from attnbench.analysis.runs import MARK, cell_stats, job_parts, model_label, sweep_notes, truncation_notes
from attnbench.analysis.runs import load_runs as load_jobs
from attnbench.analysis.spec import TableSpec

RUN_COLUMNS = ["dataset", "size", "model", "status", "error", "acc", "auc", "val_acc_best", "epochs",
               "wall_time_s", "peak_memory_mb", "n_params", "attention_gflops", "run_dir"]  # then FACT_COLUMNS
METRICS = ("acc", "auc")
COST_METRICS = ("n_params", "epochs", "minutes", "peak_memory_mb", "attention_gflops")
MEDMNIST_CITATION = "MedMNIST v2 (Yang et al., Scientific Data 2023, arXiv:2110.14795)"
DEFAULT_ATTENTION = {"hot3d": "hot", "vit3d": "full"}  # conf/model/<model>.yaml: not named in the label
_KEYS = ["dataset", "size", "model"]
CLASSIFICATION_KEYS = ("data.name", "data.size")  # overrides the table's rows already name


# ---------------------------------------------------------------------------------------------- loading
def classifier_label(choices: dict[str, Any]) -> str:
    """``tables.model_label``, naming the attention only when it is not the model's default
    (``hot3d``, ``vit3d``, ``hot3d[hot_linear]``)."""
    model = str(choices.get("model"))
    if choices.get("model/attention") == DEFAULT_ATTENTION.get(model, model.removesuffix("3d")):
        choices = {k: v for k, v in choices.items() if k != "model/attention"}
    return model_label(choices)


def _job_row(job_dir: Path, result: dict[str, Any], status: str | None = None) -> list[dict[str, Any]]:
    """The row of one job from its ``results.json`` content (or what ``.hydra/`` tells of a missing one)."""
    choices, data, metrics, base = job_parts(job_dir, result, ("name", "size"), status,
                                             " (not a classification job?)")
    return [{**base, "dataset": str(data["name"]), "size": int(data["size"]), "model": classifier_label(choices),
             "acc": metrics.get("test/acc"), "auc": metrics.get("test/auc"),
             "val_acc_best": metrics.get("val/acc_best")}]


def load_runs(sweep_dir: str | Path) -> pd.DataFrame:
    """Every job under ``sweep_dir`` (``runs.read_jobs``: failed and missing jobs kept), one row each
    (columns ``RUN_COLUMNS`` + ``FACT_COLUMNS``)."""
    return load_jobs(sweep_dir, _job_row, RUN_COLUMNS, CLASSIFICATION_KEYS,
                     ("acc", "auc", "val_acc_best", "epochs", "wall_time_s", "peak_memory_mb", "n_params",
                      "attention_gflops"),
                     [*_KEYS, "run_dir"], ("size",))


load_reference = functools.partial(published.for_kind, kind="classification")  # dataset, size, model, ...


# ---------------------------------------------------------------------------------------------- tables
def _row_index(runs: pd.DataFrame, reference: pd.DataFrame) -> pd.MultiIndex:
    """(dataset, size) pairs we ran: reference order of data sets first, then the others by name."""
    known = list(dict.fromkeys(reference["dataset"]))
    order = known + sorted(set(runs["dataset"]) - set(known))
    pairs = runs[["dataset", "size"]].drop_duplicates()
    pairs = pairs.assign(rank=pairs["dataset"].map(order.index)).sort_values(["rank", "size"])
    return pd.MultiIndex.from_frame(pairs[["dataset", "size"]])


def _per_model(frame: pd.DataFrame, model: str, index: pd.MultiIndex) -> pd.DataFrame:
    """Rows of ``frame`` (index dataset, size, model) for one model, reindexed to ``index``."""
    return frame[frame.index.get_level_values("model") == model].droplevel("model").reindex(index)


def classification_table(runs: pd.DataFrame, reference: pd.DataFrame, baselines: Sequence[str],
                         notes: Sequence[str] = (), baseline_label: str = "baseline") -> pd.DataFrame:
    """Wide table, index (dataset, size) of the pairs we ran, columns (group, model, metric).

    ``("ours", m, acc|auc|acc_std|auc_std|n|failed|missing)``: our runs averaged over seeds (std: sample
    standard deviation, NaN for one seed); n counts the ok ones.
    ``("diff", "best", acc|auc)``: the best of our untruncated models minus the best published of
    ``baselines``, per metric (positive = ours better). ``("published", r, acc|auc|confirmed)``: every
    reference model, empty where the reference has no number for that data set and size. ``attrs``:
    baselines and ``baseline_label`` (their name in the Δ header), sources, the sizes with published numbers,
    the truncation legend and ``notes`` (the experiment's lines under the table).
    """
    if runs.empty:
        raise ValueError("no runs to tabulate")
    ref_models = list(dict.fromkeys(reference["model"]))
    unknown = [b for b in baselines if b not in ref_models]
    if unknown or not baselines:
        raise ValueError(f"baseline(s) {unknown or list(baselines)} not in the reference; choose from {ref_models}")
    index = _row_index(runs, reference)
    stats = cell_stats(runs, _KEYS, list(METRICS))
    ours: dict[tuple[str, str, str], pd.Series] = {}
    for m in sorted(runs["model"].unique()):
        s = _per_model(stats, m, index)
        for c in (*METRICS, "acc_std", "auc_std", "n", "failed", "missing"):
            ours[("ours", m, c)] = s[c] if c.startswith(METRICS) else s[c].fillna(0).astype(int)
    ref = reference.set_index(_KEYS)
    published = {("published", r, c): _per_model(ref, r, index)[c]
                 for r in ref_models for c in (*METRICS, "confirmed")}
    diff = {}
    for c in METRICS:
        full = [v for (_, m, k), v in ours.items() if k == c and MARK not in m]  # truncated runs: no Δ
        best_ours = pd.concat(full, axis=1).max(axis=1) if full else pd.Series(float("nan"), index=index)
        best_base = pd.concat([published[("published", b, c)] for b in baselines], axis=1).max(axis=1)
        diff[("diff", "best", c)] = best_ours - best_base
    cols = {**ours, **diff, **published}
    table = pd.DataFrame(cols, index=index)
    table.columns = pd.MultiIndex.from_tuples(list(cols), names=["group", "model", "metric"])
    table.attrs.update(baselines=list(baselines), baseline_label=baseline_label,
                       sources=sorted(reference["source"].unique()),
                       published_sizes=sorted(int(s) for s in reference["size"].unique()), notes=list(notes),
                       **sweep_notes(runs))
    return table


def cost_table(runs: pd.DataFrame, index: pd.MultiIndex | None = None) -> pd.DataFrame:
    """What our runs cost: index (dataset, size), columns ("cost", model, n_params|epochs|minutes|peak_memory_mb|
    attention_gflops), means over the ok runs (wall time in minutes; attention GFLOPs per example forward)."""
    if index is None:
        index = pd.MultiIndex.from_frame(runs[["dataset", "size"]].drop_duplicates().sort_values(["dataset", "size"]))
    ok = runs[runs["status"] == "ok"].assign(minutes=runs["wall_time_s"] / 60)
    means = ok.groupby(_KEYS)[list(COST_METRICS)].mean()
    cols = {("cost", m, c): _per_model(means, m, index)[c]
            for m in sorted(runs["model"].unique()) for c in COST_METRICS}
    cost = pd.DataFrame(cols, index=index)
    cost.columns = pd.MultiIndex.from_tuples(list(cols), names=["group", "model", "metric"])
    return cost


def failed_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per failed or missing job: model, dataset, size, status, error, run_dir."""
    bad = runs[runs["status"] != "ok"].sort_values("run_dir")
    return bad[["model", "dataset", "size", "status", "error", "run_dir"]].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- display
def display_frame(table: pd.DataFrame, fmt: Fmt = "md") -> pd.DataFrame:
    """String cells: 3 decimals, the best ACC and AUC per row in bold, ``failed``/``missing`` where a model of
    ours has no score, a dagger on published values not confirmed by the source check."""
    st = Style(fmt)
    best = {c: bests(table, c, higher=True) for c in METRICS}
    out: dict[tuple[str, str], list[str]] = {}
    ours, pub = table["ours"], table["published"]
    for m in ours.columns.get_level_values("model").unique():
        s = ours[m]
        for c in METRICS:
            out[(st.name(m), c.upper())] = [
                st.score(v, b, std=sd) if n else ("failed" if f else "missing" if k else st.dash)
                for v, sd, b, n, f, k in zip(s[c], s[f"{c}_std"], best[c], s["n"], s["failed"], s["missing"],
                                             strict=True)]
        out[(st.name(m), "n")] = [
            str(n) + ("" if not (f or k) else " (" + ", ".join(
                f"+{x} {word}" for x, word in ((f, "failed"), (k, "missing")) if x) + ")")
            for n, f, k in zip(s["n"], s["failed"], s["missing"], strict=True)]
    diff_label = f"{st.delta} best vs {table.attrs.get('baseline_label', 'baseline')}"
    for c in METRICS:
        out[(diff_label, c.upper())] = [st.signed(v) for v in table[("diff", "best", c)]]
    for r in pub.columns.get_level_values("model").unique():
        s = pub[r]
        for c in METRICS:
            out[(st.name(r), c.upper())] = [
                st.score(v, b, "" if pd.isna(ok) or ok else st.dagger)
                for v, b, ok in zip(s[c], best[c], s["confirmed"], strict=True)]
    return _framed(out, table.index, st)


def _framed(out: dict[tuple[str, str], list[str]], index: pd.MultiIndex, st: Style) -> pd.DataFrame:
    frame = pd.DataFrame(out)
    frame.columns = pd.MultiIndex.from_tuples(list(out))
    frame.index = pd.MultiIndex.from_arrays(
        [[st.name(str(d)) for d in index.get_level_values("dataset")], list(index.get_level_values("size"))],
        names=["dataset", "size"])
    return frame


def display_cost(cost: pd.DataFrame, fmt: Fmt = "md") -> pd.DataFrame:
    """String cells of ``cost_table``: parameters in millions, epochs, minutes (1 decimal), peak memory MB."""
    st = Style(fmt)
    spell = {"n_params": ("params", lambda v: f"{v / 1e6:.2f}M"), "epochs": ("epochs", lambda v: f"{v:.0f}"),
             "minutes": ("min", lambda v: f"{v:.1f}"), "peak_memory_mb": ("peak MB", lambda v: f"{v:.0f}"),
             "attention_gflops": ("attn GFLOPs", lambda v: f"{v:.3g}")}  # per example forward (attention.flops)
    out: dict[tuple[str, str], list[str]] = {}
    for (_, m, c), col in cost.items():
        header, fmt_value = spell[c]
        out[(st.name(m), header)] = [st.dash if pd.isna(v) else fmt_value(v) for v in col]
    return _framed(out, cost.index, st)


def _size_note(table: pd.DataFrame) -> str | None:
    """Say where our sizes have no published numbers (MedMNIST v2 publishes 28^3 only)."""
    published = table.attrs.get("published_sizes", [])
    ours = sorted({int(s) for s in table.index.get_level_values("size")} - set(published))
    if not ours or not published:
        return None
    theirs = ", ".join(f"{s}³" for s in published)
    return (f"Published numbers are for {theirs} only; our runs at {', '.join(f'{s}³' for s in ours)} are not "
            "directly comparable (no published cells in those rows).")


def _notes(table: pd.DataFrame, fmt: Fmt) -> list[str]:
    st = Style(fmt)
    sources = "; ".join(table.attrs.get("sources", []))
    cite = f"{MEDMNIST_CITATION}, " if sources and "medmnist" in sources.lower() else ""
    baselines = ", ".join(table.attrs.get("baselines", []))
    notes = [f"Δ = best of ours (untruncated runs) − best published of {baselines}, per metric; positive = ours "
             "better. Best ACC and AUC per row in bold. Ours: mean ± std over seeds (n runs; no ± for one run).",
             f"Published numbers (test split): {cite}source: {sources}.", *truncation_notes(table.attrs)]
    if (table["published"].xs("confirmed", level="metric", axis=1) == False).to_numpy().any():  # noqa: E712
        notes.append("† not confirmed against the published source.")
    size_note = _size_note(table)
    if size_note:
        notes.append(size_note)
    notes += table.attrs.get("notes", [])
    return [st.note(n) for n in notes]


COST_NOTE = ("Means over ok runs. params: trainable parameters; epochs: epochs trained (early stopping on val "
             "ACC); min: wall time of the whole job (fit + test); peak MB: peak CUDA memory allocated (peak RSS "
             "on CPU); attn GFLOPs: the model's attention FLOPs per example forward (attnbench.attention.flops).")


def to_markdown(table: pd.DataFrame, runs: pd.DataFrame) -> str:
    """Markdown: the ACC/AUC table and its notes, the cost table, and the failed/missing jobs with their errors."""
    def flat(frame: pd.DataFrame) -> str:
        frame.columns = [f"{a} {b}" for a, b in frame.columns]
        return frame.reset_index().to_markdown(index=False, disable_numparse=True)

    lines = ["## Classification: test ACC / AUC (higher is better)", "", flat(display_frame(table, "md")), ""]
    lines += [f"- {n}" for n in _notes(table, "md")]
    lines += ["", "## Cost of our runs", "", flat(display_cost(cost_table(runs, table.index), "md")), "",
              f"- {COST_NOTE}"]
    lines += failed_section(failed_runs(runs))
    return "\n".join(lines) + "\n"


def to_latex(table: pd.DataFrame, runs: pd.DataFrame, label: str = "tab:medmnist3d") -> str:
    """LaTeX: the ACC/AUC table and the cost table (booktabs, graphicx for the scaling)."""
    main = latex_table(display_frame(table, "tex"), "3D classification: test ACC and AUC (higher is better).",
                       label, _notes(table, "tex"), fit_width=True)
    cost = latex_table(display_cost(cost_table(runs, table.index), "tex"), "Cost of our runs.",
                       f"{label}-cost", [Style("tex").note(COST_NOTE)], fit_width=True)
    return "% needs \\usepackage{booktabs,graphicx}\n" + main + "\n" + cost


def acc_figure(table: pd.DataFrame) -> Any:
    """Grouped bars of test ACC per (data set, size): our models and the best published model of the row.

    A group shows only the models with a number there; a failed/missing model of ours shows as a red x at zero.
    """
    from matplotlib import rcParams
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas on savefig

    ours = table["ours"]
    best_pub = table["published"].xs("acc", level="metric", axis=1).astype(float).max(axis=1)
    series = [(m, ours[(m, "acc")].to_numpy(dtype=float), (ours[(m, "failed")] + ours[(m, "missing")]).to_numpy())
              for m in ours.columns.get_level_values("model").unique()]
    series.append(("best published", best_pub.to_numpy(dtype=float), [0] * len(best_pub)))
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    fig = Figure(figsize=(max(7.0, 1.3 * len(table) + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    handles: dict[str, Any] = {}
    groups = [[(k, name, acc[j]) for k, (name, acc, bad) in enumerate(series) if not pd.isna(acc[j]) or bad[j]]
              for j in range(len(table))]
    width = 0.8 / max(1, *(len(g) for g in groups))
    for j, shown in enumerate(groups):
        for i, (k, name, acc) in enumerate(shown):
            x = j + (i - (len(shown) - 1) / 2) * width
            if pd.isna(acc):
                (handles["failed / missing"],) = ax.plot([x], [0], "x", color="red", markersize=9, clip_on=False)
                continue
            style = ({"color": "0.6", "hatch": "//"} if k == len(series) - 1
                     else {"color": colors[k % len(colors)]})
            handles[name] = ax.bar([x], [acc], width, edgecolor="black", linewidth=0.5, **style)
    ax.set_xticks(range(len(table)), [f"{str(d).removesuffix('mnist3d')}\n{s}³" for d, s in table.index])
    ax.set_xlim(-0.5, len(table) - 0.5)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test ACC")
    order = [name for name, _, _ in series if name in handles] + [n for n in ("failed / missing",) if n in handles]
    legend_below(fig, [handles[n] for n in order], order)
    return fig


def rendered(sweep_dir: str | Path, spec: TableSpec) -> Rendered:
    """The classification table of a sweep: table.md/.tex/.png, table.csv (the wide table with the cost
    columns, headers ``group/model/metric``) and runs.csv (one row per job)."""
    runs = load_runs(sweep_dir)
    table = classification_table(runs, load_reference(spec.reference), spec.baseline, spec.notes,
                                 spec.baseline_label)
    wide = pd.concat([table, cost_table(runs, table.index)], axis=1)
    wide.columns = ["/".join(c) for c in wide.columns]
    return Rendered(markdown=to_markdown(table, runs), latex=to_latex(table, runs),
                    csv={"table.csv": (wide, True), "runs.csv": (runs, False)}, figure=acc_figure(table))
