"""Turn a sweep into the forecasting table beside published numbers.

    python scripts/make_table.py outputs/hot_forecasting/multiruns/<time>
    python scripts/make_table.py SWEEP_DIR --out paper/ --reference forecasting_lookback96 --baseline PatchTST

Writes table.md, table.tex, table.csv (one row per run x horizon) and table.png into --out (default
SWEEP_DIR) and prints the Markdown. Failed jobs stay in the table as "failed" and are listed with their error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attnbench.analysis.tables import write_outputs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir", type=Path, help="multirun folder holding one results.json per job")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: SWEEP_DIR)")
    p.add_argument("--reference", default="forecasting_lookback96",
                   help="reference table: a name under attnbench/analysis/reference/ or a .csv path")
    p.add_argument("--baseline", default="iTransformer", help="published model the differences are taken to")
    args = p.parse_args(argv)
    try:
        md, paths = write_outputs(args.sweep_dir, args.out, reference=args.reference, baseline=args.baseline)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(md)
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
