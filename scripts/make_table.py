"""Turn a sweep into its paper table beside published numbers: forecasting, 3D classification or GLUE.

    python scripts/make_table.py outputs/hot_forecasting/multiruns/<time>
    python scripts/make_table.py SWEEP_DIR --out paper/ --reference forecasting_lookback96 --baseline PatchTST
    python scripts/make_table.py outputs/hot_medmnist3d/multiruns/<time>      # classification, found by itself
    python scripts/make_table.py outputs/smyrf_glue/multiruns/<time>          # GLUE (SMYRF-BERT), found by itself

The task is read from the jobs' results.json (config.model._target_ is the GLUE module: glue; the
classification module, or the metrics hold test/acc: classification; otherwise forecasting); --task overrides
it. GLUE writes table.md, table.csv and runs.csv.
Forecasting writes table.md, table.tex, table.csv (one row per run x horizon) and table.png; classification
writes table.md, table.tex, table.csv (the wide table), table.png and runs.csv (one row per job). Both go into
--out (default SWEEP_DIR) and print the Markdown. Failed jobs stay in the table as "failed" and are listed
with their error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attnbench.analysis import classification, glue, tables

DEFAULT_REFERENCE = {"forecasting": "forecasting_lookback96", "classification": "medmnist3d",
                     "glue": None}  # glue: smyrf_imdb for an IMDB sweep, else smyrf_glue


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir", type=Path, help="multirun folder holding one results.json per job")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: SWEEP_DIR)")
    p.add_argument("--task", choices=("auto", "forecasting", "classification", "glue"), default="auto",
                   help="which table (default: read from the sweep's results.json)")
    p.add_argument("--reference", default=None,
                   help="reference table: a name under attnbench/analysis/reference/ or a .csv path "
                        f"(default: {DEFAULT_REFERENCE['forecasting']} or {DEFAULT_REFERENCE['classification']})")
    p.add_argument("--baseline", default=None,
                   help="forecasting: the published model the differences are taken to (default iTransformer); "
                        "classification: comma-separated published models whose best our best is compared with "
                        f"(default {','.join(classification.BASELINES)})")
    args = p.parse_args(argv)
    task = args.task
    if task == "auto":
        task = ("glue" if glue.is_glue_sweep(args.sweep_dir) else
                "classification" if classification.is_classification_sweep(args.sweep_dir) else "forecasting")
    reference = args.reference or DEFAULT_REFERENCE[task]
    try:
        if task == "glue":
            md = glue.write_outputs(args.sweep_dir, args.out, reference=reference)
            out = args.out if args.out is not None else args.sweep_dir
            paths = [out / name for name in glue.OUTPUT_NAMES]
        elif task == "classification":
            baselines = ([b.strip() for b in args.baseline.split(",") if b.strip()] if args.baseline
                         else classification.BASELINES)
            md = classification.write_outputs(args.sweep_dir, args.out, reference=reference, baselines=baselines)
            out = args.out if args.out is not None else args.sweep_dir
            paths = [out / name for name in classification.OUTPUT_NAMES]
        else:
            md, written = tables.write_outputs(args.sweep_dir, args.out, reference=reference,
                                               baseline=args.baseline or "iTransformer")
            paths = list(written.values())
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(md)
    print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
