"""LRA Pathfinder and Path-X: are the two marker dots joined by one dashed curve? A seeded generator and a reader.

**Reader** (``load_split``). The released data (``lra_release/pathfinder32``, ``pathfinder64``, ``pathfinder128``)
holds, per difficulty folder (easy = ``curv_baseline``, intermediate = ``curv_contour_length_9``, hard =
``curv_contour_length_14``), PNG images ``imgs/<batch>/sample_<i>.png`` and text metadata ``metadata/<batch>.npy``
(despite the suffix: one line per image, space-separated ``dir file index label ...``, label = 4th field). As in the
official TFDS builder and input pipeline (long-range-arena ``lra_benchmarks/data/pathfinder.py``,
``image/input_pipeline.py``): every line of every metadata file is one example; the folder is cut 80/10/10 % into
train/val/test (boundary ``round(p * N / 100)``); empty (0-byte) PNGs are then dropped from each split; pixel
intensities 0..255 are the tokens; one image = ``resolution**2`` tokens (1024 / 4096 / 16384) in row-major order.
Deviation: TFDS orders the examples by a hash of their keys before cutting; we cut in file order (metadata files by
batch number, lines as written), so the splits have the official sizes but not the official membership.
Layout: ``root`` = ``<data_dir>/lra/pathfinder`` holds ``pathfinder32/``, ``pathfinder64/``, ``pathfinder128/`` as
released (copy or link them from ``lra_release``), or as written by
``python scripts/prepare_data.py pathfinder --generate --resolution R --difficulty D --data-dir DATA_DIR``.

Token ids. The official pipeline feeds the intensity itself and masks keys with ``inputs > 0``, so every black pixel
is treated as padding. ``official_zero_pad=True`` reproduces that (ids 0..255, black = PAD_ID). The default
(``official_zero_pad=False``) shifts ids by one (intensity + 1, ids 1..256) so no pixel is masked; ``vocab_size`` =
257 covers both.

**Generator** (``generate`` / ``write_folder``). A numpy re-implementation, measured against drewlinsley/pathfinder
(``snakes2.py``, ``snakes.py``, ``snakes2_wrapper.py``) as configured in the LRA builder docstrings; the algorithm:

1. label ~ Bernoulli(1/2); paddle margin m drawn from ``paddle_margin_list``.
2. Two seed paddles: the first tail uniform among free pixels at least ``2 * seed_distance`` from the border (the
   whole dilated paddle must fit there), orientation uniform in whole degrees; the second tail at distance
   ``seed_distance`` from the first, direction uniform in whole degrees; each retried up to 3 times (
   ``max_paddle_retrial = 2``) while the paddle's head or pivot falls outside the image, else the image restarts.
3. Both snakes grow alternately, ``contour_length - 1`` more paddles each: the next pivot lies ``L + 2m`` beyond the
   last pivot along the last orientation; candidate heads are the integer points of the circle of radius ``L + m``
   around it (one per pixel of arc), weighted by ``cos(min(continuity * turn, pi/2))**2`` times the free fraction of
   the margin-dilated occupancy mask there; up to 3 draws; a paddle is accepted if its margin-dilated footprint plus
   the occupancy stays below 1.8; failure restarts the image. Pivots are rounded up and heads truncated to integers
   as in the original, so the gap between dashes is 2m plus up to ~4 px of rounding. A paddle enters the occupancy
   mask only once the next paddle of its snake is placed (so a snake may bend close to itself), as in the original.
   Deviation: the original checks a target paddle only against that mask, so the newest paddle of the other target
   snake (not yet in it) can be overlapped -- the two snakes then touch and a label-0 image shows a connected pair
   (3 % of 32-px easy images with that rule, by our check); we also check against the other snake's newest paddle.
4. ``num_distractor_snakes`` distractor snakes of ``distractor_length`` paddles, seeded anywhere free (1-px border),
   each retried up to 5 times and skipped if it never fits; seeding stops when under 1 % of pixels is free.
5. Markers: discs of radius ``marker_radius``, intensity 1, one at the seed end of a random target snake, the other at
   the far end of the same snake (label 1) or of the other one (label 0) -- both classes show two markers at snake
   ends, so counting cannot solve the task.
6. Target paddles have intensity ``paddle_contrast * snake_contrast``, distractors ``snake_contrast``; the image is
   min-max scaled to 0..255 and rounded: the release was saved with ``scipy.misc.imsave``, which byte-scales a float
   image from its min to its max (the repository's 2026 PIL port, commit f12b747, no longer does).

Rasterisation: paddles are PIL-style lines (a rectangle ``L`` long, ``paddle_thickness`` wide, flat ends), discs are
exact; pixel values are area coverage from ``supersample**2`` sub-pixel samples (the original draws at
``antialias_scale`` and downsamples with Lanczos; we box-filter instead, so ringing is absent and the occupancy mask is
the coverage of the paddle dilated by m).

Parameters (``params_for``): per resolution from the LRA builder docstrings; the rest from ``snakes2_wrapper.py``.
Where we guess (the released folders do not record these):

- ``paddle_length`` at 64 and 128: not set by the builder, so the wrapper's ``Args`` default 5 (32: 2, set).
- ``paddle_contrast_list`` at 64 and 128: the default ``[1.0]`` (32: ``[0.75]``, set).
- ``use_single_paddles=False`` (the wrapper's script-level value; the builders list only changes to that script, so
  the 256 builder's list is exactly the wrapper's settings). ``max_*_retrial`` are the ``Args`` defaults (4, 4, 2).
- 64 and 128 write ``contour_length / 3`` and ``N / distractor_length``; the code is Python 2 (its committed
  ``snakes2.pyc`` has the 2.7 magic number, dated May 2019), so
  these are floor divisions: ``distractor_length = contour_length // 3``,
  ``num_distractor_snakes = N // distractor_length`` with N = 20 / 22 / 35 for 32 / 64 / 128.
- Per difficulty (``contour_length`` 6 / 9 / 14) we recompute both formulas; the wrapper's loop updates
  ``distractor_length`` but leaves ``num_distractor_snakes`` at its first value, and which first value the released
  data used is unknown. ``antialias_scale`` is 2 everywhere (the builders overwrite 4 with 2).
- The original leaves the last paddle of the first target snake out of the occupancy mask before distractors are
  drawn (only the second snake's is added); we add both, so distractors never touch a target end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from attnbench.data.catalog.lra import LRA_TASKS
from attnbench.data.download import DataError
from attnbench.data.lra.common import SPLITS

INFO = LRA_TASKS["pathfinder"]  # the facts live in data.catalog.lra

RESOLUTIONS = (32, 64, 128)
DIFFICULTIES = {"easy": "curv_baseline", "intermediate": "curv_contour_length_9", "hard": "curv_contour_length_14"}
CONTOUR_LENGTH = {"easy": 6, "intermediate": 9, "hard": 14}
SPLIT_PCT = {"train": (0, 80), "val": (80, 90), "test": (90, 100)}


@dataclass(frozen=True)
class PathfinderParams:
    """The generator's arguments (drewlinsley/pathfinder names; lengths in pixels of the final image)."""

    window_size: int
    padding: int = 1  # border kept free of paddles
    paddle_length: int = 5  # L
    paddle_thickness: float = 1.5
    paddle_margin_list: tuple[int, ...] = (4,)  # m, drawn once per image; gap between paddles = 2m
    marker_radius: float = 3.0
    seed_distance: int = 27  # between the two target snakes' starting tails
    contour_length: int = 14  # paddles per target snake
    distractor_length: int = 4  # paddles per distractor snake
    num_distractor_snakes: int = 5
    continuity: float = 1.4  # turn penalty: cos(min(continuity * turn, pi/2))**2
    snake_contrast_list: tuple[float, ...] = (1.0,)
    paddle_contrast_list: tuple[float, ...] = (1.0,)
    max_distractor_contour_retrial: int = 4
    max_paddle_retrial: int = 2
    supersample: int = 4  # sub-pixel samples per axis for anti-aliasing (ours; the original: antialias_scale 2)


_N_DISTRACTOR_PADDLES = {32: 20, 64: 22, 128: 35}
_BASE = {
    32: dict(paddle_margin_list=(1,), padding=1, paddle_length=2, marker_radius=1.5, paddle_thickness=0.5,
             seed_distance=7, continuity=1.0, snake_contrast_list=(2.0,), paddle_contrast_list=(0.75,)),
    64: dict(paddle_margin_list=(1,), padding=1, paddle_length=5, marker_radius=2.5, paddle_thickness=1.0,
             seed_distance=12, continuity=1.8, snake_contrast_list=(0.8,)),
    128: dict(paddle_margin_list=(2, 3), padding=1, paddle_length=5, marker_radius=3.0, paddle_thickness=1.5,
              seed_distance=20, continuity=1.8, snake_contrast_list=(0.9,)),
}


def params_for(resolution: int, difficulty: str) -> PathfinderParams:
    """The LRA generator settings for one resolution (32, 64, 128) and difficulty (easy, intermediate, hard)."""
    _check(resolution, difficulty)
    cl = CONTOUR_LENGTH[difficulty]
    dl = cl // 3
    return PathfinderParams(window_size=resolution, contour_length=cl, distractor_length=dl,
                            num_distractor_snakes=_N_DISTRACTOR_PADDLES[resolution] // dl, **_BASE[resolution])


def seq_len(resolution: int) -> int:
    """Tokens per image: one per pixel (1024, 4096, 16384)."""
    return resolution * resolution


def _check(resolution: int, difficulty: str) -> None:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"pathfinder: resolution={resolution!r}; allowed: {', '.join(map(str, RESOLUTIONS))}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"pathfinder: difficulty={difficulty!r}; allowed: {', '.join(DIFFICULTIES)}")


# ------------------------------------------------------------------------------------------------- rasterisation
def _subpixel(n: int, ss: int) -> np.ndarray:
    """Sub-pixel sample coordinates of pixels 0..n-1 (pixel i covers [i - 0.5, i + 0.5])."""
    return (np.arange(n * ss) + 0.5) / ss - 0.5


def _coverage(shape: tuple[int, int], box: tuple[int, int, int, int], inside, ss: int):
    """Area coverage of shapes on the pixels of ``box`` = (y0, y1, x0, x1) clipped to ``shape``.

    ``inside(y, x) -> bool array or tuple of them`` takes sub-pixel coordinates; returns (slices, [coverage (h, w)
    per shape]) or None when the box is off the image."""
    y0, y1 = max(box[0], 0), min(box[1], shape[0])
    x0, x1 = max(box[2], 0), min(box[3], shape[1])
    if y0 >= y1 or x0 >= x1:
        return None
    ys = _subpixel(y1 - y0, ss)[:, None] + y0  # (h*ss, 1)
    xs = _subpixel(x1 - x0, ss)[None, :] + x0  # (1, w*ss)
    hits = inside(ys, xs)
    hits = hits if isinstance(hits, tuple) else (hits,)
    covs = [h.reshape(y1 - y0, ss, x1 - x0, ss).mean(axis=(1, 3), dtype=np.float32) for h in hits]  # (h, w) each
    return (slice(y0, y1), slice(x0, x1)), covs


def paddle(shape: tuple[int, int], start, orientation: float, length: float, thickness: float, dilate: float = 0.0,
           ss: int = 4):
    """Coverage of a paddle: a ``thickness``-wide, ``length``-long bar from ``start`` (y, x) along ``orientation``
    (radians; y down), flat ends (PIL's ``line``), and of the same bar grown by ``dilate`` pixels in every direction
    (round corners). Returns (slices, [bar coverage, grown coverage]) or None when off the image."""
    dy, dx = np.sin(orientation), np.cos(orientation)
    ay, ax = float(start[0]), float(start[1])
    ey, ex = ay + length * dy, ax + length * dx
    r = thickness / 2 + dilate + 1
    box = (int(np.floor(min(ay, ey) - r)), int(np.ceil(max(ay, ey) + r)) + 1,
           int(np.floor(min(ax, ex) - r)), int(np.ceil(max(ax, ex) + r)) + 1)

    def inside(ys, xs):
        u = (ys - ay) * dy + (xs - ax) * dx  # along the bar
        v = np.abs((xs - ax) * dy - (ys - ay) * dx)  # across
        du = np.maximum(np.maximum(-u, u - length), 0.0)
        dv = np.maximum(v - thickness / 2, 0.0)
        return (du == 0) & (dv == 0), du**2 + dv**2 <= dilate**2

    return _coverage(shape, box, inside, ss)


def disc(shape: tuple[int, int], center, radius: float, ss: int = 4):
    """Coverage of a disc of ``radius`` pixels centred on pixel ``center`` (y, x)."""
    cy, cx = float(center[0]), float(center[1])
    box = (int(np.floor(cy - radius)) - 1, int(np.ceil(cy + radius)) + 2,
           int(np.floor(cx - radius)) - 1, int(np.ceil(cx + radius)) + 2)
    return _coverage(shape, box, lambda ys, xs: (ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2, ss)


def _stamp(canvas: np.ndarray, sl, cov: np.ndarray, value: float = 1.0) -> None:
    """canvas[sl] = max(canvas[sl], value * cov) (in place)."""
    np.maximum(canvas[sl], value * cov, out=canvas[sl])


def _translate(coord, orientation: float, dist: float) -> tuple[int, int]:
    """Move (y, x) by ``dist`` along ``orientation``, rounding up to integers (as the original)."""
    return (int(np.ceil(coord[0] + dist * np.sin(orientation))), int(np.ceil(coord[1] + dist * np.cos(orientation))))


def _flip(orientation: float) -> float:
    return orientation + np.pi if orientation < 0 else orientation - np.pi


# ----------------------------------------------------------------------------------------------------- geometry
@dataclass
class _Snake:
    """One growing snake: its paddles ((y, x) start, orientation) and the state needed to extend it."""

    contrast: float
    paddles: list = field(default_factory=list)  # [(start (y, x), orientation)]
    pivot: tuple[int, int] = (0, 0)
    orientation: float = 0.0
    pending: tuple | None = None  # (slices, dilated coverage) of the last paddle, not yet in the occupancy
    tip: tuple[int, int] = (0, 0)  # the far end (last head)
    origin: tuple[int, int] = (0, 0)  # the seed tail


class _Canvas:
    """The image being drawn, its occupancy mask and the drawing parameters of one image."""

    def __init__(self, p: PathfinderParams, margin: int, rng: np.random.Generator):
        self.p, self.m, self.rng = p, margin, rng
        n = p.window_size
        self.shape = (n, n)
        self.image = np.zeros(self.shape, np.float32)
        self.mask = np.zeros(self.shape, np.float32)
        pad = p.padding
        self.mask[:pad], self.mask[-pad:], self.mask[:, :pad], self.mask[:, -pad:] = 1, 1, 1, 1
        # integer offsets of a disc of radius m (the occupancy is dilated by it before choosing heads)
        oy, ox = np.mgrid[-margin:margin + 1, -margin:margin + 1]
        keep = oy**2 + ox**2 <= margin**2
        self.disc_offsets = np.stack([oy[keep], ox[keep]], 1)  # (K, 2)

    def draw(self, start, orientation: float):
        """(slices, bar coverage, margin-dilated coverage) of one paddle starting on the image."""
        p = self.p
        sl, (line, dmask) = paddle(self.shape, start, orientation, p.paddle_length, p.paddle_thickness, self.m,
                                   ss=p.supersample)
        return sl, line, dmask

    def inside(self, c) -> bool:
        return 0 <= c[0] < self.shape[0] and 0 <= c[1] < self.shape[1]

    def free_tails(self, blocked: np.ndarray, orientation: float) -> np.ndarray:
        """Pixels from which a paddle along ``orientation`` has its fully covered dilated footprint on free pixels
        (``blocked`` <= 0.3 there); returns (n, 2) integer (y, x)."""
        p, n = self.p, self.shape[0]
        r = p.paddle_length + int(np.ceil(p.paddle_thickness)) + self.m + 1
        sl, (_, fp) = paddle((2 * r + 1, 2 * r + 1), (r, r), orientation, p.paddle_length, p.paddle_thickness,
                             self.m, ss=p.supersample)
        offsets = np.argwhere(fp >= 0.999) + (sl[0].start - r, sl[1].start - r)  # (K, 2)
        occ = np.pad(blocked > 0.3, r, constant_values=False)
        hit = np.zeros(self.shape, bool)
        for dy, dx in offsets:
            hit |= occ[r + dy:r + dy + n, r + dx:r + dx + n]
        return np.argwhere(~hit)

    def seed(self, snake: _Snake, tail, orientation: float) -> bool:
        """Place the first paddle of ``snake`` at integer ``tail``; False if its head or pivot leaves the image."""
        head = _translate(tail, orientation, self.p.paddle_length)
        pivot = _translate(head, _flip(orientation), self.p.paddle_length + self.m)
        if not (self.inside(head) and self.inside(pivot)):
            return False
        sl, line, dmask = self.draw(tail, orientation)
        _stamp(self.image, sl, line, snake.contrast)
        snake.paddles.append(((int(tail[0]), int(tail[1])), float(orientation)))
        snake.pivot, snake.orientation, snake.pending = pivot, float(orientation), (sl, dmask)
        snake.origin = snake.tip = (int(tail[0]), int(tail[1]))
        return True

    def extend(self, snake: _Snake, others: tuple[_Snake, ...] = ()) -> bool:
        """Add one paddle to ``snake`` (continuity-weighted, collision-free, also with the last paddles of
        ``others``); False at a dead end."""
        p, m, rng = self.p, self.m, self.rng
        occupied = self.mask
        if any(o.pending is not None for o in others):
            occupied = self.mask.copy()
            for o in others:
                if o.pending is not None:
                    _stamp(occupied, *o.pending)
        step = p.paddle_length + m
        pivot = _translate(snake.pivot, snake.orientation, p.paddle_length + 2 * m)
        # candidate heads: one per pixel of arc on the circle of radius L + m around the new pivot
        angles = np.deg2rad(np.arange(0, 360, 360.0 / (2 * step * np.pi)))
        ys, xs = pivot[0] + step * np.sin(angles), pivot[1] + step * np.cos(angles)
        ok = (ys >= 0) & (ys < self.shape[0]) & (xs >= 0) & (xs < self.shape[1])
        if not ok.any():
            return False
        n = self.shape[1]
        keys = np.unique(ys[ok].astype(int) * n + xs[ok].astype(int))  # truncation as the original; sorted (y, x)
        coords = np.stack([keys // n, keys % n], 1)  # (C, 2)
        disp = coords - np.asarray(pivot)
        orient = np.arctan2(disp[:, 0], disp[:, 1])
        turn = np.abs(orient - snake.orientation)
        turn = np.minimum(turn, 2 * np.pi - turn)
        weight = np.cos(np.minimum(turn * p.continuity, np.pi / 2)).clip(min=0) ** 2
        # margin-dilated occupancy at each candidate
        nb = coords[:, None, :] + self.disc_offsets[None]  # (C, K, 2)
        valid = (nb >= 0).all(-1) & (nb[..., 0] < self.shape[0]) & (nb[..., 1] < self.shape[1])
        nb = np.where(valid[..., None], nb, 0)
        dil = np.where(valid, occupied[nb[..., 0], nb[..., 1]], 0.0).max(1)  # (C,)
        pmf = weight * (1 - dil)
        if pmf.sum() < 1e-4:
            return False
        cmf = np.cumsum(pmf / pmf.sum())
        for _ in range(p.max_paddle_retrial + 1):
            k = min(int(np.searchsorted(cmf, rng.random(), side="right")), len(cmf) - 1)
            head, o = (int(coords[k, 0]), int(coords[k, 1])), float(orient[k])
            start_o = _flip(o)
            sl, line, dmask = self.draw(head, start_o)
            if (occupied[sl] + dmask).max() < 1.8:
                _stamp(self.image, sl, line, snake.contrast)
                self.settle(snake)
                snake.paddles.append((head, start_o))
                snake.pivot, snake.orientation, snake.pending, snake.tip = pivot, o, (sl, dmask), head
                return True
        return False

    def settle(self, snake: _Snake) -> None:
        """Put the snake's last paddle into the occupancy mask."""
        if snake.pending is not None:
            _stamp(self.mask, *snake.pending)
            snake.pending = None


def _two_snakes(p: PathfinderParams, margin: int, rng: np.random.Generator):
    """The two target snakes on a fresh canvas, or None when a seed or a paddle does not fit."""
    cv = _Canvas(p, margin, rng)
    mus = list(p.snake_contrast_list) * 2
    rng.shuffle(mus)
    snakes = []
    for i in range(2):
        contrast = p.paddle_contrast_list[int(rng.integers(len(p.paddle_contrast_list)))] * mus[i]
        snakes.append(_Snake(contrast=contrast))
    # first seed: anywhere the paddle fits at least 2 * seed_distance from the border
    for _ in range(p.max_paddle_retrial + 1):
        o1 = np.deg2rad(rng.integers(-180, 180))
        lined = cv.mask.copy()
        b = 2 * p.seed_distance
        lined[:b], lined[-b:], lined[:, :b], lined[:, -b:] = 1, 1, 1, 1
        free = cv.free_tails(lined, o1)
        if len(free) == 0:
            return None
        tail1 = free[rng.integers(len(free))]
        if cv.seed(snakes[0], tail1, o1):
            break
    else:
        return None
    # second seed: seed_distance away in a random direction
    for _ in range(p.max_paddle_retrial + 1):
        o2 = np.deg2rad(rng.integers(-180, 180))
        a = np.deg2rad(rng.integers(0, 360))
        tail2 = (int(np.round(tail1[0] + p.seed_distance * np.sin(a))), int(np.round(tail1[1] + p.seed_distance
                                                                                      * np.cos(a))))
        if cv.inside(tail2) and cv.seed(snakes[1], tail2, o2):
            break
    else:
        return None
    for _ in range(p.contour_length - 1):
        for i, s in enumerate(snakes):
            if not cv.extend(s, others=(snakes[1 - i],)):
                return None
    for s in snakes:
        cv.settle(s)
    return cv, snakes


def _distractor(cv: _Canvas, contrast: float) -> _Snake | None:
    """One distractor snake drawn onto ``cv`` (image and mask restored when it does not fit)."""
    p, rng = cv.p, cv.rng
    if (cv.mask <= 0.3).mean() < 0.01:  # stop_with_availability
        return None
    image, mask = cv.image.copy(), cv.mask.copy()
    snake = _Snake(contrast=contrast)
    for _ in range(p.max_paddle_retrial + 1):
        o = np.deg2rad(rng.integers(-180, 180))
        lined = cv.mask.copy()
        lined[0], lined[-1], lined[:, 0], lined[:, -1] = 1, 1, 1, 1
        free = cv.free_tails(lined, o)
        if len(free) == 0:
            return None
        if cv.seed(snake, free[rng.integers(len(free))], o):
            break
    else:
        return None
    for _ in range(p.distractor_length - 1):
        if not cv.extend(snake):
            cv.image, cv.mask = image, mask
            return None
    cv.settle(snake)
    return snake


@dataclass
class PathfinderSample:
    """One image and what made it: uint8 (n, n) image, label, the snakes' paddles and the two marker centres."""

    image: np.ndarray
    label: int
    margin: int
    targets: list  # two lists of paddles [((y, x) start, orientation)], seed end first
    distractors: list
    markers: tuple  # ((y, x), (y, x)): a seed end, then a far end
    marker_snakes: tuple  # (i, j): which target snake each marker ends


def generate(p: PathfinderParams, rng: np.random.Generator, label: int | None = None) -> PathfinderSample:
    """One Pathfinder image (``label`` drawn fair when None)."""
    if label is None:
        label = int(rng.integers(2))
    margin = int(p.paddle_margin_list[int(rng.integers(len(p.paddle_margin_list)))])
    while (made := _two_snakes(p, margin, rng)) is None:
        pass
    cv, snakes = made
    distractors = []
    for _ in range(p.num_distractor_snakes):
        contrast = p.snake_contrast_list[int(rng.integers(len(p.snake_contrast_list)))]
        for _ in range(p.max_distractor_contour_retrial + 1):
            if (d := _distractor(cv, contrast)) is not None:
                distractors.append(d.paddles)
                break
    i = int(rng.integers(2))
    j = i if label == 1 else 1 - i
    markers = (snakes[i].origin, snakes[j].tip)
    image = cv.image
    for c in markers:
        sl, (cov,) = disc(cv.shape, c, p.marker_radius, ss=p.supersample)
        _stamp(image, sl, cov)
    lo, hi = float(image.min()), float(image.max())
    scaled = np.clip((image - lo) * (255.0 / max(hi - lo, 1e-12)) + 0.5, 0, 255).astype(np.uint8)  # bytescale
    return PathfinderSample(image=scaled, label=label, margin=margin, targets=[s.paddles for s in snakes],
                            distractors=distractors, markers=markers, marker_snakes=(i, j))


# ---------------------------------------------------------------------------------------------- on-disk layout
def _write_batch(out: Path, p: PathfinderParams, b: int, n: int, seed: int) -> int:
    """Images ``imgs/<b>/sample_0..n-1.png`` and their ``metadata/<b>.npy`` lines; returns the number of positives."""
    from PIL import Image

    rng = np.random.default_rng([seed, p.window_size, p.contour_length, b])  # one stream per batch and folder
    labels = rng.permutation(np.arange(n) % 2)  # balanced: n // 2 negatives, the rest positives
    sub = f"imgs/{b}"
    (out / sub).mkdir(parents=True, exist_ok=True)
    lines = []
    for k in range(n):
        s = generate(p, rng, label=int(labels[k]))
        Image.fromarray(s.image, mode="L").save(out / sub / f"sample_{k}.png")
        lines.append(f"{sub} sample_{k}.png {k} {s.label} {p.continuity} {p.contour_length} {p.distractor_length} "
                     f"{p.paddle_length} {p.paddle_thickness} {s.margin} {len(p.paddle_contrast_list)}\n")
    (out / "metadata").mkdir(parents=True, exist_ok=True)
    (out / "metadata" / f"{b}.npy").write_text("".join(lines))
    return int(labels.sum())


def write_folder(out: Path, p: PathfinderParams, n: int, seed: int, batch_size: int = 1000, workers: int = 1) -> Path:
    """Write ``n`` images in the released layout under ``out`` (a difficulty folder such as
    ``.../pathfinder32/curv_contour_length_14``): ``imgs/<b>/sample_<k>.png`` and text ``metadata/<b>.npy`` with
    lines ``imgs/<b> sample_<k>.png <k> <label> <continuity> <contour_length> <distractor_length> <paddle_length>
    <paddle_thickness> <margin> <n_paddle_contrasts>`` (the original's fields). Batch b is drawn from the seed
    sequence (seed, b), so the output does not depend on ``workers``; labels are balanced within each batch."""
    out = Path(out)
    jobs = [(out, p, b, min(batch_size, n - b * batch_size), seed) for b in range((n + batch_size - 1) // batch_size)]
    if workers > 1:
        from multiprocessing import get_context

        with get_context("spawn").Pool(workers) as pool:
            pool.starmap(_write_batch, jobs)
    else:
        for job in jobs:
            _write_batch(*job)
    return out


def folder(root: Path, resolution: int, difficulty: str) -> Path:
    """Where one difficulty of one resolution lives: ``<root>/pathfinder<res>/<curv_...>``."""
    _check(resolution, difficulty)
    return Path(root) / f"pathfinder{resolution}" / DIFFICULTIES[difficulty]


def _how_to_get(root: Path, resolution: int, difficulty: str) -> str:
    return (f"  copy (or link) the released lra_release/pathfinder{resolution}/ folder to {Path(root)}/"
            f"pathfinder{resolution}/\n"
            f"  or generate one: python scripts/prepare_data.py pathfinder --generate --resolution {resolution} "
            f"--difficulty {difficulty} --data-dir DATA_DIR   (root = DATA_DIR/lra/pathfinder)")


def read_metadata(path: Path) -> list[tuple[str, str, int]]:
    """(dir, file, label) per line of one metadata file (label = 4th field)."""
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        f = line.split(" ")
        if len(f) < 4 or f[3] not in ("0", "1"):
            raise DataError(f"pathfinder: {path} line {n} is not 'dir file index label ...' with label 0/1: {line!r}")
        rows.append((f[0], f[1], int(f[3])))
    return rows


def _batch_number(path: Path) -> tuple[int, str]:
    return (int(path.stem), "") if path.stem.isdigit() else (1 << 62, path.stem)


def split_rows(rows: list, split: str) -> list:
    """The official percent cut of ``rows`` (before empty images are dropped)."""
    if split not in SPLIT_PCT:
        raise ValueError(f"pathfinder: split={split!r}; allowed: {', '.join(SPLITS)}")
    lo, hi = SPLIT_PCT[split]
    n = len(rows)
    return rows[int(round(lo * n / 100)):int(round(hi * n / 100))]


def load_split(root: Path, split: str, max_len: int, limit: int | None = None, resolution: int = 32,
               difficulty: str = "hard", official_zero_pad: bool = False) -> tuple[Tensor, Tensor]:
    """Tokens int64 (N, resolution**2) and labels int64 (N,) of one split of one difficulty folder.

    ``max_len`` must equal ``resolution**2`` (1024 / 4096 / 16384). Ids: intensity + 1 (default) or, with
    ``official_zero_pad``, the intensity itself so black pixels are PAD_ID as in the official pipeline."""
    from PIL import Image

    _check(resolution, difficulty)
    if split not in SPLITS:
        raise ValueError(f"pathfinder: split={split!r}; allowed: {', '.join(SPLITS)}")
    if max_len != seq_len(resolution):
        raise ValueError(f"pathfinder: max_len={max_len} but resolution={resolution} gives {seq_len(resolution)} "
                         f"pixel tokens; set data.max_len={seq_len(resolution)}")
    where = folder(root, resolution, difficulty)
    metas = sorted((where / "metadata").glob("*.npy"), key=_batch_number)
    if not metas:
        raise DataError(f"pathfinder: no metadata/*.npy under {where} (resolution={resolution}, "
                        f"difficulty={difficulty})\n{_how_to_get(root, resolution, difficulty)}")
    rows = [r for m in metas for r in read_metadata(m)]
    chosen = split_rows(rows, split)[:limit]  # limit None: all (an empty image dropped below is not replaced)
    pixels = np.empty((len(chosen), resolution * resolution), np.uint8)  # (N, res*res); int64 only at the end
    labels = []
    for d, f, label in chosen:
        path = where / d / f
        if not path.is_file():
            raise DataError(f"pathfinder: {path} is listed in {where / 'metadata'} but missing\n"
                            f"{_how_to_get(root, resolution, difficulty)}")
        if path.stat().st_size == 0:  # the official pipeline drops empty images
            continue
        with Image.open(path) as im:
            px = np.asarray(im.convert("L"))  # (res, res) uint8
        if px.shape != (resolution, resolution):
            raise DataError(f"pathfinder: {path} is {px.shape[1]}x{px.shape[0]}, expected {resolution}x{resolution}")
        pixels[len(labels)] = px.reshape(-1)
        labels.append(label)
    if not labels:
        raise DataError(f"pathfinder: the {split} split of {where} is empty ({len(rows)} images listed)")
    x = torch.from_numpy(pixels[:len(labels)]).to(torch.int64)  # (N, res*res)
    if not official_zero_pad:
        x += 1  # ids 1..256: no pixel equals PAD_ID
    return x, torch.tensor(labels, dtype=torch.int64)

