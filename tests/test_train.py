"""End to end through the CLI: debug runs, results.json, multirun, seeding, launchers, loggers, DDP."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import FAST, SHARED_DATA, results, run_cli


def data_args(d) -> list[str]:
    return [*FAST, f"paths.data_dir={d}"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["hot", "full"])
def test_debug_fast_end_to_end(tmp_path, synth_data_dir, model):
    p = run_cli([*data_args(synth_data_dir), f"model={model}"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    (res,) = results(tmp_path)
    assert res["status"] == "ok" and res["error"] is None
    m = res["metrics"]
    for key in ("test/mse", "test/mae", "val/mse", "val/mae", "train/loss", "val/mse_best"):
        assert math.isfinite(m[key]), key
    assert m["attention_gflops"] > 0  # attention.flops.FlopRecorder: the model's attention FLOPs per example
    assert res["choices"]["model"] == model and res["config"]["data"]["name"] == "ETTh1"
    assert res["wall_time_s"] > 0 and res["peak_memory_mb"] > 0
    run_dir = next((tmp_path / "outputs").rglob("results.json")).parent
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert res["best_checkpoint"] and (run_dir / "checkpoints" / "last.ckpt").is_file()
    csv = pd.read_csv(run_dir / "csv" / "metrics.csv")
    assert {"train/loss_step", "val/mse", "test/mse"} <= set(csv.columns)


@pytest.mark.slow
def test_results_json_is_written_on_failure(tmp_path, synth_data_dir):
    p = run_cli([*data_args(synth_data_dir), "fail=before_fit"], tmp_path)
    assert p.returncode != 0
    (res,) = results(tmp_path)
    assert res["status"] == "failed" and "forced failure before fit" in res["error"]
    assert res["config"]["data"]["name"] == "ETTh1" and "traceback" in res


@pytest.mark.slow
def test_missing_data_fails_with_instructions(tmp_path):
    p = run_cli([*FAST, f"paths.data_dir={tmp_path / 'nothing'}"], tmp_path)
    assert p.returncode != 0
    (res,) = results(tmp_path)
    assert res["status"] == "failed" and "prepare_data.py ETTh1" in res["error"]


@pytest.mark.slow
def test_multirun_two_jobs_and_table(tmp_path, synth_data_dir):
    p = run_cli([*data_args(synth_data_dir), "model=hot,full"], tmp_path, flags=("-m",))
    assert p.returncode == 0, p.stderr[-3000:]
    res = results(tmp_path)
    assert len(res) == 2 and {r["choices"]["model"] for r in res} == {"hot", "full"}
    assert all(r["status"] == "ok" for r in res)
    sweep = next((tmp_path / "outputs").rglob("multirun.yaml")).parent
    import subprocess
    import sys

    from tests.conftest import ROOT
    # a sweep without experiment= declares no table: make_table says so, and takes the experiment's table by name
    t = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_table.py"), str(sweep)],
                       capture_output=True, text=True)
    assert t.returncode != 0 and "--experiment" in t.stderr + t.stdout
    t = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_table.py"), str(sweep),
                        "--experiment", "hot/forecasting"], capture_output=True, text=True)
    assert t.returncode == 0, t.stderr
    assert (sweep / "table.md").is_file() and (sweep / "table.tex").is_file()
    assert "0.386" in (sweep / "table.md").read_text()  # iTransformer ETTh1-96 MSE beside ours


@pytest.mark.slow
def test_seed_makes_cpu_runs_repeatable(tmp_path, synth_data_dir):
    a = run_cli([*data_args(synth_data_dir), "seed=7"], tmp_path / "a")
    b = run_cli([*data_args(synth_data_dir), "seed=7"], tmp_path / "b")
    assert a.returncode == 0 and b.returncode == 0
    ma, mb = results(tmp_path / "a")[0]["metrics"], results(tmp_path / "b")[0]["metrics"]
    assert ma["test/mse"] == mb["test/mse"] and ma["train/loss"] == mb["train/loss"]


@pytest.mark.slow
def test_horizon_prefixes_of_one_long_forecast(tmp_path, synth_data_dir):
    p = run_cli([*data_args(synth_data_dir), "data.pred_len=192", "model.horizons=[96,192]"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    m = results(tmp_path)[0]["metrics"]
    for k in ("test/mse_96", "test/mse_192", "test/mae_96", "test/mae_192", "val/mse"):
        assert math.isfinite(m[k]), k
    assert m["test/mse_192"] != m["test/mse_96"]


@pytest.mark.slow
def test_test_on_last_weights(tmp_path, synth_data_dir):
    last = run_cli([*data_args(synth_data_dir), "test_ckpt=last"], tmp_path / "last")
    best = run_cli([*data_args(synth_data_dir), "test_ckpt=best"], tmp_path / "best")
    assert last.returncode == 0 and best.returncode == 0, last.stderr[-3000:]
    assert "Restoring states from the checkpoint" not in last.stdout + last.stderr
    assert "Restoring states from the checkpoint" in best.stdout + best.stderr
    assert math.isfinite(results(tmp_path / "last")[0]["metrics"]["test/mse"])


@pytest.mark.slow
def test_packed_dropout_run(tmp_path, synth_data_dir):
    """dropout_rng=packed swaps every nn.Dropout of the model (layers/dropout.py) and the run trains as usual."""
    p = run_cli([*data_args(synth_data_dir), "dropout_rng=packed"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    (res,) = results(tmp_path)
    assert res["status"] == "ok" and res["config"]["dropout_rng"] == "packed"
    assert math.isfinite(res["metrics"]["test/mse"])
    # model=hot: embedding and head, and per block the attention probabilities' (p=0 here), the attention output's,
    # SwiGLU's inner (p=0) and the MLP output's
    n_layers = res["config"]["model"]["net"]["n_layers"]
    log = next((tmp_path / "outputs").rglob("*.log")).read_text()
    assert f"dropout_rng=packed: {2 + 4 * n_layers} dropout layers draw packed masks" in log


@pytest.mark.slow
def test_wandb_logger_offline(tmp_path, synth_data_dir):
    p = run_cli([*data_args(synth_data_dir), "logger=wandb", "tags=[t1]"], tmp_path,
                env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert p.returncode == 0, p.stderr[-3000:]
    run_dir = next((tmp_path / "outputs").rglob("results.json")).parent
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert offline, list(run_dir.iterdir())
    assert (run_dir / "csv" / "metrics.csv").is_file()


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path, synth_data_dir):
    p = run_cli([*data_args(synth_data_dir), "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                 "hydra.launcher.cpus_per_task=1", "model=hot,full"], tmp_path, flags=("-m",))
    assert p.returncode == 0, p.stderr[-3000:]
    res = results(tmp_path)
    assert len(res) == 2 and all(r["status"] == "ok" for r in res)


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes(tmp_path, synth_data_dir):
    p = run_cli([*data_args(synth_data_dir), "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"],
                tmp_path, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    res = results(tmp_path)
    assert len(res) == 1 and res[0]["status"] == "ok"  # rank 0 writes it
    assert "world_size=2" in p.stderr + p.stdout or "distributed_backend=gloo" in p.stderr + p.stdout


@pytest.mark.slow
@pytest.mark.data
def test_real_etth1_trains_a_few_steps(tmp_path):
    p = run_cli([*FAST, "data.verify=true", f"paths.data_dir={SHARED_DATA}"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    res = results(tmp_path)[0]
    assert res["status"] == "ok" and res["metrics"]["test/mse"] < 5
    json.dumps(res)


@pytest.mark.gpu
def test_gpu_bf16_debug_run(tmp_path, synth_data_dir):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    p = run_cli([*data_args(synth_data_dir), "trainer=gpu", "model=hot"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    res = results(tmp_path)[0]
    assert res["status"] == "ok" and res["peak_memory_kind"] == "cuda_max_allocated"
    assert res["config"]["trainer"]["precision"] in ("bf16-mixed", "16-mixed")


@pytest.mark.slow
def test_evaluate_a_checkpoint_without_training(tmp_path, synth_data_dir):
    """train=false ckpt_path=<best> reproduces the test metrics of the run that wrote it; no ckpt: an error."""
    p = run_cli(data_args(synth_data_dir), tmp_path / "a")
    assert p.returncode == 0, p.stderr[-3000:]
    (first,) = results(tmp_path / "a")
    p = run_cli([*data_args(synth_data_dir), "train=false", f"ckpt_path={first['best_checkpoint']}"], tmp_path / "b")
    assert p.returncode == 0, p.stderr[-3000:]
    (again,) = results(tmp_path / "b")
    assert again["metrics"]["test/mse"] == pytest.approx(first["metrics"]["test/mse"], rel=1e-6)
    p = run_cli([*data_args(synth_data_dir), "train=false"], tmp_path / "c")
    assert p.returncode != 0
    (failed,) = results(tmp_path / "c")
    assert failed["status"] == "failed" and "train=false needs ckpt_path" in failed["error"]


@pytest.mark.slow
def test_last_checkpoint_is_the_latest_epoch_not_the_best(tmp_path, synth_data_dir):
    """last.ckpt holds the latest epoch even when it did not improve (Lightning 2.6's save_last would not)."""
    import torch

    # lr 1e-30 leaves the weights unchanged: epoch 1 ties epoch 0, which stays the best checkpoint
    p = run_cli([*data_args(synth_data_dir), "trainer.max_epochs=2", "model.optimizer.lr=1e-30"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    (res,) = results(tmp_path)
    ckpts = Path(res["best_checkpoint"]).parent
    assert Path(res["best_checkpoint"]).name == "epoch_000.ckpt"
    assert sorted(f.name for f in ckpts.iterdir()) == ["epoch_000.ckpt", "last.ckpt"]
    assert torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 1


@pytest.mark.slow
def test_resume_training_from_last_checkpoint(tmp_path, synth_data_dir):
    """ckpt_path=<last.ckpt> with train=true resumes fit (epoch counter, optimizer and callbacks restored)."""
    p = run_cli(data_args(synth_data_dir), tmp_path / "a")
    assert p.returncode == 0, p.stderr[-3000:]
    last = next((tmp_path / "a" / "outputs").rglob("last.ckpt"))
    p = run_cli([*data_args(synth_data_dir), "trainer.max_epochs=2", f"ckpt_path={last}"], tmp_path / "b")
    assert p.returncode == 0, p.stderr[-3000:]
    (res,) = results(tmp_path / "b")
    assert res["status"] == "ok" and res["metrics"]["epochs"] == 2  # one more epoch after the restored one
    # checkpoints continue in the resumed run's folder, so the best score of its earlier epochs still counts
    assert Path(res["best_checkpoint"]).parent == last.parent
    val = [pd.read_csv(f)["val/mse"].dropna() for f in sorted(tmp_path.rglob("csv/metrics.csv"))]
    assert len(val) == 2 and len(val[0]) == 1 and len(val[1]) == 1
    assert res["metrics"]["val/mse_best"] == pytest.approx(min(val[0].iloc[0], val[1].iloc[0]), rel=1e-6)
