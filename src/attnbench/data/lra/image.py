"""LRA Image: CIFAR-10 as a sequence of 1,024 grey-scale 8-bit pixel tokens (row-major), 10 classes.

Where: the CIFAR-10 data set's own file ``<data_dir>/cifar10/cifar-10-python.tar.gz``
(``python scripts/prepare_data.py cifar10``; ``INFO.folder = "../cifar10"``), read in place, or the folder it
extracts to, ``<data_dir>/cifar10/cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``, ``test_batch``).

Grey levels as the official pipeline's ``tf.image.rgb_to_grayscale`` on uint8 images: ``convert_image_dtype`` to
float32 (x * (1/255)), weights (0.2989, 0.5870, 0.1140), back to uint8 as ``cast(g * 255.5)`` (truncation), all in
float32, summed in the order r, g, b. Measured: identical to TensorFlow 2.21's ``rgb_to_grayscale`` on all 256^3
colours (tests pin the sha256 of that table); a fused or reordered float32 sum would change 48 of them by one.

Token ids: ``official_zero_pad=False`` (default, the paper's description: every pixel is a token) -> id = grey + 1,
so no pixel is padding. ``official_zero_pad=True`` -> id = grey, the official code's ids: its mask
``inputs > 0`` then treats black pixels (grey 0) as padding keys, and so does ours (PAD_ID = 0). Vocabulary 257
either way.

Splits (official, TFDS ``train[:90%]`` / ``train[90%:]`` / ``test``): train = the first 90 % (45,000) of the
50,000 training images, val = the last 10 % (5,000), test = the 10,000 test images. The sizes are TFDS's; the
membership is not: TFDS stores its examples shuffled by a hash of their keys, we take the files' order
(data_batch_1..5).
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from attnbench.data.catalog.cifar import CIFAR10_LABELS, CIFAR10_SOURCE
from attnbench.data.catalog.lra import LRA_TASKS
from attnbench.data.download import DataError, locate
from attnbench.data.lra.common import SPLITS

INFO = LRA_TASKS["image"]  # the facts live in data.catalog.lra
BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
TEST_BATCH = "test_batch"
FOLDER = "cifar-10-batches-py"  # inside the archive and as extracted
TRAIN_FRACTION = 0.9
RGB_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)  # tf.image.rgb_to_grayscale
PIXELS = 1024


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 python batch and nothing else.

    A pickle can call any importable callable; this one resolves only the four globals a pickled numpy array needs
    (``_reconstruct`` under its numpy 1 and numpy 2 module names, ``ndarray``, ``dtype``) and ``_codecs.encode``
    (how Python 3 writes bytes at protocol 2). None of them runs code named by the file: ``_reconstruct`` makes an
    empty array of the class given, which must be ``ndarray``; ``dtype`` parses a type string; the array's state is
    its shape, dtype and raw bytes. Every other global -- ``os.system``, ``builtins.eval``, any class -- is refused
    before it is imported, so a forged batch fails with an error instead of running. The result is then checked to be
    a dict holding a uint8 (N, 3072) array and N integer labels.
    """

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def read_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3072) as R, G, B planes of 32x32 row-major, labels int64 (N,)) of one pickled batch."""
    try:
        d = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any failure of a forged or truncated pickle is a data error
        raise DataError(f"cifar10: {name} is not a CIFAR-10 python batch ({type(e).__name__}: {e})") from e
    if not isinstance(d, dict):
        raise DataError(f"cifar10: {name} holds a {type(d).__name__}, not a CIFAR-10 batch dict")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    data, labels = d.get("data"), d.get("labels")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3 * PIXELS):
        raise DataError(f"cifar10: {name}: 'data' is not a uint8 (N, 3072) array")
    if not (isinstance(labels, list) and len(labels) == len(data)
            and all(isinstance(y, int) and 0 <= y < len(CIFAR10_LABELS) for y in labels)):
        raise DataError(f"cifar10: {name}: 'labels' is not a list of {len(data)} class ids in [0, 10)")
    return data, np.asarray(labels, dtype=np.int64)


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """uint8 (N, 3072) R/G/B planes -> uint8 (N, 1024) grey levels, as ``tf.image.rgb_to_grayscale``."""
    x = rgb.reshape(len(rgb), 3, PIXELS).astype(np.float32) * np.float32(1.0 / 255)  # (N, 3, 1024)
    w = RGB_WEIGHTS
    grey = (x[:, 0] * w[0] + x[:, 1] * w[1]) + x[:, 2] * w[2]  # (N, 1024) float32 in [0, 0.9999]
    return (grey * np.float32(255.5)).astype(np.uint8)  # cast truncates; max 255.47 -> 255


def _read_members(path: Path) -> dict[str, bytes]:
    """The six batch files' bytes, from the archive or the extracted folder."""
    names = (*BATCHES, TEST_BATCH)
    if path.is_dir():
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise DataError(f"cifar10: {path} lacks {', '.join(missing)}")
        return {n: (path / n).read_bytes() for n in names}
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:
                stem = m.name.removeprefix(f"{FOLDER}/")
                if m.isfile() and m.name.startswith(f"{FOLDER}/") and stem in names:
                    out[stem] = tar.extractfile(m).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"cifar10: {path} is not a readable cifar-10-python archive ({e}); fetch it again with\n"
                        "  python scripts/prepare_data.py cifar10 [--from DIR]") from e
    missing = [n for n in names if n not in out]
    if missing:
        raise DataError(f"cifar10: {path} lacks {', '.join(f'{FOLDER}/{n}' for n in missing)}")
    return out


@functools.lru_cache(maxsize=1)
def _grey_sets(path: str, mtime_ns: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (grey uint8 (50000, 1024), labels), "test": ...}, read once per process and file version."""
    raw = _read_members(Path(path))
    train = [read_batch(raw[n], n) for n in BATCHES]
    test = read_batch(raw[TEST_BATCH], TEST_BATCH)
    return {"train": (to_grey(np.concatenate([x for x, _ in train])), np.concatenate([y for _, y in train])),
            "test": (to_grey(test[0]), test[1])}


def _locate(data_dir: Path, verify: bool) -> Path:
    """The archive, or the extracted folder when the archive is absent; a DataError saying how to get either."""
    folder = data_dir / Path(CIFAR10_SOURCE.path).parent / FOLDER
    if not (data_dir / CIFAR10_SOURCE.path).is_file() and folder.is_dir():
        return folder
    try:
        return locate("cifar10", CIFAR10_SOURCE, data_dir, check=verify)
    except DataError as e:
        if "not found" not in str(e):
            raise
        raise DataError(f"{e}\n  or place the extracted folder at {folder} ({', '.join(BATCHES)}, {TEST_BATCH})\n"
                        f"  (md5 of the archive: {CIFAR10_SOURCE.md5[0]})") from None


def load_split(root: Path, split: str, max_len: int = PIXELS, limit: int | None = None, official_zero_pad: bool = False,
               verify: bool = True) -> tuple[Tensor, Tensor]:
    """Pixel ids int64 (N, 1024) and labels int64 (N,) of ``split`` (see the module doc for ids and splits).

    ``root`` is ``<data_dir>/lra/../cifar10`` (or ``<data_dir>/cifar10``); ``verify`` checks the archive's md5.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; allowed: {', '.join(SPLITS)}")
    if max_len != PIXELS:
        raise ValueError(f"max_len={max_len}: the image task is a fixed {PIXELS} pixels (32x32); allowed: {PIXELS}")
    path = _locate(Path(os.path.normpath(root)).parent, verify)
    grey, labels = _grey_sets(str(path), path.stat().st_mtime_ns)["test" if split == "test" else "train"]
    if split != "test":
        n_train = round(TRAIN_FRACTION * len(labels))
        rows = slice(0, n_train) if split == "train" else slice(n_train, None)
        grey, labels = grey[rows], labels[rows]
    grey, labels = grey[:limit], labels[:limit]  # limit None: all
    ids = grey.astype(np.int64) + (0 if official_zero_pad else 1)  # (N, 1024)
    return torch.from_numpy(ids), torch.from_numpy(labels.copy())
