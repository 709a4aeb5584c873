"""``hparams_search=<name>``: Optuna searches (conf/hparams_search/), checked before their first trial, a failed
trial recorded as failed while the study goes on, the best trial written beside the sweep (attnbench.sweep)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from attnbench import sweep
from attnbench.config import validate
from attnbench.config.hparams_search import DIRECTIONS, TrialFailed, check_search, check_trial, search_overrides
from attnbench.errors import EXIT_USER_ERROR, ConfigError, SearchError
from tests.conftest import FAST, ROOT, compose_train, run_cli

SEARCHES = sorted(p.stem for p in (ROOT / "conf" / "hparams_search").glob("*.yaml"))
# what each search composes with: the LRA encoder searches the task an LRA experiment sets, with one seed
WITH = {"lra_encoder": ["experiment=lra/cpu/text", "seed=0"]}


def search_cfg(name: str, *overrides: str):
    return compose_train([f"hparams_search={name}", *WITH.get(name, []), *overrides], hydra=True)


def job_cfg(cfg):
    """The config a trial's job gets: without the ``hydra`` node (as @hydra.main passes it)."""
    cfg = cfg.copy()
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture
def hydra_job():
    """set(cfg): HydraConfig as inside a job of that sweep; unset after."""
    yield lambda cfg: HydraConfig.instance().set_config(cfg)
    HydraConfig.instance().cfg = None


# ---------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", SEARCHES)
def test_each_search_composes_checks_and_validates(name, hydra_job):
    cfg = search_cfg(name)
    sweeper = cfg.hydra.sweeper
    assert cfg.hydra.mode.name == "MULTIRUN" and sweep.is_search(cfg)  # no -m needed
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == cfg.seed
    # the experiment's monitored metric, best value in the run, in the direction its mode says
    assert cfg.optimized_metric == f"{cfg.model.monitor}_best"
    assert sweeper.direction == DIRECTIONS[cfg.model.monitor_mode]
    assert sweeper.max_failure_rate == 1.0 and sweeper.n_jobs == 1  # failed trials do not end the study
    assert sweeper.params, "a search names its search space"
    check_search(cfg)  # every searched key is a key of the config
    hydra_job(cfg)
    validate(job_cfg(cfg))  # a trial's config passes the run's checks
    assert sweep.expected_jobs(cfg) == sweeper.n_trials
    assert sweep.expected_jobs(search_cfg(name, "hydra.sweeper.n_trials=3")) == 3


def test_searched_keys_are_the_models():
    hot = search_overrides(search_cfg("hot_forecasting"))
    assert {"model.optimizer.lr", "model.net.d_model", "model.net.dropout"} <= set(hot)
    lra = search_overrides(search_cfg("lra_encoder"))
    assert {"model.optimizer.lr", "model.scheduler.warmup_steps"} <= set(lra)
    assert lra["seed"].input_line == "seed=0"  # the command line's one seed replaces the experiment's three


def test_direction_follows_the_monitor_mode():
    """Not a name list: the mode the checkpoint callback uses (model.monitor_mode) sets the direction."""
    assert search_cfg("hot_forecasting").hydra.sweeper.direction == "minimize"  # val/mse
    assert search_cfg("lra_encoder").hydra.sweeper.direction == "maximize"  # val/acc
    flipped = search_cfg("hot_forecasting", "model.monitor_mode=max")
    assert flipped.hydra.sweeper.direction == "maximize"
    assert flipped.callbacks.model_checkpoint.mode == "max"  # the same source


def _with_param(cfg, key: str, value: str):
    with open_dict(cfg):
        cfg.hydra.sweeper.params[key] = value
    return cfg


@pytest.mark.parametrize("change, message", [
    (lambda c: _with_param(c, "model.optimizer.lrr", "interval(1e-4, 1e-2)"),
     "model.optimizer has no key 'lrr' (did you mean model.optimizer.lr?)"),
    (lambda c: _with_param(c, "model.nett.dropout", "interval(0.0, 0.3)"), "model has no key 'nett' (did you mean "
                                                                          "model.net?)"),
    (lambda c: _with_param(c, "seed", "0,1,2"), "seed=0,1,2 would be searched as a hyper-parameter"),
    (lambda c: OmegaConf.update(c, "hydra.sweeper.direction", "maximize") or c,
     "hydra.sweeper.direction=maximize but optimized_metric=val/mse_best follows model.monitor_mode=min"),
    (lambda c: OmegaConf.update(c, "optimized_metric", None) or c, "optimized_metric=null"),
])
def test_a_bad_search_fails_before_its_first_trial(change, message):
    with pytest.raises(ConfigError) as e:
        check_search(change(search_cfg("hot_forecasting")))
    assert message in str(e.value)


def test_an_experiments_seeds_are_not_searched():
    cfg = compose_train(["experiment=lra/cpu/text", "hparams_search=lra_encoder"], hydra=True)
    with pytest.raises(ConfigError, match=r"seed=0,1,2 would be searched .* seed=0"):
        check_search(cfg)


def test_the_sweep_stops_with_the_one_paragraph_error(tmp_path, capsys):
    """The callback checks the search at the sweep's start: exit 2, the error in one paragraph, no job run."""
    cfg = _with_param(search_cfg("hot_forecasting", f"paths.log_dir={tmp_path}"), "model.net.d_modle", "choice(1,2)")
    with pytest.raises(SystemExit) as e:
        sweep.SweepSummary().on_multirun_start(cfg)
    assert e.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error (ConfigError): the search parameter model.net.d_modle=choice(1,2) names no key")
    assert "did you mean model.net.d_model?" in err and not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- trials
def test_a_trial_without_a_finite_value_fails(hydra_job):
    cfg = search_cfg("hot_forecasting")
    hydra_job(cfg)
    job = job_cfg(cfg)
    check_trial(job, {"val/mse_best": 0.4, "val/mse": 0.5})  # finite: nothing to say
    with pytest.raises(TrialFailed, match=r"optimized_metric val/mse_best=nan: the run diverged"):
        check_trial(job, {"val/mse_best": math.nan})
    with pytest.raises(TrialFailed, match=r"val/mse_best is not among the run's metrics \(val metrics: "
                                                r"val/mse=inf\)"):
        check_trial(job, {"val/mse": math.inf})


def test_outside_a_search_a_nan_metric_is_the_runs_business(hydra_job):
    job = job_cfg(compose_train([], hydra=True))
    check_trial(job, {"val/mse": math.nan})  # no HydraConfig: a plain run
    hydra_job(compose_train([], hydra=True))
    check_trial(job, {"val/mse": math.nan})  # a basic sweep: every job is reported as it ended


def _trial(root: Path, num: int, overrides: list[str], status: str = "ok", value: float | None = None) -> None:
    job = root / f"{num}_{','.join(overrides)}"
    job.mkdir(parents=True)
    metrics = {} if value is None else {"val/mse_best": value}
    (job / "results.json").write_text(json.dumps({
        "status": status, "metrics": metrics, "overrides": [*overrides, "hparams_search=hot_forecasting"],
        "error": None if status == "ok" else "ConfigError: model.optimizer.lr=-1.0 is invalid: must be > 0",
        "config": {"optimized_metric": "val/mse_best"}}))


def test_the_best_trial_is_written_beside_the_sweep(tmp_path, caplog):
    root = tmp_path / "sweep"
    _trial(root, 0, ["model.optimizer.lr=-1.0", "model.net.d_model=64"], status="failed")
    _trial(root, 1, ["model.optimizer.lr=0.001", "model.net.d_model=64"], value=0.52)
    _trial(root, 2, ["model.optimizer.lr=0.001", "model.net.d_model=64"], value=0.41)  # the same draw, better
    OmegaConf.save(OmegaConf.create({"name": "optuna", "best_value": 0.41, "best_params": {
        "model.optimizer.lr": 0.001, "model.net.d_model": 64}}), root / "optimization_results.yaml")
    search = {"metric": "val/mse_best", "direction": "minimize", "n_trials": 3}
    with caplog.at_level(logging.INFO, logger="attnbench.sweep"):
        status = sweep.summarize_sweep(root, search=search)
    best = json.loads((root / "best.json").read_text())
    assert best == status["best"] and best["job"].startswith("2_") and best["value"] == 0.41
    assert best["overrides"] == ["model.optimizer.lr=0.001", "model.net.d_model=64"]
    assert best["metric"] == "val/mse_best" and best["direction"] == "minimize"
    assert best["trials"] == {"failed": 1, "ok": 2} and status["counts"] == {"failed": 1, "ok": 2}
    assert "best trial: 2_model.optimizer.lr=0.001,model.net.d_model=64 val/mse_best=0.41 with" in caplog.text


def test_a_search_without_a_completed_trial_says_so(tmp_path, caplog):
    root = tmp_path / "sweep"
    _trial(root, 0, ["model.optimizer.lr=-1.0"], status="failed")
    with caplog.at_level(logging.INFO, logger="attnbench.sweep"):
        status = sweep.summarize_sweep(root, search={"metric": "val/mse_best", "direction": "minimize"})
    assert status["best"] is None and not (root / "best.json").exists()
    assert "no trial of the search finished with a value of val/mse_best" in caplog.text


# ---------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow  # train.py as a process (~40 s on 2 shared cores): Hydra's multirun, the Optuna sweeper
def test_a_search_runs_its_trials_records_a_failed_one_and_writes_the_best(tmp_path, synth_data_dir):
    """Three trials of hparams_search=hot_forecasting (no -m) whose lr range holds an invalid value: the trials
    drawing it fail (results.json status failed, Optuna FAIL), the study finishes and names the best trial."""
    args = [*FAST, "hparams_search=hot_forecasting", "hydra.sweeper.n_trials=3", f"paths.data_dir={synth_data_dir}",
            "test=false", "~callbacks.test_artifacts", "model.optimizer.lr=choice(0.001,-1.0)"]  # TPE seed 42
    p = run_cli(args, tmp_path)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    (root,) = (tmp_path / "outputs" / "debug" / "multiruns").iterdir()
    results = {f.parent.name: json.loads(f.read_text()) for f in root.rglob("results.json")}
    assert len(results) == 3 and "[job 3/3]" in out
    failed = [r for r in results.values() if r["status"] == "failed"]
    ok = [r for r in results.values() if r["status"] == "ok"]
    assert failed and ok, {k: r["status"] for k, r in results.items()}  # seed 42 draws both lr values
    assert all("model.optimizer.lr=-1.0" in r["overrides"] and "must be > 0" in r["error"] for r in failed)
    assert "Failed experiment: model.optimizer.lr=-1.0 is invalid" in out  # Optuna: the trial FAIL, no crash
    found = OmegaConf.load(root / "optimization_results.yaml")
    best = json.loads((root / "best.json").read_text())
    assert best["params"] == OmegaConf.to_container(found.best_params) and best["value"] == found.best_value
    assert best["params"]["model.optimizer.lr"] == 0.001 and best["direction"] == "minimize"
    assert results[best["job"]]["metrics"]["val/mse_best"] == pytest.approx(best["value"])
    assert min(r["metrics"]["val/mse_best"] for r in ok) == pytest.approx(best["value"])
    summary = json.loads((root / "summary.json").read_text())
    assert summary["best"] == best and summary["counts"] == {"failed": len(failed), "ok": len(ok)}


def test_optunas_no_completed_trial_becomes_the_one_paragraph():
    from attnbench.cli import no_best_trial

    fix = no_best_trial(ValueError("No trials are completed yet."))  # what study.best_trial raises
    assert isinstance(fix, SearchError) and "every trial of the search failed" in str(fix)
    assert no_best_trial(ValueError("No trials are completed")) is None and no_best_trial(KeyError("x")) is None


@pytest.mark.slow  # train.py as a process: the sweeper asks Optuna for a best trial that does not exist
def test_a_search_whose_every_trial_fails_exits_2_with_one_paragraph(tmp_path, synth_data_dir):
    args = [*FAST, "hparams_search=hot_forecasting", "hydra.sweeper.n_trials=2", f"paths.data_dir={synth_data_dir}",
            "model.optimizer.lr=choice(-1.0,-2.0)"]
    p = run_cli(args, tmp_path, env={"HYDRA_FULL_ERROR": "0"})
    assert p.returncode == EXIT_USER_ERROR, p.stderr[-3000:]
    assert "error (SearchError): every trial of the search failed" in p.stderr
    assert "No trials are completed yet" not in p.stderr and "Traceback" not in p.stderr
    assert [r["status"] for r in map(json.loads, map(Path.read_text, tmp_path.rglob("results.json")))] == \
        ["failed", "failed"]
