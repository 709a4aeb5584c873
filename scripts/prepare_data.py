"""Fetch a data set into the data directory, or copy it from a folder that holds it, and verify it.

    python scripts/prepare_data.py ETTh1                  # download (URL + sha256 from the catalogue)
    python scripts/prepare_data.py ETTh1 ETTh2 --from ../shared/data
    python scripts/prepare_data.py all --from DIR         # every forecasting data set found in DIR
    python scripts/prepare_data.py adrenalmnist3d_64      # one MedMNIST3D file (zenodo URL + md5)
    python scripts/prepare_data.py medmnist3d --from DIR  # every MedMNIST3D file found in DIR (28^3 and 64^3)
    python scripts/prepare_data.py glue --from ../shared/data   # the GLUE tsv files (glue_sst2_train, ...)
    python scripts/prepare_data.py imdb                        # aclImdb_v1.tar.gz (Stanford URL + md5)
    python scripts/prepare_data.py pg19 [--pg19-splits train,validation,test]   # PG-19 books (gs://deepmind-gutenberg)
    python scripts/prepare_data.py --list

When DATA_DIR (or --data-dir) already holds a verified copy, nothing is fetched.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from attnbench.data.catalog import IMDB_SOURCE, TIME_SERIES, glue_files, medmnist_files
from attnbench.data.download import DataError, fetch


def catalogue() -> dict:
    """Every fetchable file by name: the forecasting data sets, the MedMNIST3D files, the GLUE files, IMDB."""
    return {**{n: s.source for n, s in TIME_SERIES.items()}, **medmnist_files(), **glue_files(), "imdb": IMDB_SOURCE}


GROUPS = {"all": list(TIME_SERIES), "medmnist3d": list(medmnist_files()), "glue": list(glue_files())}


def main(argv: list[str] | None = None) -> int:
    files = catalogue()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"data sets: {', '.join(files)}; or a group: {', '.join(GROUPS)}")
    p.add_argument("--from", dest="from_dir", type=Path, default=None, help="copy from this folder")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("DATA_DIR", "data")),
                   help="destination (default: $DATA_DIR or data/)")
    p.add_argument("--list", action="store_true", help="list the data sets and their sources")
    p.add_argument("--pg19-splits", default="validation,test",
                   help="pg19: the splits to download (train: 28,602 books, ~11 GB); default validation,test")
    args = p.parse_args(argv)
    if "pg19" in args.names:  # a folder of books from a bucket listing, not one catalogued file
        args.names = [n for n in args.names if n != "pg19"]
        failed = _pg19(args)
        if failed or not args.names:
            return failed
    if args.list or not args.names:
        for name, src in files.items():
            print(f"{name:22s} {src.path:40s} {src.url}")
        return 0
    names = [n for arg in args.names for n in GROUPS.get(arg, [arg])]
    unknown = [n for n in names if n not in files]
    if unknown:
        print(f"error: unknown data set(s) {unknown}; allowed: {', '.join(files)} or a group: "
              f"{', '.join(GROUPS)}", file=sys.stderr)
        return 2
    in_group = {n for arg in args.names if arg in GROUPS for n in GROUPS[arg]}
    failed = 0
    for name in names:
        src = files[name]
        if name in in_group and args.from_dir is not None and not any(
                (args.from_dir / c).is_file() for c in (src.path, Path(src.path).name)):
            print(f"skip {name}: not in {args.from_dir}")
            continue
        try:
            path = fetch(name, src, args.data_dir, from_dir=args.from_dir)
            print(f"ok   {name}: {path}")
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _pg19(args: argparse.Namespace) -> int:
    """``pg19``: download the books of ``--pg19-splits`` (md5 from the bucket listing) into <data-dir>/pg19/."""
    from attnbench.data.corpus import fetch_pg19

    try:
        print(f"ok   pg19: {fetch_pg19(args.data_dir, [s.strip() for s in args.pg19_splits.split(',') if s.strip()])}")
        return 0
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
