"""Fetch a data set into the data directory, or copy it from a folder that holds it, and verify it.

    python scripts/prepare_data.py ETTh1                  # download (URL + sha256 from the catalogue)
    python scripts/prepare_data.py ETTh1 ETTh2 --from ../shared/data
    python scripts/prepare_data.py all --from DIR         # every forecasting data set found in DIR
    python scripts/prepare_data.py --list

When DATA_DIR (or --data-dir) already holds a verified copy, nothing is fetched.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from attnbench.data.catalog import TIME_SERIES
from attnbench.data.download import DataError, fetch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"data sets: {', '.join(TIME_SERIES)} or 'all'")
    p.add_argument("--from", dest="from_dir", type=Path, default=None, help="copy from this folder")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("DATA_DIR", "data")),
                   help="destination (default: $DATA_DIR or data/)")
    p.add_argument("--list", action="store_true", help="list the data sets and their sources")
    args = p.parse_args(argv)
    if args.list or not args.names:
        for name, s in TIME_SERIES.items():
            print(f"{name:18s} {s.source.path:36s} {s.source.url}")
        return 0
    names = list(TIME_SERIES) if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in TIME_SERIES]
    if unknown:
        print(f"error: unknown data set(s) {unknown}; allowed: {', '.join(TIME_SERIES)} or all", file=sys.stderr)
        return 2
    failed = 0
    for name in names:
        src = TIME_SERIES[name].source
        if args.names == ["all"] and args.from_dir is not None and not (args.from_dir / src.path).is_file():
            print(f"skip {name}: not in {args.from_dir}")
            continue
        try:
            path = fetch(name, src, args.data_dir, from_dir=args.from_dir)
            print(f"ok   {name}: {path}")
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
