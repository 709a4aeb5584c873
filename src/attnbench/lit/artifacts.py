"""What a test run leaves beside its metrics: the test set's predictions and a picture of them.

``PredictionArtifacts`` (``callbacks.test_artifacts`` in ``conf/callbacks/default.yaml``) collects what a module's
``test_step`` returns and writes into ``dirpath`` (the run folder):

- forecasting (``{"forecast", "target", "history"}``, each ``(B, ...)``): ``test_predictions.npz`` with
  ``forecast`` and ``target`` ``(N, pred_len, n_targets)`` and ``history`` ``(N, seq_len)`` (the input of the
  last target variable), in the model's (scaled) units; ``test_forecasts.png``: ``n_plot`` windows spread over
  the test set, history, truth and forecast of the last target variable.
- classification (``{"probs" (B, C), "target" (B,)}``): ``test_predictions.npz`` (probs, target),
  ``confusion_matrix.csv`` (rows: true class, columns: predicted) and ``confusion_matrix.png``.

Modules whose ``test_step`` returns nothing are left alone. At most ``max_mb`` of predictions are kept per
process (the npz says how many windows were saved of how many). Under DDP each rank tests its share of the set
(Lightning's ``DistributedSampler``: every ``world_size``-th window, padded with repeats to equal shares); rank 0
gathers the shares and writes one set of files, windows in the test set's order, each once, as a single-process
run does (``merge_ranks``). With ``logger=wandb`` the plots also go into the job's W&B run as images
(``test/forecasts``, ``test/confusion_matrix``; ``lit.wandb_logger.log_images``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DistributedSampler

from attnbench.lit.wandb_logger import log_images

log = logging.getLogger(__name__)


def confusion_matrix(target: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``(n_classes, n_classes)``: row = true class, column = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (target.astype(np.int64), pred.astype(np.int64)), 1)
    return cm


def _figure(**kwargs: Any) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas on savefig

    return Figure(layout="constrained", **kwargs)


def plot_forecasts(history: np.ndarray, target: np.ndarray, forecast: np.ndarray, path: Path,
                   n_plot: int = 4) -> Path:
    """``n_plot`` windows evenly spread over the set: history ``(N, L)``, truth and forecast ``(N, H)``."""
    n = len(target)
    idx = np.unique(np.linspace(0, n - 1, num=min(n_plot, n)).round().astype(int))
    fig = _figure(figsize=(7, 2.2 * len(idx)))
    axes = fig.subplots(len(idx), 1, squeeze=False)[:, 0]
    for ax, i in zip(axes, idx, strict=True):
        seq_len, horizon = history.shape[1], target.shape[1]
        ax.plot(range(-seq_len, 0), history[i], color="0.55", linewidth=1, label="input")
        ax.plot(range(horizon), target[i], color="black", linewidth=1.2, label="truth")
        ax.plot(range(horizon), forecast[i], color="tab:red", linewidth=1.2, label="forecast")
        ax.axvline(0, color="0.8", linewidth=0.8)
        ax.set_title(f"test window {i} of {n}", fontsize=9)
        ax.set_ylabel("value (scaled)")
    axes[-1].set_xlabel("time step (0 = first forecast step)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_confusion(cm: np.ndarray, path: Path) -> Path:
    """Counts in each cell, rows true, columns predicted; colour by the row's fraction (recall)."""
    k = len(cm)
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = _figure(figsize=(max(3.5, 0.55 * k + 2), max(3.0, 0.5 * k + 1.5)))
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for r in range(k):
        for c in range(k):
            ax.text(c, r, str(cm[r, c]), ha="center", va="center", fontsize=8,
                    color="white" if frac[r, c] > 0.5 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def merge_ranks(shares: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], int, int]:
    """Every rank's ``{"arrays": {key: (n, ...)}, "index": (n,), "seen": (m,)}`` (the test-set index of each kept
    row, and of every row seen) as one set: rows in test-set order, a window tested twice (the sampler's padding)
    once; returns (arrays, windows saved, windows seen)."""
    index = np.concatenate([s["index"] for s in shares])
    _, first = np.unique(index, return_index=True)  # sorted by test-set index, first copy of each
    keys = [k for k in shares[0]["arrays"] if all(k in s["arrays"] for s in shares)]
    data = {k: np.concatenate([s["arrays"][k] for s in shares])[first] for k in keys}
    seen = np.unique(np.concatenate([s["seen"] for s in shares]))
    return data, len(first), len(seen)


def _test_indices(trainer: L.Trainer, n: int) -> np.ndarray:
    """The test-set index of this rank's first ``n`` test rows: from Lightning's ``DistributedSampler`` (no
    shuffling in test), else its layout (row ``p`` of rank ``r`` is window ``p * world_size + r``)."""
    loaders = trainer.test_dataloaders
    loader = loaders[0] if isinstance(loaders, list | tuple) and loaders else loaders
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler) and not sampler.shuffle and len(sampler) >= n:
        return np.fromiter(iter(sampler), dtype=np.int64, count=len(sampler))[:n]
    return np.arange(n, dtype=np.int64) * trainer.world_size + trainer.global_rank


class PredictionArtifacts(Callback):
    """Saves the test set's predictions and their plot / confusion matrix (module docstring)."""

    def __init__(self, dirpath: str, n_plot: int = 4, max_mb: float = 64.0) -> None:
        if n_plot < 0:
            raise ValueError(f"callbacks.test_artifacts.n_plot={n_plot} must be >= 0")
        if max_mb <= 0:
            raise ValueError(f"callbacks.test_artifacts.max_mb={max_mb} must be > 0")
        self.dirpath, self.n_plot, self.max_bytes = Path(dirpath), n_plot, max_mb * 2**20
        self._parts: dict[str, list[np.ndarray]] = {}
        self._rows: list[np.ndarray] = []  # the positions (in this process's test order) of the kept rows
        self._bytes, self._seen, self._kept = 0, 0, 0

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._parts, self._rows, self._bytes, self._seen, self._kept = {}, [], 0, 0, 0

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if not isinstance(outputs, dict) or "target" not in outputs:
            return
        arrays = {k: v.detach().float().cpu().numpy() if v.is_floating_point() else v.detach().cpu().numpy()
                  for k, v in outputs.items() if isinstance(v, torch.Tensor)}
        b = len(arrays["target"])
        start, self._seen = self._seen, self._seen + b
        size = sum(a.nbytes for a in arrays.values())
        if self._bytes + size > self.max_bytes:
            return  # counted in _seen, not kept: the npz says so
        self._bytes += size
        self._kept += b
        self._rows.append(np.arange(start, start + b))
        for k, a in arrays.items():
            self._parts.setdefault(k, []).append(a)

    def _gathered(self, trainer: L.Trainer) -> tuple[dict[str, np.ndarray], int, int] | None:
        """This process's predictions, or under DDP every rank's merged on rank 0 (None on the other ranks)."""
        data = {k: np.concatenate(v) for k, v in self._parts.items()}
        self._parts = {}
        if trainer.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
            return (data, self._kept, self._seen) if data else None
        index = _test_indices(trainer, self._seen)
        rows = np.concatenate(self._rows) if self._rows else np.zeros(0, dtype=np.int64)
        share = {"arrays": data, "index": index[rows], "seen": index}
        shares: list[Any] | None = [None] * trainer.world_size if trainer.global_rank == 0 else None
        dist.gather_object(share, shares, dst=0)  # every rank takes part, also one that kept nothing
        if shares is None or not any(s["arrays"] for s in shares):
            return None
        return merge_ranks([s for s in shares if s["arrays"]])

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        gathered = self._gathered(trainer)
        if gathered is None:
            return
        data, kept, seen = gathered
        self.dirpath.mkdir(parents=True, exist_ok=True)
        npz = self.dirpath / "test_predictions.npz"
        np.savez_compressed(npz, **data, windows_saved=kept, windows_total=seen)
        if kept < seen:
            log.warning("test predictions: kept %d of %d (callbacks.test_artifacts.max_mb=%g%s)", kept, seen,
                        self.max_bytes / 2**20, " per process" if trainer.world_size > 1 else "")
        written = [npz]
        images: dict[str, Path] = {}  # W&B key -> plot, for the W&B run (logger=wandb)
        if "forecast" in data and self.n_plot:
            # (N, H, n_targets) -> the last target variable, (N, H)
            images["test/forecasts"] = plot_forecasts(data["history"], data["target"][..., -1],
                                                      data["forecast"][..., -1], self.dirpath / "test_forecasts.png",
                                                      self.n_plot)
            written.append(images["test/forecasts"])
        if "probs" in data:
            probs = data["probs"]  # (N, C)
            cm = confusion_matrix(data["target"], probs.argmax(-1), probs.shape[-1])
            csv = self.dirpath / "confusion_matrix.csv"
            header = "true\\pred," + ",".join(str(c) for c in range(len(cm)))
            np.savetxt(csv, np.column_stack([np.arange(len(cm)), cm]), fmt="%d", delimiter=",", header=header,
                       comments="")
            images["test/confusion_matrix"] = plot_confusion(cm, self.dirpath / "confusion_matrix.png")
            written += [csv, images["test/confusion_matrix"]]
        log.info("test artifacts: %s", ", ".join(str(p) for p in written))
        log_images(trainer, images)
