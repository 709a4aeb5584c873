"""LRA Text, Retrieval and Image readers: exact ids, shapes, splits, labels and errors on tiny files in the real
formats (an aclImdb tar.gz, AAN pairs TSVs, CIFAR-10 python batches)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import pickletools
import random
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from attnbench.data.catalog import CIFAR10_SOURCE
from attnbench.data.download import DataError
from attnbench.data.lra import image, retrieval, text
from attnbench.data.lra.common import PAD_ID
from scripts.prepare_data import catalogue
from tests.conftest import SHARED_DATA, add_member, write_imdb


def lra_root(data_dir: Path, task) -> Path:
    """The root the LRA datamodule hands a task: <data_dir>/lra/<INFO.dir>."""
    return data_dir / "lra" / task.INFO.dir


def ids(s: bytes) -> list[int]:
    return [b + 1 for b in s]


def data_error(load, *args) -> str:
    """The message of the DataError ``load(*args)`` raises."""
    with pytest.raises(DataError) as e:
        load(*args)
    return str(e.value)


# ------------------------------------------------------------------------------------------------------------ text


def test_byte_ids_are_bytes_plus_one_truncated_and_zero_padded():
    out = text.byte_ids([b"ab", b"\xff\x00xyz", b""], 4)
    assert out.dtype == torch.int64
    assert out.tolist() == [[98, 99, 0, 0], [256, 1, 121, 122], [0, 0, 0, 0]]  # 0xff -> 256 (no uint8 wrap)
    assert text.INFO.vocab_size == 257 and text.INFO.max_len == 1000 and text.INFO.num_classes == 2


def test_text_official_splits_ids_and_labels(tmp_path):
    root = lra_root(write_imdb(tmp_path, n=3), text)
    assert root == tmp_path / "lra" / "../imdb"
    x, y = text.load_split(root, "train", 64, verify=False)
    assert x.shape == (6, 64) and x.dtype == torch.int64 and y.tolist() == [0, 0, 0, 1, 1, 1]
    first = b"A terrible film.<br /><br />Review 0 of the train set."
    assert x[0].tolist() == ids(first) + [PAD_ID] * (64 - len(first))
    assert x[3, : len(first)].tolist() == ids(b"A wonderful film.<br /><br />Review 0 of the train set.")[: len(first)]
    xv, yv = text.load_split(root, "val", 64, verify=False)
    xt, yt = text.load_split(root, "test", 64, verify=False)
    assert torch.equal(xv, xt) and torch.equal(yv, yt)  # official: val = test = the test reviews
    assert bytes(b - 1 for b in xt[0].tolist() if b).decode() == "A terrible film.<br /><br />Review 0 of the test set."
    short, _ = text.load_split(root, "train", 5, verify=False)
    assert short[0].tolist() == ids(b"A ter")


def test_text_bytes_are_utf8_and_stripped_as_tfds_does(tmp_path):
    path = tmp_path / "imdb" / "aclImdb_v1.tar.gz"
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            add_member(tar, f"aclImdb/{split}/neg/0_1.txt", " \tCaf\u00e9 \u00ff!\n\n".encode())
            add_member(tar, f"aclImdb/{split}/pos/0_9.txt", b"ok")
    x, y = text.load_split(lra_root(tmp_path, text), "test", 12, verify=False)
    assert x[0].tolist() == [68, 98, 103, 196, 170, 33, 196, 192, 34, 0, 0, 0]  # "Caf" c3 a9 " " c3 bf "!"
    assert y.tolist() == [0, 1]


def test_text_val_fraction_holds_out_a_seeded_part_of_train(tmp_path):
    root = lra_root(write_imdb(tmp_path, n=5), text)
    full, labels = text.load_split(root, "train", 80, verify=False)
    tr, ytr = text.load_split(root, "train", 80, val_fraction=0.3, seed=3, verify=False)
    va, yva = text.load_split(root, "val", 80, val_fraction=0.3, seed=3, verify=False)
    order = list(range(10))
    random.Random(3).shuffle(order)  # ImdbDataModule's draw
    assert torch.equal(va, full[order[:3]]) and torch.equal(tr, full[order[3:]])
    assert yva.tolist() == labels[order[:3]].tolist()
    te, _ = text.load_split(root, "test", 80, val_fraction=0.3, seed=3, verify=False)
    assert te.shape == (10, 80) and not torch.equal(te, full)
    with pytest.raises(ValueError, match=r"val_fraction=1.5 must lie in \(0, 1\), or be None"):
        text.load_split(root, "val", 80, val_fraction=1.5, verify=False)
    with pytest.raises(ValueError, match="split='dev'; allowed: train, val, test"):
        text.load_split(root, "dev", 80, verify=False)


def test_text_missing_archive_says_where_and_how(tmp_path):
    with pytest.raises(DataError, match="prepare_data.py imdb") as e:
        text.load_split(lra_root(tmp_path, text), "train", 10)
    assert f"{tmp_path / 'imdb' / 'aclImdb_v1.tar.gz'} not found" in str(e.value)


@pytest.mark.data
@pytest.mark.slow
def test_text_on_the_real_archive():
    x, y = text.load_split(lra_root(SHARED_DATA, text), "test", 1000)
    assert x.shape == (25000, 1000) and y.sum() == 12500
    assert x.min() == 0 and x.max() <= 256 and bool((x[:, 0] != PAD_ID).all())


# ------------------------------------------------------------------------------------------------------- retrieval


def write_aan(root: Path, rows: dict[str, list[bytes]]) -> Path:
    """new_aan_pairs.<split>.tsv files under root, each line given as raw bytes."""
    root.mkdir(parents=True, exist_ok=True)
    for split, lines in rows.items():
        (root / f"new_aan_pairs.{split}.tsv").write_bytes(b"".join(lines))
    return root


def test_retrieval_two_towers_exact_ids_and_labels(tmp_path):
    root = write_aan(lra_root(tmp_path, retrieval), {
        "train": [b"1\tP01\tP02\tAB\t\"q\"\n", b"0.0\tP03\tP04\t\xff\tabcdefgh\r\n", b"\n", b"1.0\tP05\tP06\t\tx\n"],
        "eval": [b"0\tE1\tE2\tval\tpair\n"], "test": [b"1\tT1\tT2\ttest\tpair\n", b"0\tT3\tT4\tt\tp\n"]})
    x, y = retrieval.load_split(root, "train", 6)
    assert x.shape == (3, 2, 6) and x.dtype == torch.int64 and y.tolist() == [1, 0, 1]
    assert x[0].tolist() == [ids(b"AB") + [0] * 4, ids(b'"q"') + [0] * 3]  # quotes are text
    assert x[1].tolist() == [[256, 0, 0, 0, 0, 0], ids(b"abcdef")]  # truncated; CRLF ends the line
    assert x[2, 0].tolist() == [0] * 6  # an empty document is all padding
    xv, yv = retrieval.load_split(root, "val", 4)
    assert xv.tolist() == [[ids(b"val") + [0], ids(b"pair")]] and yv.tolist() == [0]
    assert retrieval.load_split(root, "test", 4)[1].tolist() == [1, 0]
    assert retrieval.INFO.two_tower and retrieval.INFO.max_len == 4000 and retrieval.INFO.vocab_size == 257


def test_retrieval_encodes_the_first_10000_bytes_only(tmp_path):
    doc = bytes(range(32, 127)) * 120  # 11,400 bytes
    root = write_aan(tmp_path / "aan", {"train": [b"1\ta\tb\t" + doc + b"\tshort\n"]})
    x, _ = retrieval.load_split(root, "train", 12_000)
    assert x[0, 0, :10_000].tolist() == ids(doc[:10_000]) and x[0, 0, 10_000:].eq(0).all()


def test_retrieval_missing_files_say_what_to_place_where(tmp_path):
    root = lra_root(tmp_path, retrieval)
    msg = data_error(retrieval.load_split, root, "val", 4000)
    assert f"{root / 'new_aan_pairs.eval.tsv'} not found" in msg
    assert "https://storage.googleapis.com/long-range-arena/lra_release.gz" in msg
    assert "new_aan_pairs.train.tsv, new_aan_pairs.eval.tsv, new_aan_pairs.test.tsv from lra_release/tsv_data/" in msg


def test_retrieval_malformed_rows_are_data_errors(tmp_path):
    root = write_aan(tmp_path / "a", {"train": [b"1\ta\tb\tx\ty\n", b"1\ta\tb\tx\n"]})
    with pytest.raises(DataError, match=r"new_aan_pairs.train.tsv:2 has 4 tab-separated fields; expected 5"):
        retrieval.load_split(root, "train", 8)
    root = write_aan(tmp_path / "b", {"train": [b"2\ta\tb\tx\ty\n"]})
    with pytest.raises(DataError, match=r"train.tsv:1: label b'2' is not 0 or 1"):
        retrieval.load_split(root, "train", 8)


# ----------------------------------------------------------------------------------------------------------- image

# (R, G, B) -> the grey level tf.image.rgb_to_grayscale gives (by hand: trunc(255.5 * sum(w * c / 255)))
COLOURS = [((0, 0, 0), 0), ((255, 255, 255), 255), ((255, 0, 0), 76), ((0, 255, 0), 149), ((0, 0, 255), 29),
           ((128, 128, 128), 128), ((100, 150, 200), 141), ((1, 1, 1), 1)]


class Py2Pickler(pickle._Pickler):
    """Writes a pickle as Python 2's cPickle wrote the official batches: str and bytes as byte strings
    (SHORT_BINSTRING / BINSTRING), numpy's globals under ``numpy.core``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes_py2(self, obj: bytes) -> None:
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)

    def save_str_py2(self, obj: str) -> None:
        self.save_bytes_py2(obj.encode("latin1"))

    def save_global(self, obj, name=None) -> None:
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch[bytes], dispatch[str], dispatch[type] = save_bytes_py2, save_str_py2, save_global


def dumps_py2(obj) -> bytes:
    f = io.BytesIO()
    Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue()


def cifar_batch(n: int, first_label: int, seed: int) -> tuple[dict, np.ndarray]:
    """A batch dict as the python version holds it (bytes keys), pixel 0 of image i in COLOURS[i % 8]."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    for i in range(n):
        data[i, [0, 1024, 2048]] = COLOURS[i % len(COLOURS)][0]
    labels = [(first_label + i) % 10 for i in range(n)]
    return {b"batch_label": b"batch", b"labels": labels, b"data": data, b"filenames": [b"f.png"] * n}, data


def write_cifar(data_dir: Path, per_batch: int = 2, n_test: int = 3, extracted: bool = False,
                replace: dict | None = None) -> Path:
    """cifar10/cifar-10-python.tar.gz (or the extracted folder) with 5 training batches and a test batch."""
    batches = {f"data_batch_{k}": cifar_batch(per_batch, k, k)[0] for k in range(1, 6)}
    batches["test_batch"] = cifar_batch(n_test, 7, 9)[0]
    raw = {name: dumps_py2(d) for name, d in batches.items()}  # replacements: Python 3 pickles
    raw.update(replace or {})
    folder = data_dir / "cifar10"
    folder.mkdir(parents=True, exist_ok=True)
    if extracted:
        (folder / image.FOLDER).mkdir()
        for name, blob in raw.items():
            (folder / image.FOLDER / name).write_bytes(blob)
    else:
        with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
            add_member(tar, f"{image.FOLDER}/batches.meta", b"meta")
            for name, blob in raw.items():
                add_member(tar, f"{image.FOLDER}/{name}", blob)
    return data_dir


def test_grey_levels_match_tf_rgb_to_grayscale():
    rgb = np.zeros((len(COLOURS), 3072), dtype=np.uint8)
    for i, (c, _) in enumerate(COLOURS):
        rgb[i, [5, 1024 + 5, 2048 + 5]] = c  # pixel 5 of image i
    grey = image.to_grey(rgb)
    assert grey.shape == (len(COLOURS), 1024) and grey.dtype == np.uint8
    assert grey[:, 5].tolist() == [g for _, g in COLOURS] and not grey[:, :5].any()


# sha256 of tf.image.rgb_to_grayscale (TensorFlow 2.21, uint8) over every colour, colour c = (r << 16) | (g << 8) | b
TF_GREY_TABLE_SHA256 = "824a76d81dad2c5a2cf1fa0b2c0a5afe7d871ec2970e4fa2809b53ddbecdca93"


@pytest.mark.slow
def test_grey_levels_equal_tensorflow_on_every_colour():
    c = np.arange(2**24, dtype=np.uint32)
    rgb = np.stack([(c >> 16) & 255, (c >> 8) & 255, c & 255]).astype(np.uint8)  # (3, 2^24)
    planes = rgb.reshape(3, -1, 1024).transpose(1, 0, 2).reshape(-1, 3072)  # 16384 "images" of 1024 colours
    grey = image.to_grey(planes).reshape(-1)
    assert hashlib.sha256(grey.tobytes()).hexdigest() == TF_GREY_TABLE_SHA256


def test_python2_batch_pickles_use_only_numpy_globals():
    blob = dumps_py2(cifar_batch(2, 0, 0)[0])
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(blob)]
    globals_ = [a for o, a in ops if o == "GLOBAL"]
    assert globals_ == ["numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"]
    assert not [o for o, _ in ops if "UNICODE" in o]  # every string a byte string, as in the official files
    x, y = image.read_batch(blob, "b")
    assert x.shape == (2, 3072) and y.tolist() == [0, 1]
    # a batch pickled again by Python 3 (bytes via _codecs.encode at protocol 2) reads alike
    x3, y3 = image.read_batch(pickle.dumps(cifar_batch(2, 0, 0)[0], protocol=2), "b3")
    assert np.array_equal(x, x3) and np.array_equal(y, y3)


def test_image_splits_ids_and_labels(tmp_path):
    root = lra_root(write_cifar(tmp_path), image)
    x, y = image.load_split(root, "train", 1024, verify=False)
    assert x.shape == (9, 1024) and x.dtype == torch.int64  # 90 % of 10 training images, in file order
    assert y.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5]  # batch k holds labels k, k+1
    xv, yv = image.load_split(root, "val", 1024, verify=False)
    assert xv.shape == (1, 1024) and yv.tolist() == [6]
    xt, yt = image.load_split(root, "test", 1024, verify=False)
    assert xt.shape == (3, 1024) and yt.tolist() == [7, 8, 9]
    assert xt[:, 0].tolist() == [g + 1 for _, g in COLOURS[:3]]  # default: id = grey + 1, black is id 1
    assert x.min() >= 1 and x.max() <= 256
    _, data = cifar_batch(3, 7, 9)
    assert torch.equal(xt, torch.from_numpy(image.to_grey(data).astype(np.int64) + 1))


def test_image_official_zero_pad_makes_black_pixels_padding(tmp_path):
    root = lra_root(write_cifar(tmp_path), image)
    xt, _ = image.load_split(root, "test", 1024, official_zero_pad=True, verify=False)
    default, _ = image.load_split(root, "test", 1024, verify=False)
    assert xt[0, 0] == PAD_ID and torch.equal(xt + 1, default)
    assert image.INFO.vocab_size == 257 and image.INFO.num_classes == 10


def test_image_reads_the_extracted_folder_alike(tmp_path):
    a = image.load_split(lra_root(write_cifar(tmp_path / "a"), image), "val", 1024, verify=False)
    b = image.load_split(lra_root(write_cifar(tmp_path / "b", extracted=True), image), "val", 1024)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_image_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    root = lra_root(write_cifar(tmp_path, replace={"data_batch_3": pickle.dumps(Evil(), protocol=2)}), image)
    with pytest.raises(DataError, match=r"data_batch_3 is not a CIFAR-10 python batch .*global "
                                        r"(posix|os|nt)\.system is not allowed"):
        image.load_split(root, "train", 1024, verify=False)
    assert not marker.exists()


def test_image_checks_the_batch_contents(tmp_path):
    bad = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    root = lra_root(write_cifar(tmp_path, replace={"test_batch": pickle.dumps(bad, protocol=2)}), image)
    with pytest.raises(DataError, match=r"test_batch: 'data' is not a uint8 \(N, 3072\) array"):
        image.load_split(root, "test", 1024, verify=False)


def test_image_missing_or_wrong_archive(tmp_path):
    root = lra_root(tmp_path, image)
    msg = data_error(image.load_split, root, "train", 1024)
    assert f"{tmp_path / 'cifar10' / 'cifar-10-python.tar.gz'} not found" in msg
    assert "prepare_data.py cifar10" in msg and "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg
    assert "c58f30108f718f92721af3b95e74349a" in msg and str(tmp_path / "cifar10" / image.FOLDER) in msg
    write_cifar(tmp_path)
    with pytest.raises(DataError, match="expected c58f30108f718f92721af3b95e74349a"):
        image.load_split(root, "train", 1024)  # verify=True: our tiny archive is not the official file
    with pytest.raises(ValueError, match="max_len=2048: the image task is a fixed 1024 pixels"):
        image.load_split(root, "train", 2048, verify=False)


def test_cifar10_is_a_prepare_data_entry():
    assert catalogue()["cifar10"] is CIFAR10_SOURCE
    assert CIFAR10_SOURCE.path == f"{image.INFO.dir.removeprefix('../')}/cifar-10-python.tar.gz"


# ---------------------------------------------------------------------------------------------------- limit (all)


def test_limit_reads_the_same_first_rows_in_every_reader(tmp_path):
    """load_split(..., limit=n) is the whole split's first n rows (data.limit_examples; debug=fast reads no more)."""
    text_root = lra_root(write_imdb(tmp_path / "t", n=3), text)
    aan_root = write_aan(lra_root(tmp_path / "r", retrieval), {
        "train": [b"1\tA\tB\tab\tcd\n", b"0\tC\tD\tef\tgh\n", b"1\tE\tF\tij\tkl\n"],
        "eval": [b"0\tE1\tE2\tval\tpair\n"], "test": [b"1\tT1\tT2\ttest\tpair\n"]})
    img_root = lra_root(write_cifar(tmp_path / "i"), image)
    for load, root, kw in [(text.load_split, text_root, {"verify": False}), (retrieval.load_split, aan_root, {}),
                           (image.load_split, img_root, {"verify": False})]:
        max_len = image.PIXELS if load is image.load_split else 16
        x, y = load(root, "train", max_len, **kw)
        assert len(y) >= 3
        for n in (1, 2, len(y) + 5):
            xn, yn = load(root, "train", max_len, limit=n, **kw)
            assert torch.equal(xn, x[:n]) and torch.equal(yn, y[:n])
