"""Turn a sweep into the paper table its experiment declares, beside the published numbers.

    python scripts/make_table.py outputs/hot_forecasting/multiruns/<time>
    python scripts/make_table.py SWEEP_DIR --out paper/ --reference forecasting_lookback96 --baseline PatchTST
    python scripts/make_table.py OLD_SWEEP --experiment hot/medmnist3d     # results that name no experiment

The table is the ``table:`` block of ``conf/experiment/<paper>/<table>.yaml`` (kind, rows, columns, metrics
and direction, reference file, baseline, notes; see attnbench.analysis.spec), read from the jobs' results.json
(config.table, or the experiment named in choices.experiment). Every kind writes table.md, table.tex,
table.csv and table.png; classification and GLUE also runs.csv (one row per job); the models x tasks kinds
(tasks, glue, perplexity) also an attention-cost section in table.md, cost.csv and
<metric>_vs_attention_gflops.png when the runs logged attention FLOPs; a `curves:` block adds
curves_<metric>.png and curves.csv from each job's csv/metrics.csv (attnbench.analysis.curves). Files go into --out
(default SWEEP_DIR); the Markdown is printed. Failed jobs stay in the table as "failed" and are listed with
their error. Cells are mean ± std over seeds with n; truncated runs (debug, batch limits, budget overrides)
carry a footnote marker. A multirun writes the same files by itself at its end
(attnbench.sweep.SweepSummary).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attnbench.analysis import report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir", type=Path, help="multirun folder holding one results.json per job")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: SWEEP_DIR)")
    p.add_argument("--experiment", default=None,
                   help="the experiment whose table this is, e.g. hot/forecasting (default: read from the "
                        "sweep's results.json)")
    p.add_argument("--reference", default=None,
                   help="reference table instead of the declared one: a name under "
                        "attnbench/analysis/reference/ or a .csv path")
    p.add_argument("--baseline", default=None,
                   help="comma-separated published models instead of the declared baseline (forecasting: one)")
    args = p.parse_args(argv)
    try:
        md, paths = report.write_table(args.sweep_dir, args.out, experiment=args.experiment,
                                       reference=args.reference, baseline=args.baseline)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(md)
    print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
