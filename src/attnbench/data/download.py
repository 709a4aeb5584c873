"""Fetch a data-set file into the data directory, or copy it from another folder, and verify it."""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from attnbench.data.catalog.source import Source
from attnbench.errors import DataError

log = logging.getLogger(__name__)


def sha256sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _how_to_get(name: str, src: Source, data_dir: Path) -> str:
    return (
        f"  fetch it:           python scripts/prepare_data.py {name} --data-dir {data_dir}\n"
        f"  or copy it from DIR: python scripts/prepare_data.py {name} --from DIR --data-dir {data_dir}\n"
        f"  or point paths.data_dir (env DATA_DIR) at a folder holding {src.path}\n"
        f"  (source: {src.url})"
    )


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(name: str, src: Source, path: Path) -> None:
    """Raise DataError unless ``path`` has one of the accepted digests: a sha256 of ``src.sha256`` or an md5 of
    ``src.md5`` (the publisher's, where that is all it gives). A source with no digest pinned yet (GLUE's MNLI,
    QNLI, QQP) passes with a warning that names the sha256 found."""
    if not src.sha256 and not src.md5:
        log.warning("%s: no digest is pinned for %s; using it unverified (sha256 %s)", name, path, sha256sum(path))
        return
    found = []
    if src.sha256:
        digest = sha256sum(path)
        if digest in src.sha256:
            return
        found.append(f"sha256 {digest}, expected {' or '.join(src.sha256)}")
    if src.md5:
        digest = md5sum(path)
        if digest in src.md5:
            return
        found.append(f"md5 {digest}, expected {' or '.join(src.md5)}")
    raise DataError(
        f"{name}: {path} is corrupt or not the official file: {'; '.join(found)}. Delete it and fetch it again "
        f"with\n  python scripts/prepare_data.py {name} [--from DIR] --data-dir <the data directory>"
    )


def locate(name: str, src: Source, data_dir: Path, check: bool = True) -> Path:
    """Path of the data-set file under ``data_dir``; a clear error when it is missing or corrupt."""
    path = data_dir / src.path
    if not path.is_file():
        raise DataError(f"{name}: {path} not found.\n" + _how_to_get(name, src, data_dir))
    if check:
        verify(name, src, path)
    return path


def download(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Stream ``url`` to ``dest`` (atomically: a partial download never lands at ``dest``)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                shutil.copyfileobj(r, tmp)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    Path(tmp.name).replace(dest)


def fetch(name: str, src: Source, data_dir: Path, from_dir: Path | None = None, timeout: float = 60.0) -> Path:
    """Make ``data_dir/src.path`` hold the verified file: keep it, copy it from ``from_dir``, or download it.

    Folders made for it are removed again when that fails, so a mistyped ``data_dir`` is not left behind.
    """
    path = data_dir / src.path
    if path.is_file():
        verify(name, src, path)
        return path
    made = [d for d in (path.parent, *path.parent.parents) if not d.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _fetch_into(name, src, path, data_dir, from_dir, timeout)
    except BaseException:
        for d in made:
            try:
                d.rmdir()  # only while empty
            except OSError:
                break
        raise


def _fetch_into(name: str, src: Source, path: Path, data_dir: Path, from_dir: Path | None, timeout: float) -> Path:
    """``fetch`` once the folder of ``path`` exists: copy from ``from_dir`` or download, then verify."""
    if from_dir is not None:
        cand = [from_dir / src.path, from_dir / Path(src.path).name]
        found = next((c for c in cand if c.is_file()), None)
        if found is None:
            raise DataError(f"{name}: neither {cand[0]} nor {cand[1]} exists; --from must hold {src.path}")
        verify(name, src, found)
        shutil.copyfile(found, path)
        return path
    gz = src.gz_sha256 is not None
    raw = path.with_name(path.name + (".gz" if gz else ".zip" if src.member else ""))
    try:
        if src.builder:
            BUILDERS[src.builder](path, timeout)
        else:
            download(src.url, raw, timeout)
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise DataError(
            f"{name}: download of {src.url} failed ({e}). Without network, copy the file from a folder that "
            f"holds it:\n  python scripts/prepare_data.py {name} --from DIR --data-dir {data_dir}\n"
            f"or point paths.data_dir (env DATA_DIR) at a folder holding {src.path}."
        ) from e
    if src.member:
        try:
            with zipfile.ZipFile(raw) as zf, zf.open(src.member) as fi, open(path, "wb") as fo:
                shutil.copyfileobj(fi, fo)
        except (zipfile.BadZipFile, KeyError) as e:
            raise DataError(f"{name}: {src.url} is not a zip holding {src.member} ({e})") from e
        finally:
            raw.unlink(missing_ok=True)
    if gz:
        digest = sha256sum(raw)
        if digest != src.gz_sha256:
            raw.unlink()
            raise DataError(f"{name}: downloaded {src.url} has sha256 {digest}, expected {src.gz_sha256}")
        with gzip.open(raw, "rb") as fi, open(path, "wb") as fo:
            shutil.copyfileobj(fi, fo)
        raw.unlink()
    try:
        verify(name, src, path)
    except DataError:
        path.unlink()
        raise
    return path


MRPC_DEV_IDS = "https://dl.fbaipublicfiles.com/glue/data/mrpc_dev_ids.tsv"


def split_mrpc(msr_train: Path, dev_ids: Path, out_dir: Path) -> None:
    """GLUE's MRPC: Microsoft's training file split into ``train.tsv`` / ``dev.tsv`` by GLUE's list of dev ids.

    The header line is copied as it is (with its byte-order mark) to both files; every row is rewritten as
    ``label, id1, id2, string1, string2`` joined by tabs (the rule of GLUE's download script).
    """
    dev = {tuple(line.rstrip("\r\n").split("\t")) for line in dev_ids.read_text(encoding="utf-8").splitlines()
           if line.strip()}
    with open(msr_train, encoding="utf-8", newline="") as fi:
        header = fi.readline()
        rows = [line.strip().split("\t") for line in fi if line.strip()]
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "train.tsv", "w", encoding="utf-8", newline="") as tr, \
            open(out_dir / "dev.tsv", "w", encoding="utf-8", newline="") as dv:
        tr.write(header)
        dv.write(header)
        for label, id1, id2, s1, s2 in rows:
            (dv if (id1, id2) in dev else tr).write(f"{label}\t{id1}\t{id2}\t{s1}\t{s2}\n")


def _build_glue_mrpc(path: Path, timeout: float) -> None:
    """Download Microsoft's MRPC training file and GLUE's dev ids, write train.tsv and dev.tsv next to ``path``."""
    from attnbench.data.catalog.glue import MRPC_SOURCE_URL

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        msr, ids = Path(tmp) / "msr_paraphrase_train.txt", Path(tmp) / "mrpc_dev_ids.tsv"
        download(MRPC_SOURCE_URL, msr, timeout)
        download(MRPC_DEV_IDS, ids, timeout)
        split_mrpc(msr, ids, path.parent)


BUILDERS = {"glue_mrpc": _build_glue_mrpc}
