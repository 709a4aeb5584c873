"""End to end in-process (``train_run``: the composed config through ``train.run_with_results``): debug runs,
results.json, seeding, horizons, test weights, loggers, resume; DDP as ``python train.py`` (it starts processes)."""

from __future__ import annotations

import json
import logging
import math
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from attnbench.data.download import DataError
from tests.conftest import FAST, ROOT, SHARED_DATA, read_results, results, run_cli, train_run


def data_args(d) -> list[str]:
    return [*FAST, f"paths.data_dir={d}"]


@pytest.mark.parametrize("model", ["hot", pytest.param("full", marks=pytest.mark.slow)])
def test_debug_fast_end_to_end(tmp_path, synth_data_dir, model):
    res = train_run([*data_args(synth_data_dir), f"model={model}"], tmp_path)
    assert res["status"] == "ok" and res["error"] is None
    m = res["metrics"]
    for key in ("test/mse", "test/mae", "val/mse", "val/mae", "train/loss", "val/mse_best"):
        assert math.isfinite(m[key]), key
    assert m["attention_gflops"] > 0  # attention.flops.FlopRecorder: the model's attention FLOPs per example
    assert res["choices"]["model"] == model and res["config"]["data"]["name"] == "ETTh1"
    assert res["wall_time_s"] > 0 and res["peak_memory_mb"] > 0
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert res["code"]["commit"] == head and len(head) == 40 and isinstance(res["code"]["dirty"], bool)
    run_dir = tmp_path  # .hydra/ and the log file: Hydra's runner (tests/test_sweep.py, the multirun)
    assert res["best_checkpoint"] and (run_dir / "checkpoints" / "last.ckpt").is_file()
    csv = pd.read_csv(run_dir / "csv" / "metrics.csv")
    assert {"train/loss_step", "val/mse", "test/mse"} <= set(csv.columns)


def test_results_json_is_written_on_failure(tmp_path, synth_data_dir, monkeypatch):
    from attnbench.lit.forecasting import ForecastingModule

    def boom(self, *args, **kwargs):
        raise RuntimeError("forced failure while building the model")

    monkeypatch.setattr(ForecastingModule, "__init__", boom)
    with pytest.raises(Exception, match="forced failure while building the model"):
        train_run(data_args(synth_data_dir), tmp_path)
    res = read_results(tmp_path)
    assert res["status"] == "failed" and "forced failure while building the model" in res["error"]
    assert res["config"]["data"]["name"] == "ETTh1" and "traceback" in res


def test_missing_data_fails_with_instructions(tmp_path):
    with pytest.raises(DataError, match="prepare_data.py ETTh1"):
        train_run([*FAST, f"paths.data_dir={tmp_path / 'nothing'}"], tmp_path)
    res = read_results(tmp_path)
    assert res["status"] == "failed" and "prepare_data.py ETTh1" in res["error"]


@pytest.mark.slow
def test_seed_makes_cpu_runs_repeatable(tmp_path, synth_data_dir):
    ma = train_run([*data_args(synth_data_dir), "seed=7"], tmp_path / "a")["metrics"]
    mb = train_run([*data_args(synth_data_dir), "seed=7"], tmp_path / "b")["metrics"]
    assert ma["test/mse"] == mb["test/mse"] and ma["train/loss"] == mb["train/loss"]


@pytest.mark.slow
def test_horizon_prefixes_of_one_long_forecast(tmp_path, synth_data_dir):
    m = train_run([*data_args(synth_data_dir), "data.pred_len=192", "model.horizons=[96,192]"], tmp_path)["metrics"]
    for k in ("test/mse_96", "test/mse_192", "test/mae_96", "test/mae_192", "val/mse"):
        assert math.isfinite(m[k]), k
    assert m["test/mse_192"] != m["test/mse_96"]


@pytest.mark.slow
def test_test_on_last_weights(tmp_path, synth_data_dir, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("lightning.pytorch"), "propagate", True)  # to caplog's root handler
    with caplog.at_level(logging.INFO):
        last = train_run([*data_args(synth_data_dir), "test_ckpt=last"], tmp_path / "last")
        assert "Restoring states from the checkpoint" not in caplog.text
        train_run([*data_args(synth_data_dir), "test_ckpt=best"], tmp_path / "best")
        assert "Restoring states from the checkpoint" in caplog.text
    assert math.isfinite(last["metrics"]["test/mse"])


@pytest.mark.slow
def test_packed_dropout_run(tmp_path, synth_data_dir, caplog):
    """dropout_rng=packed swaps every nn.Dropout of the model (layers/dropout.py) and the run trains as usual."""
    with caplog.at_level(logging.INFO, logger="attnbench.train"):
        res = train_run([*data_args(synth_data_dir), "dropout_rng=packed"], tmp_path)
    assert res["status"] == "ok" and res["config"]["dropout_rng"] == "packed"
    assert math.isfinite(res["metrics"]["test/mse"])
    # model=hot: embedding and head, and per block the attention probabilities' (p=0 here), the attention output's,
    # SwiGLU's inner (p=0) and the MLP output's
    n_layers = res["config"]["model"]["net"]["n_layers"]
    assert f"dropout_rng=packed: {2 + 4 * n_layers} dropout layers draw packed masks" in caplog.text


@pytest.mark.slow
def test_wandb_logger_offline(tmp_path, synth_data_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert train_run([*data_args(synth_data_dir), "logger=wandb", "tags=[t1]"], tmp_path)["status"] == "ok"
    offline = list((tmp_path / "wandb").glob("offline-run-*"))
    assert offline, list(tmp_path.iterdir())
    assert (tmp_path / "csv" / "metrics.csv").is_file()


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes(tmp_path, synth_data_dir):
    # a process: Lightning's DDP launcher starts the other rank by running this command line again
    p = run_cli([*data_args(synth_data_dir), "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"],
                tmp_path, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    res = results(tmp_path)
    assert len(res) == 1 and res[0]["status"] == "ok"  # rank 0 writes it
    assert "world_size=2" in p.stderr + p.stdout or "distributed_backend=gloo" in p.stderr + p.stdout


@pytest.mark.slow
@pytest.mark.data
def test_real_etth1_trains_a_few_steps(tmp_path):
    res = train_run([*FAST, "data.verify=true", f"paths.data_dir={SHARED_DATA}"], tmp_path)
    assert res["status"] == "ok" and res["metrics"]["test/mse"] < 5
    json.dumps(res)


@pytest.mark.gpu
def test_gpu_bf16_debug_run(tmp_path, synth_data_dir):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    res = train_run([*data_args(synth_data_dir), "trainer=gpu", "model=hot"], tmp_path)
    assert res["status"] == "ok" and res["peak_memory_kind"] == "cuda_max_allocated"
    assert res["config"]["trainer"]["precision"] in ("bf16-mixed", "16-mixed")


@pytest.mark.slow
def test_evaluate_a_checkpoint_without_training(tmp_path, synth_data_dir):
    """train=false ckpt_path=<best> reproduces the test metrics of the run that wrote it; no ckpt: an error."""
    first = train_run(data_args(synth_data_dir), tmp_path / "a")
    again = train_run([*data_args(synth_data_dir), "train=false", f"ckpt_path={first['best_checkpoint']}"],
                      tmp_path / "b")
    assert again["metrics"]["test/mse"] == pytest.approx(first["metrics"]["test/mse"], rel=1e-6)
    with pytest.raises(ValueError, match="train=false needs ckpt_path"):
        train_run([*data_args(synth_data_dir), "train=false"], tmp_path / "c")
    failed = read_results(tmp_path / "c")
    assert failed["status"] == "failed" and "train=false needs ckpt_path" in failed["error"]


@pytest.mark.slow
def test_last_checkpoint_is_the_latest_epoch_not_the_best(tmp_path, synth_data_dir):
    """last.ckpt holds the latest epoch even when it did not improve (Lightning 2.6's save_last would not)."""
    import torch

    # lr 1e-30 leaves the weights unchanged: epoch 1 ties epoch 0, which stays the best checkpoint
    res = train_run([*data_args(synth_data_dir), "trainer.max_epochs=2", "model.optimizer.lr=1e-30"], tmp_path)
    ckpts = Path(res["best_checkpoint"]).parent
    assert Path(res["best_checkpoint"]).name == "epoch_000.ckpt"
    assert sorted(f.name for f in ckpts.iterdir()) == ["epoch_000.ckpt", "last.ckpt"]
    assert torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 1


@pytest.mark.slow
def test_resume_training_from_last_checkpoint(tmp_path, synth_data_dir):
    """ckpt_path=<last.ckpt> with train=true resumes fit (epoch counter, optimizer and callbacks restored)."""
    train_run(data_args(synth_data_dir), tmp_path / "a")
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    res = train_run([*data_args(synth_data_dir), "trainer.max_epochs=2", f"ckpt_path={last}"], tmp_path / "b")
    assert res["status"] == "ok" and res["metrics"]["epochs"] == 2  # one more epoch after the restored one
    # checkpoints continue in the resumed run's folder, so the best score of its earlier epochs still counts
    assert Path(res["best_checkpoint"]).parent == last.parent
    val = [pd.read_csv(f)["val/mse"].dropna() for f in sorted(tmp_path.rglob("csv/metrics.csv"))]
    assert len(val) == 2 and len(val[0]) == 1 and len(val[1]) == 1
    assert res["metrics"]["val/mse_best"] == pytest.approx(min(val[0].iloc[0], val[1].iloc[0]), rel=1e-6)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self/clear_refs")
def test_peak_memory_is_the_jobs_own_not_the_process_peak():
    """The jobs of a multirun share one process: each job's peak starts at its own start (run_with_results)."""
    import numpy as np

    from attnbench.train import peak_memory_mb, reset_peak_memory

    big = np.ones(2**26)  # 512 MiB, touched
    del big
    before, kind = peak_memory_mb()
    reset_peak_memory()
    after, _ = peak_memory_mb()
    assert kind == "cpu_max_rss" and before - after > 400, (before, after)


@pytest.mark.parametrize("native, allow", [(False, False), (False, True), (True, False), (None, False)])
def test_a_half_precision_the_cpu_only_emulates_stops_before_anything_is_built(compose_cfg, monkeypatch, caplog,
                                                                              native, allow):
    """Both machines' answers, the detection faked: without native bf16 matmuls the run stops naming the cause and
    the fix, unless allow_slow_precision=true (a warning then, and where torch cannot tell)."""
    from attnbench import hardware
    from attnbench.errors import ConfigError
    from attnbench.train import check_cpu_precision

    asked = []
    monkeypatch.setattr(hardware, "cpu_native", lambda half: asked.append(half) or native)
    cfg = compose_cfg(["trainer.precision=bf16-mixed", f"allow_slow_precision={str(allow).lower()}"])
    if native is False and not allow:
        with pytest.raises(ConfigError, match=r"trainer.precision=bf16-mixed on this CPU would be emulated: it lacks "
                                              r"AVX512-BF16 or AMX-BF16 .* Use trainer.precision=32-true .* "
                                              r"allow_slow_precision=true"):
            check_cpu_precision(cfg)
    else:
        with caplog.at_level(logging.WARNING, logger="attnbench.train"):
            check_cpu_precision(cfg)
        assert ("32-true" in caplog.text) == (native is not True)
    assert asked == ["bf16"]


@pytest.mark.parametrize("overrides, asked", [(["trainer.precision=16-mixed"], ["16"]),
                                               (["trainer.precision=32-true"], []),
                                               (["trainer=gpu", "trainer.precision=bf16-mixed"], [])])
def test_only_a_half_precision_on_the_cpu_is_probed(compose_cfg, monkeypatch, overrides, asked):
    from attnbench import hardware
    from attnbench.train import check_cpu_precision

    seen = []
    monkeypatch.setattr(hardware, "cpu_native", lambda half: seen.append(half) or True)
    check_cpu_precision(compose_cfg(overrides))
    assert seen == asked


def test_an_emulated_precision_run_fails_before_training_with_results(tmp_path, synth_data_dir, monkeypatch):
    from attnbench import hardware
    from attnbench.errors import ConfigError

    monkeypatch.setattr(hardware, "cpu_native", lambda half: False)
    with pytest.raises(ConfigError, match="would be emulated"):
        train_run([*data_args(synth_data_dir), "trainer.precision=bf16-mixed"], tmp_path)
    res = read_results(tmp_path)
    assert res["status"] == "failed" and "allow_slow_precision=true" in res["error"]
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "csv").exists()
