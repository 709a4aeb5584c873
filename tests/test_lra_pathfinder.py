"""LRA Pathfinder: the generator (settings, determinism, balance, connected vs not checked independently) and the
reader of the released layout (metadata parsing, 80/10/10 split, empty images, token ids, errors)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnbench.data.download import DataError
from attnbench.data.lra import pathfinder as pf
from scripts.prepare_data import main as prepare_data


# ------------------------------------------------------------------------------------------------ test helpers
def _raster(shape, paddles, length: float) -> np.ndarray:
    """Our own rasteriser of recorded paddles: the pixels nearest to points every 0.05 px along each bar."""
    out = np.zeros(shape, bool)
    t = np.arange(0, length + 1e-9, 0.05)
    for (y, x), o in paddles:
        ys = np.rint(y + t * np.sin(o)).astype(int)
        xs = np.rint(x + t * np.cos(o)).astype(int)
        ok = (ys >= 0) & (ys < shape[0]) & (xs >= 0) & (xs < shape[1])
        out[ys[ok], xs[ok]] = True
    return out


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = np.zeros_like(mask)
    n0, n1 = mask.shape
    pad = np.pad(mask, r)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx <= r * r:
                out |= pad[r + dy:r + dy + n0, r + dx:r + dx + n1]
    return out


def _component(mask: np.ndarray, seed) -> np.ndarray:
    """4-connected flood fill of ``mask`` from ``seed``."""
    comp = np.zeros_like(mask)
    comp[seed] = mask[seed]
    while True:
        grown = comp.copy()
        grown[1:] |= comp[:-1]
        grown[:-1] |= comp[1:]
        grown[:, 1:] |= comp[:, :-1]
        grown[:, :-1] |= comp[:, 1:]
        grown &= mask
        if (grown == comp).all():
            return comp
        comp = grown


def _bar_ends(paddle, length: float) -> list[np.ndarray]:
    (y, x), o = paddle
    return [np.array([y, x], float), np.array([y + length * np.sin(o), x + length * np.cos(o)])]


def _check_sample(s: pf.PathfinderSample, p: pf.PathfinderParams) -> None:
    """Connected (label 1) or not (label 0), from the recorded geometry and our own rendering, not from the
    generator's bookkeeping (``marker_snakes``)."""
    shape, L, m = s.image.shape, p.paddle_length, s.margin
    assert [len(t) for t in s.targets] == [p.contour_length] * 2
    for k, t in enumerate(s.targets):
        # the dashes of one snake form one path: gaps (2m + up to 3 * sqrt(2) of rounding) close under a dilation by
        # m + 3, and no pixel of the snake is left out
        drawn = _raster(shape, t, L)
        start = tuple(np.rint(t[0][0]).astype(int))
        assert (_component(_dilate(drawn, m + 3), start) >= drawn).all(), f"snake {k} is not one dashed path"
        # and it is drawn: the pixel holding the middle of every paddle is lit in the image
        mid = np.array([[y + L / 2 * np.sin(o), x + L / 2 * np.cos(o)] for (y, x), o in t])
        iy, ix = np.rint(mid).astype(int).T
        assert (s.image[iy, ix] > 0).all()
    # which snake, and which end of it (first or last paddle), each marker sits on
    owner = []
    for c in s.markers:
        hits = {(k, end) for k, t in enumerate(s.targets) for end, pd in (("first", t[0]), ("last", t[-1]))
                if min(np.linalg.norm(e - np.asarray(c, float)) for e in _bar_ends(pd, L)) <= 1.0}
        assert len(hits) == 1, f"marker {c} is not at exactly one end of a target snake: {hits}"
        owner.append(hits.pop())
        assert s.image[c] >= 100, "marker not drawn"
    same = owner[0][0] == owner[1][0]
    assert not same or owner[0][1] != owner[1][1], "both markers on the same end"
    assert s.label == int(same)


# ------------------------------------------------------------------------------------------------------- tests
def test_params_follow_the_lra_builders():
    p = pf.params_for(32, "hard")
    assert (p.window_size, p.padding, p.paddle_length, p.marker_radius, p.paddle_thickness, p.seed_distance,
            p.continuity, p.paddle_margin_list, p.snake_contrast_list, p.paddle_contrast_list) == \
        (32, 1, 2, 1.5, 0.5, 7, 1.0, (1,), (2.0,), (0.75,))
    assert (p.contour_length, p.distractor_length, p.num_distractor_snakes) == (14, 4, 5)  # 14 // 3, 20 // 4
    assert [(q.contour_length, q.distractor_length, q.num_distractor_snakes)
            for q in (pf.params_for(32, d) for d in ("easy", "intermediate"))] == [(6, 2, 10), (9, 3, 6)]
    x = pf.params_for(128, "hard")  # Path-X: 35 / (14 / 3) in Python 2 = 35 // 4
    assert (x.paddle_margin_list, x.seed_distance, x.marker_radius, x.paddle_thickness, x.continuity,
            x.distractor_length, x.num_distractor_snakes, x.snake_contrast_list) == \
        ((2, 3), 20, 3.0, 1.5, 1.8, 4, 8, (0.9,))
    assert pf.params_for(64, "hard").num_distractor_snakes == 22 // 4


@pytest.mark.parametrize("res", [32, 64, 128])
def test_images_in_range_and_size(res):
    s = pf.generate(pf.params_for(res, "easy"), np.random.default_rng(3))
    assert s.image.dtype == np.uint8 and s.image.shape == (res, res)
    assert s.image.max() == 255 and s.image.min() == 0  # min-max scaled as scipy's imsave did
    assert 0.01 < (s.image > 0).mean() < 0.5  # sparse dashes on black


def test_generator_is_deterministic_by_seed():
    p = pf.params_for(32, "easy")
    a = [pf.generate(p, np.random.default_rng(7)) for _ in range(2)]
    b = pf.generate(p, np.random.default_rng(8))
    assert np.array_equal(a[0].image, a[1].image) and a[0].label == a[1].label and a[0].markers == a[1].markers
    assert not np.array_equal(a[0].image, b.image)


@pytest.mark.parametrize("res,difficulty,n", [(32, "easy", 16), (32, "hard", 4), (128, "easy", 2)])
def test_connected_or_not_checked_independently(res, difficulty, n):
    p = pf.params_for(res, difficulty)
    rng = np.random.default_rng(11)
    for i in range(n):
        s = pf.generate(p, rng, label=i % 2)
        assert s.label == i % 2
        _check_sample(s, p)


def test_check_catches_a_wrong_label():
    """The independent check fails when the label is flipped (so it is not vacuous)."""
    p = pf.params_for(32, "easy")
    s = pf.generate(p, np.random.default_rng(5))
    _check_sample(s, p)
    with pytest.raises(AssertionError):
        _check_sample(replace(s, label=1 - s.label), p)


def test_written_folder_is_balanced_and_in_the_released_layout(tmp_path):
    out = pf.write_folder(tmp_path / "pathfinder32" / "curv_baseline", pf.params_for(32, "easy"), n=14, seed=0,
                          batch_size=6)
    metas = sorted(p.name for p in (out / "metadata").iterdir())
    assert metas == ["0.npy", "1.npy", "2.npy"]
    lines = (out / "metadata" / "1.npy").read_text().splitlines()
    assert len(lines) == 6 and lines[0].split(" ")[:3] == ["imgs/1", "sample_0.png", "0"]
    assert lines[0].split(" ")[4:8] == ["1.0", "6", "2", "2"]  # continuity, contour, distractor, paddle length
    rows = [r for m in ("0.npy", "1.npy", "2.npy") for r in pf.read_metadata(out / "metadata" / m)]
    assert sum(r[2] for r in rows) == 7  # 3 + 3 + 1 positives: balanced in every batch
    with Image.open(out / "imgs" / "2" / "sample_1.png") as im:
        assert im.mode == "L" and im.size == (32, 32)
    again = pf.write_folder(tmp_path / "again", pf.params_for(32, "easy"), n=14, seed=0, batch_size=6)
    assert (again / "imgs/2/sample_1.png").read_bytes() == (out / "imgs/2/sample_1.png").read_bytes()


def _fake_release(root: Path, res: int = 32) -> tuple[Path, list[tuple[np.ndarray, int]]]:
    """A hand-made folder in the released layout: metadata/0, 2, 10 (read in numeric order), one empty PNG."""
    where = root / f"pathfinder{res}" / "curv_contour_length_14"
    rng = np.random.default_rng(0)
    examples = []
    for b, count in ((0, 8), (2, 8), (10, 4)):  # 20 images: train 16, val 2, test 2 (10 after 2: numeric order)
        (where / "imgs" / str(b)).mkdir(parents=True)
        lines = []
        for k in range(count):
            img = rng.integers(0, 256, (res, res), dtype=np.uint8)
            label = int(rng.integers(2))
            Image.fromarray(img, mode="L").save(where / "imgs" / str(b) / f"sample_{k}.png")
            lines.append(f"imgs/{b} sample_{k}.png {k} {label} 1.0 14 4 2 0.5 1 1\n")
            examples.append((img, label))
        (where / "metadata").mkdir(exist_ok=True)
        (where / "metadata" / f"{b}.npy").write_text("".join(lines))
    (where / "imgs" / "0" / "sample_3.png").write_bytes(b"")  # an empty image (train split): dropped
    examples[3] = (None, examples[3][1])
    return where, examples


def test_reader_splits_parses_and_filters(tmp_path):
    _, ex = _fake_release(tmp_path)
    x, y = pf.load_split(tmp_path, "train", 1024)  # defaults: resolution 32, hard
    kept = [e for e in ex[:16] if e[0] is not None]
    assert x.shape == (15, 1024) and x.dtype == torch.int64 and y.dtype == torch.int64
    assert torch.equal(x, torch.from_numpy(np.stack([e[0].reshape(-1) for e in kept]).astype(np.int64)) + 1)
    assert y.tolist() == [e[1] for e in kept]
    for split, sl in (("val", slice(16, 18)), ("test", slice(18, 20))):
        xs, ys = pf.load_split(tmp_path, split, 1024, official_zero_pad=True)  # ids = intensities, 0 = padding
        assert torch.equal(xs, torch.from_numpy(np.stack([e[0].reshape(-1) for e in ex[sl]]).astype(np.int64)))
        assert ys.tolist() == [e[1] for e in ex[sl]]


def test_reader_reads_generated_folder(tmp_path):
    root = tmp_path / "lra" / "pathfinder"
    assert prepare_data(["pathfinder", "--generate", "--resolution", "32", "--difficulty", "easy", "--n", "10",
                        "--seed", "1", "--data-dir", str(tmp_path)]) == 0
    sizes = {s: pf.load_split(root, s, 1024, difficulty="easy") for s in ("train", "val", "test")}
    assert {s: len(v[1]) for s, v in sizes.items()} == {"train": 8, "val": 1, "test": 1}
    assert sum(int(v[1].sum()) for v in sizes.values()) == 5
    x = sizes["train"][0]
    assert x.min() >= 1 and x.max() == 256  # intensity + 1
    assert prepare_data(["pathfinder", "--data-dir", str(tmp_path)]) == 2  # without --generate: says where


def test_errors_name_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"lra_release/pathfinder64/.*\n.*prepare_data.py pathfinder --generate"):
        pf.load_split(tmp_path, "train", 4096, resolution=64)
    with pytest.raises(ValueError, match="allowed: 32, 64, 128"):
        pf.load_split(tmp_path, "train", 1024, resolution=48)
    with pytest.raises(ValueError, match="allowed: easy, intermediate, hard"):
        pf.load_split(tmp_path, "train", 1024, difficulty="extreme")
    with pytest.raises(ValueError, match="data.max_len=16384"):
        pf.load_split(tmp_path, "train", 1024, resolution=128)
    with pytest.raises(ValueError, match="allowed: train, val, test"):
        pf.load_split(tmp_path, "dev", 1024)
    bad = tmp_path / "pathfinder32" / "curv_contour_length_14" / "metadata"
    bad.mkdir(parents=True)
    (bad / "0.npy").write_text("imgs/0 sample_0.png 0\n")
    with pytest.raises(DataError, match="line 1 is not 'dir file index label"):
        pf.load_split(tmp_path, "train", 1024)
