"""One entry to a sweep's table, whatever the task: ``scripts/make_table.py`` and the end-of-sweep summary
(``attnbench.sweep``) both call ``write_table``.

    md, paths = write_table("outputs/hot_forecasting/multiruns/<time>")   # task read from the results.json
"""

from __future__ import annotations

from pathlib import Path

TASKS = ("forecasting", "classification", "glue")
DEFAULT_REFERENCE = {"forecasting": "forecasting_lookback96", "classification": "medmnist3d",
                     "glue": None}  # glue: smyrf_imdb for an IMDB sweep, else smyrf_glue
DEFAULT_BASELINE = "iTransformer"  # forecasting: the published model the differences are taken to


def detect_task(sweep_dir: str | Path) -> str:
    """``glue`` (config.model._target_ is the GLUE module), ``classification`` (the classification module, or
    test/acc in the metrics) or ``forecasting``."""
    from attnbench.analysis import classification, glue

    if glue.is_glue_sweep(sweep_dir):
        return "glue"
    return "classification" if classification.is_classification_sweep(sweep_dir) else "forecasting"


def write_table(sweep_dir: str | Path, out_dir: str | Path | None = None, task: str = "auto",
                reference: str | None = None, baseline: str | None = None) -> tuple[str, list[Path]]:
    """Write the sweep's table files into ``out_dir`` (default ``sweep_dir``); return (Markdown, paths).

    ``baseline``: forecasting, one published model (default iTransformer); classification, comma-separated
    published models whose best ours is compared with. Raises FileNotFoundError / ValueError on a sweep
    without results or a bad reference.
    """
    from attnbench.analysis import classification, glue, tables

    if task == "auto":
        task = detect_task(sweep_dir)
    if task not in TASKS:
        raise ValueError(f"task={task!r}; allowed: auto, {', '.join(TASKS)}")
    reference = reference or DEFAULT_REFERENCE[task]
    out = Path(out_dir if out_dir is not None else sweep_dir)
    if task == "glue":
        md = glue.write_outputs(sweep_dir, out_dir, reference=reference)
        return md, [out / name for name in glue.OUTPUT_NAMES]
    if task == "classification":
        baselines = ([b.strip() for b in baseline.split(",") if b.strip()] if baseline
                     else classification.BASELINES)
        md = classification.write_outputs(sweep_dir, out_dir, reference=reference, baselines=baselines)
        return md, [out / name for name in classification.OUTPUT_NAMES]
    md, written = tables.write_outputs(sweep_dir, out_dir, reference=reference,
                                       baseline=baseline or DEFAULT_BASELINE)
    return md, list(written.values())
