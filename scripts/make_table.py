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
with their error. Cells are mean ± std over seeds with n; truncated runs (debug, batch limits, budget overrides)
carry a footnote marker. A multirun writes the same files by itself at its end (attnbench.sweep.SweepSummary).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attnbench.analysis import classification, report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir", type=Path, help="multirun folder holding one results.json per job")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: SWEEP_DIR)")
    p.add_argument("--task", choices=("auto", *report.TASKS), default="auto",
                   help="which table (default: read from the sweep's results.json)")
    p.add_argument("--reference", default=None,
                   help="reference table: a name under attnbench/analysis/reference/ or a .csv path "
                        f"(default: {report.DEFAULT_REFERENCE['forecasting']} or "
                        f"{report.DEFAULT_REFERENCE['classification']})")
    p.add_argument("--baseline", default=None,
                   help="forecasting: the published model the differences are taken to (default "
                        f"{report.DEFAULT_BASELINE}); classification: comma-separated published models whose best "
                        f"our best is compared with (default {','.join(classification.BASELINES)})")
    args = p.parse_args(argv)
    try:
        md, paths = report.write_table(args.sweep_dir, args.out, task=args.task, reference=args.reference,
                                       baseline=args.baseline)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(md)
    print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
