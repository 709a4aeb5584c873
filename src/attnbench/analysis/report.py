"""One entry to a sweep's table, whatever its kind: ``scripts/make_table.py`` and the end-of-sweep summary
(``attnbench.sweep``) both call ``write_table``. The table is the one the sweep's experiment declares
(``analysis.spec``); its ``kind`` picks the layout, nothing is guessed from targets or task names.

    md, paths = write_table("outputs/hot_forecasting/multiruns/<time>")   # table read from the results.json
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from attnbench.analysis import cab, classification, curves, glue, lra, perplexity, tables
from attnbench.analysis.render import Rendered, write
from attnbench.analysis.spec import TableSpec, sweep_spec

LAYOUTS: dict[str, Callable[[str | Path, TableSpec], Rendered]] = {
    "forecasting": tables.rendered, "classification": classification.rendered, "glue": glue.rendered,
    "tasks": lra.rendered}
LAYOUTS["perplexity"] = perplexity.rendered
LAYOUTS["cab"] = cab.rendered


def render_table(sweep_dir: str | Path, experiment: str | None = None, reference: str | None = None,
                 baseline: str | None = None) -> Rendered:
    """The sweep's table (Markdown, LaTeX, CSV frames, figure) without writing it; arguments as ``write_table``."""
    spec = sweep_spec(sweep_dir, experiment)
    if reference:
        spec = dataclasses.replace(spec, reference=reference)
    if baseline:
        spec = dataclasses.replace(spec, baseline=[b.strip() for b in baseline.split(",") if b.strip()],
                                   baseline_label="baseline")
    rendered = LAYOUTS[spec.kind](sweep_dir, spec)
    if spec.curves is not None:  # learning curves, whatever the kind (analysis.curves)
        rendered = curves.add_curves(rendered, sweep_dir, spec.curves)
    return rendered


def write_table(sweep_dir: str | Path, out_dir: str | Path | None = None, experiment: str | None = None,
                reference: str | None = None, baseline: str | None = None) -> tuple[str, list[Path]]:
    """Write the sweep's table files into ``out_dir`` (default ``sweep_dir``); return (Markdown, paths).

    ``experiment`` names the table when the results do not (``<paper>/<table>``); ``reference`` (a name under
    ``analysis/reference/`` or a .csv path) and ``baseline`` (comma-separated published models) replace the
    declared ones. Raises FileNotFoundError / ValueError on a sweep without results, a table that is not
    declared, or a bad reference.
    """
    rendered = render_table(sweep_dir, experiment, reference, baseline)
    return write(rendered, out_dir if out_dir is not None else sweep_dir)
