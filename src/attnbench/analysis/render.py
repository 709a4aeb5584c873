"""Writing a table, whatever its kind: the marks and escapes of Markdown and LaTeX, the legend of a plot, and
``write`` that puts a ``Rendered`` table's files into a folder (the same files, the same return type, for
every kind).

    rendered = Rendered(markdown=md, latex=tex, csv={"table.csv": frame}, figure=fig)
    md, paths = write(rendered, out_dir)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from attnbench.analysis.runs import MARK, TEX_MARK

Fmt = Literal["md", "tex"]
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def tex_escape(s: str) -> str:
    """LaTeX-safe text; the truncation marker and ± become their LaTeX spelling."""
    return re.sub(r"[\\&%$#_{}~^]", lambda m: _TEX[m.group()], s).replace(MARK, TEX_MARK).replace("±", r"$\pm$")


def tex_note(s: str) -> str:
    """A note line in LaTeX: escaped, with Δ, −, †, ³ in math or LaTeX marks."""
    return (tex_escape(s).replace("Δ", r"$\Delta$").replace("−", "$-$").replace("†", r"\dag{}")
            .replace("³", "$^3$"))


class Style:
    """Markdown or LaTeX spelling of the marks the tables use, and their score cells."""

    def __init__(self, fmt: Fmt) -> None:
        self.md = fmt == "md"
        self.dash = "–" if self.md else "--"
        self.dagger = "†" if self.md else r"\textsuperscript{\dag}"
        self.delta = "Δ" if self.md else r"$\Delta$"

    def name(self, s: str) -> str:
        return s if self.md else tex_escape(s)

    def bold(self, s: str) -> str:
        return f"**{s}**" if self.md else rf"\textbf{{{s}}}"

    def note(self, s: str) -> str:
        return s if self.md else tex_note(s)

    def score(self, v: float, best: float, mark: str = "", std: float = float("nan")) -> str:
        """``0.390`` (bold where it equals the row's ``best`` at 3 decimals), then ``mark``, then ``± std``."""
        if pd.isna(v):
            return self.dash
        text = f"{v:.3f}"
        pm = "" if pd.isna(std) else (" ± " if self.md else r" $\pm$ ") + f"{std:.3f}"
        return (self.bold(text) if round(v, 3) == best else text) + mark + pm

    def signed(self, v: float) -> str:
        """A difference: ``+0.014`` (never ``-0.000``), a dash where there is none."""
        return self.dash if pd.isna(v) else f"{round(v, 3) + 0.0:+.3f}"


def bests(table: pd.DataFrame, metric: str, higher: bool) -> pd.Series:
    """Per row the best value (3 decimals) among our untruncated models and the published ones (columns
    ``ours``/``published`` x model x metric); NaN without at least two values (bold needs a rival)."""
    ours = table["ours"].xs(metric, level="metric", axis=1)
    ours = ours[[m for m in ours.columns if MARK not in m]]  # truncated runs compete for nothing
    vals = pd.concat([ours, table["published"].xs(metric, level="metric", axis=1)], axis=1).astype(float).round(3)
    best = vals.max(axis=1) if higher else vals.min(axis=1)
    return best.where(vals.notna().sum(axis=1) >= 2)


def md_cell(v: Any) -> str:
    """One Markdown table cell: empty for NaN, one line, ``|`` escaped."""
    return "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v).replace("\n", " ").replace(
        "|", r"\|")


def failed_section(bad: pd.DataFrame) -> list[str]:
    """Markdown lines listing failed/missing jobs (one table line each, errors on one line); [] when none."""
    if bad.empty:
        return []
    bad = bad.assign(error=[md_cell(e) for e in bad["error"]])
    return ["", f"## Failed or missing jobs ({len(bad)})", "", bad.to_markdown(index=False, disable_numparse=True)]


def panel_grid(n_panels: int) -> tuple[Any, Any]:
    """A constrained-layout Figure (no pyplot: no global state) with up to 3 panels a row for ``n_panels`` panels;
    returns (figure, flat array of axes)."""
    from matplotlib.figure import Figure

    ncols = max(1, min(3, n_panels))
    nrows = max(1, -(-n_panels // ncols))
    fig = Figure(figsize=(max(6.0, 4.5 * ncols), 3.6 * nrows), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False).ravel()


def legend_below(fig: Any, handles: list[Any], labels: list[str]) -> None:
    """A legend under the panels with as many columns as fit the figure's width, so that no label is cut
    (with ``savefig(bbox_inches="tight")`` as a second guard); the figure grows by the legend's rows."""
    entry_in = 0.55 + 0.075 * max(len(str(lab)) for lab in labels)  # marker + gap + text at 10 pt, inches
    ncols = max(1, min(len(labels), int(fig.get_figwidth() // entry_in)))
    rows = -(-len(labels) // ncols)
    fig.set_figheight(fig.get_figheight() + 0.3 * rows)
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False)


def latex_table(frame: pd.DataFrame, caption: str, label: str, notes: list[str], fit_width: bool = False) -> str:
    """One booktabs ``table`` of string cells (multicolumn headers, one left column per index level) with the
    notes under it; ``fit_width`` scales it to the text width (needs graphicx)."""
    tex = frame.to_latex(escape=False, multicolumn=True, multicolumn_format="c", multirow=False,
                         column_format="l" * frame.index.nlevels + "r" * frame.shape[1], position="t", label=label,
                         caption=caption)
    if fit_width:
        tex = tex.replace(r"\begin{tabular}", "\\resizebox{\\textwidth}{!}{%\n\\begin{tabular}")
        tex = tex.replace(r"\end{tabular}", "\\end{tabular}}")
    footer = "\n".join([r"\par\smallskip\footnotesize", *(n + r"\\" for n in notes)])
    return tex.replace(r"\end{table}", footer + "\n" + r"\end{table}")


@dataclass
class Rendered:
    """A table's outputs: ``table.md``; ``table.tex`` and ``table.png`` when the kind has them; CSV files by
    name (``index``: whether the file keeps the frame's index); further figures by file name (cost and learning
    curve plots)."""

    markdown: str
    latex: str | None = None
    csv: dict[str, tuple[pd.DataFrame, bool]] = field(default_factory=dict)
    figure: Any = None
    figures: dict[str, Any] = field(default_factory=dict)


def write(rendered: Rendered, out_dir: str | Path) -> tuple[str, list[Path]]:
    """Write ``rendered`` into ``out_dir``: table.md, [table.tex], the CSVs, [table.png], the further figures;
    return (Markdown, paths in that order)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "table.md"]
    paths[0].write_text(rendered.markdown)
    if rendered.latex is not None:
        paths.append(out / "table.tex")
        paths[-1].write_text(rendered.latex)
    for name, (frame, index) in rendered.csv.items():
        paths.append(out / name)
        frame.to_csv(paths[-1], index=index)
    if rendered.figure is not None:
        paths.append(out / "table.png")
        rendered.figure.savefig(paths[-1], dpi=120, bbox_inches="tight")
    for name, fig in rendered.figures.items():
        paths.append(out / name)
        fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
    return rendered.markdown, paths
