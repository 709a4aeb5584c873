"""What a paper table is, declared as data: the ``table:`` block of ``conf/experiment/<paper>/<table>.yaml``.

    table:
      kind: forecasting               # which layout renders it: forecasting | classification | glue | tasks | cab
      rows: [dataset, horizon]        # the row keys, in the order the reference file's ``row`` joins them by "/"
      columns: model                  # what the columns compare (our runs and the published models)
      metrics: [mse, mae]             # scored per cell; the first one picks the best cell of a row
      direction: lower                # lower | higher is better
      reference: forecasting_lookback96   # analysis/reference/<name>.csv (long form, see analysis.reference)
      baseline: [iTransformer]        # the published column(s) the differences are taken to
      baseline_label: ResNet (3D)     # what headers call the baselines (optional; default "baseline")
      notes: ["..."]                  # lines printed under the table (optional)
      curves:                         # learning curves from each job's csv/metrics.csv (optional; analysis.curves)
        metrics: [val/acc, train/loss_step]   # Lightning CSV columns, x = its `step`; one curves_<metric>.png each
        by: [callbacks.tree_bootstrap.order, model/attention]  # one line per value: a Hydra choice or config path
        panels: data.task             # one panel per value (optional; default one panel)
        smooth: {train/loss_step: 10} # rolling mean over this many logged points, per metric (optional)

A sweep's table comes from its jobs' ``results.json``: ``config.table`` (train.py stores the resolved config),
or, for results written before experiments declared tables, the ``table:`` block of the experiment file that
``choices.experiment`` names. ``table_spec`` checks the block and names the key and what is allowed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench.analysis.runs import read_jobs

# per kind: the row keys, metrics and direction its layout renders
KINDS: dict[str, dict[str, Any]] = {
    "forecasting": {"rows": ["dataset", "horizon"], "metrics": ["mse", "mae"], "direction": "lower"},
    "classification": {"rows": ["dataset", "size"], "metrics": ["acc", "auc"], "direction": "higher"},
    "glue": {"rows": ["task"], "metrics": ["score"], "direction": "higher"},
    "tasks": {"rows": ["task"], "metrics": ["acc"], "direction": "higher"},  # LRA: attentions x tasks + Avg
    "perplexity": {"rows": ["task"], "metrics": ["ppl"], "direction": "lower"},  # CAB LM / MLM (analysis.perplexity)
    # CAB: its per-pattern leaderboards (compositional index per pattern/task) beside our CAB runs (analysis.cab)
    "cab": {"rows": ["pattern", "task"], "metrics": ["ci"], "direction": "higher"},
}
FIELDS = ("kind", "rows", "columns", "metrics", "direction", "reference", "baseline", "baseline_label", "notes",
          "curves")
REQUIRED = ("kind", "rows", "columns", "metrics", "direction", "reference")


CURVE_FIELDS = ("metrics", "by", "panels", "smooth")
CURVE_REQUIRED = ("metrics", "by")


@dataclass(frozen=True)
class CurveSpec:
    """Learning curves of a sweep (``table.curves``): ``metrics`` (Lightning CSV columns) against ``step``, one
    line per value of the ``by`` keys (mean over the other jobs, i.e. seeds), one panel per value of ``panels``;
    ``smooth``: metric -> rolling-mean window in logged points."""

    metrics: list[str]
    by: list[str]
    panels: str | None = None
    smooth: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TableSpec:
    """One paper table (module docstring); ``experiment`` names the file that declared it."""

    kind: str
    rows: list[str]
    columns: str
    metrics: list[str]
    direction: str
    reference: str
    baseline: list[str] = field(default_factory=list)
    baseline_label: str = "baseline"
    notes: list[str] = field(default_factory=list)
    experiment: str = ""
    curves: CurveSpec | None = None


def _strings(where: str, key: str, value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) and v for v in items):
        raise ValueError(f"{where}: table.{key}={value!r}; expected a string or a list of strings")
    return list(items)


def _check_keys(block: Any, where: str, name: str, allowed: Sequence[str], required: Sequence[str]) -> None:
    """``block`` is a mapping of known keys holding every required one; errors name the key and what is allowed."""
    if not isinstance(block, dict):
        raise ValueError(f"{where}: {name}={block!r}; expected a mapping with keys {', '.join(allowed)}")
    unknown = [k for k in block if k not in allowed]
    if unknown:
        raise ValueError(f"{where}: unknown key {name}.{unknown[0]}; allowed: {', '.join(allowed)}")
    lacking = [k for k in required if block.get(k) in (None, "", [])]
    if lacking:
        raise ValueError(f"{where}: {name}.{lacking[0]} is required ({', '.join(required)} are)")


def parse_curves(block: Any, where: str = "table") -> CurveSpec:
    """A checked ``CurveSpec`` from a ``table.curves`` mapping; errors name the key and what is allowed."""
    _check_keys(block, where, "table.curves", CURVE_FIELDS, CURVE_REQUIRED)
    metrics = _strings(where, "curves.metrics", block["metrics"])
    panels = block.get("panels")
    if panels is not None and not (isinstance(panels, str) and panels):
        raise ValueError(f"{where}: table.curves.panels={panels!r}; expected a choice or config key")
    smooth = block.get("smooth") or {}
    if not isinstance(smooth, dict):
        raise ValueError(f"{where}: table.curves.smooth={smooth!r}; expected a mapping metric -> window")
    for metric, window in smooth.items():
        if metric not in metrics:
            raise ValueError(f"{where}: table.curves.smooth.{metric}: not in table.curves.metrics; allowed: "
                             f"{', '.join(metrics)}")
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ValueError(f"{where}: table.curves.smooth.{metric}={window!r}; expected a window >= 1 "
                             "(logged points)")
    return CurveSpec(metrics=metrics, by=_strings(where, "curves.by", block["by"]), panels=panels,
                     smooth=dict(smooth))


def parse_spec(block: Any, where: str = "table") -> TableSpec:
    """A checked ``TableSpec`` from a ``table:`` mapping; errors name ``where``, the key and what is allowed."""
    _check_keys(block, where, "table", FIELDS, REQUIRED)
    kind = block["kind"]
    if kind not in KINDS:
        raise ValueError(f"{where}: table.kind={kind!r}; allowed: {', '.join(KINDS)}")
    spec = TableSpec(kind=kind, rows=_strings(where, "rows", block["rows"]), columns=str(block["columns"]),
                     metrics=_strings(where, "metrics", block["metrics"]), direction=str(block["direction"]),
                     reference=str(block["reference"]),
                     baseline=_strings(where, "baseline", block.get("baseline") or []),
                     baseline_label=str(block.get("baseline_label") or "baseline"),
                     notes=_strings(where, "notes", block.get("notes") or []), experiment=where,
                     curves=None if block.get("curves") is None else parse_curves(block["curves"], where))
    layout = KINDS[kind]
    for key in ("rows", "metrics", "direction"):
        if getattr(spec, key) != layout[key]:
            raise ValueError(f"{where}: table.{key}={getattr(spec, key)!r}; a {kind} table has "
                             f"{key}={layout[key]!r}")
    if spec.columns != "model":
        raise ValueError(f"{where}: table.columns={spec.columns!r}; allowed: model")
    return spec


def experiment_spec(experiment: str, conf_dir: str | Path | None = None) -> TableSpec:
    """The ``table:`` block of ``conf/experiment/<experiment>.yaml`` (read as a file, not composed)."""
    from omegaconf import OmegaConf

    from attnbench.config import project_root

    conf = Path(conf_dir) if conf_dir is not None else Path(project_root()) / "conf"
    path = conf / "experiment" / f"{experiment}.yaml"
    if not path.is_file():
        known = sorted(str(p.relative_to(conf / "experiment").with_suffix("")) for p in
                       (conf / "experiment").rglob("*.yaml"))
        raise FileNotFoundError(f"experiment {experiment!r}: no {path}; known: {', '.join(known)}")
    declared = OmegaConf.to_container(OmegaConf.load(path))
    block = declared.get("table")  # type: ignore[union-attr]
    if block is None and "table" in declared:  # type: ignore[operator]
        raise ValueError(f"{path} says `table: null`: it is a step feeding another experiment (e.g. a checkpoint), "
                         "with no table of its own")
    if block is None:
        raise ValueError(f"{path} declares no table: add a `table:` block (see attnbench.analysis.spec)")
    return parse_spec(block, f"experiment={experiment}")


def is_step(experiment: str, conf_dir: str | Path | None = None) -> bool:
    """Whether ``conf/experiment/<experiment>.yaml`` says ``table: null``: a step that feeds another experiment
    (``treeformer/mlm``: a checkpoint for ``treeformer/glue``), exempt from the table and 3-seed rules. An
    experiment without a ``table`` key is not a step: it has forgotten its table."""
    from omegaconf import OmegaConf

    from attnbench.config import project_root

    conf = Path(conf_dir) if conf_dir is not None else Path(project_root()) / "conf"
    declared = OmegaConf.load(conf / "experiment" / f"{experiment}.yaml")
    return "table" in declared and declared.table is None


def sweep_spec(sweep_dir: str | Path, experiment: str | None = None) -> TableSpec:
    """The table a sweep declared: ``experiment`` when given, else its jobs' ``config.table`` (or, in results
    written before experiments declared tables, the experiment in ``choices.experiment``). Jobs that declare
    different tables are an error; so is a sweep that declares none."""
    if experiment:
        return experiment_spec(experiment)
    blocks: dict[str, tuple[Any, str]] = {}
    names: set[str] = set()
    for job, result, _ in read_jobs(sweep_dir):  # FileNotFoundError for an absent or empty sweep
        block = (result.get("config") or {}).get("table")
        name = (result.get("choices") or {}).get("experiment")
        if block is not None:
            blocks.setdefault(json.dumps(block, sort_keys=True), (block, str(name or job)))
        elif name:
            names.add(str(name))
    found = [where for _, where in blocks.values()] if blocks else sorted(names)
    if len(found) > 1 and len(set(found)) == 1:  # one experiment, its table block changed between the jobs' runs
        raise ValueError(f"{sweep_dir}: the jobs of {found[0]} declare {len(found)} different `table:` blocks (run "
                         f"from different versions of its yaml); pass --experiment {found[0]} to use today's")
    if len(found) > 1:
        raise ValueError(f"{sweep_dir}: jobs of different tables ({', '.join(found)}); make one table per sweep "
                         "folder, or pass --experiment <paper>/<table>")
    if not found:
        raise ValueError(f"{sweep_dir}: no job names its table (no config.table or choices.experiment in "
                         "results.json); pass --experiment <paper>/<table>")
    if blocks:
        block, where = next(iter(blocks.values()))
        return parse_spec(block, f"experiment={where}")
    return experiment_spec(found[0])
