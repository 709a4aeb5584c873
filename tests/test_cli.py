"""The command line: a light entry (no torch before the run), errors that lead with the fix, config checks that
let nothing through, ``list``, and Lightning's noise filtered.

A process is started only for what only a process shows (4 of them: which modules an entry imports, its exit
status with the log file and results.json of a real Hydra run); everything else runs in this process.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import runpy
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

import pytest
from hydra.errors import InstantiationException

from attnbench import attention, attention_spec, cli
from attnbench.cli import GROUPS, check_group_choices, gpu_missing, group_options, main
from attnbench.config import ConfigError, drop_disabled_progress_bar, validate
from attnbench.errors import DataError, report, user_error
from attnbench.train import LIGHTNING_NOISE, run_with_results
from tests.conftest import ROOT, SHARED_DATA

HEAVY = ("torch", "lightning", "transformers", "wandb")


def _py(code: str, *args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with the worktree's sources first on the path."""
    e = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", **(env or {})}
    e.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=cwd or ROOT, env=e,
                          capture_output=True, text=True, timeout=120)


# python train.py ARGS, then report which heavy modules were imported (on stdout, last line)
_TRAIN = """
    import json, sys
    sys.argv = ["train.py", *sys.argv[1:]]
    from attnbench.cli import train
    try:
        train()
    finally:
        print("\\nIMPORTED " + json.dumps([m for m in HEAVY if m in sys.modules]))
""".replace("HEAVY", repr(HEAVY))


def _imported(p: subprocess.CompletedProcess) -> list[str]:
    line = [s for s in p.stdout.splitlines() if s.startswith("IMPORTED ")][-1]
    return json.loads(line.removeprefix("IMPORTED "))


# ----------------------------------------------------------------------------- light entry
def test_attention_spec_equals_the_registry():
    """The torch-free reading of the registry (config checks, `list attention`) matches the live classes."""
    import inspect

    from attnbench import attention

    assert attention_spec.available() == attention.available()
    for name in attention.available():
        cls, e = attention.get(name), attention_spec.get(name)
        params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
        required = [p.name for p in params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        assert e.caps == asdict(cls.caps), name
        assert list(e.params) == [p.name for p in params], name
        assert list(e.required) == required, name
    assert attention_spec.caps_table() == attention.registry.caps_table()


def test_drop_in_rule_equals_hf_swap():
    from attnbench.models.hf_swap import check_drop_in

    def norm(msg: str | None) -> str | None:  # the registry lists entries in import order, the spec sorted
        head, sep, names = (msg or "").partition("that do: ")
        return None if msg is None else head + sep + ", ".join(sorted(names.split(", ")))

    for name in attention_spec.available():
        for allow in (False, True):  # allow_trainable: entries with learned parameters, to fine-tune
            problem = attention_spec.drop_in_problem(name, allow)
            try:
                check_drop_in(name, allow)
                live = None
            except ValueError as e:
                live = str(e)
            assert norm(problem) == norm(live), (name, allow)


def test_compose_resolve_and_validate_import_no_torch():
    """Every resolver and every check runs without torch, Lightning, transformers or W&B (`--cfg job`, typos),
    the schemas of Lightning's and W&B's classes included (read from their source)."""
    p = _py(f"""
        import sys
        from hydra import compose, initialize_config_dir
        from omegaconf import OmegaConf
        from attnbench.config import register_configs, validate
        register_configs()
        runs = [[], ["trainer=gpu"], ["trainer=ddp"], ["logger=wandb"], ["data=illness"], ["debug=fast"],
                ["experiment=hot/forecasting"], ["model=hot3d", "data=medmnist3d"], ["model=smyrf_bert", "data=glue"],
                ["model=full", "model/attention=linformer", "model.net.attention.max_len=168",
                 "model.net.attention.k=8"]]
        for ov in runs:
            with initialize_config_dir(config_dir="{ROOT / 'conf'}", version_base="1.3"):
                cfg = compose("train", overrides=["paths.output_dir=/tmp/x", *ov])
                OmegaConf.to_container(cfg, resolve=True)
                validate(cfg)
            from hydra.core.global_hydra import GlobalHydra
            GlobalHydra.instance().clear()
        print([m for m in {HEAVY!r} if m in sys.modules])
    """)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def _train(argv: list[str], monkeypatch) -> int:
    """``python train.py ARGV`` in this process; its exit status."""
    monkeypatch.setattr(sys, "argv", ["train.py", *argv])
    try:
        cli.train()
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_help_lists_each_group_on_one_line(monkeypatch, capsys):
    assert _train(["--help"], monkeypatch) == 0
    out = capsys.readouterr().out
    assert "_schema" not in out
    for group in GROUPS:
        lines = [s for s in out.splitlines() if s.startswith(f"  {group} ")]
        assert len(lines) == 1, (group, lines)
        assert all(o in lines[0] for o in group_options(group))
    assert "hot/forecasting" in out and "python -m attnbench list" in out


def test_help_imports_no_torch(tmp_path):
    p = _py(_TRAIN, "--help", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "== Config groups" in p.stdout and _imported(p) == []


def test_hydra_help_template_is_the_same_text():
    from hydra import compose, initialize_config_dir

    from attnbench.cli import help_text

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
        assert cfg.hydra.help.template == help_text()


def test_cfg_job_resolves_every_path(tmp_path, monkeypatch, capsys):
    """In-process (that composing and resolving import no torch: test_compose_resolve_and_validate_import_no_torch)."""
    monkeypatch.chdir(tmp_path)
    assert _train(["--cfg", "job", "--resolve", f"paths.log_dir={tmp_path}"], monkeypatch) == 0
    out = capsys.readouterr().out
    assert "None" not in out and f"dirpath: {tmp_path}/train/runs/" in out
    assert not list(tmp_path.rglob("results.json"))  # printed, nothing run


def test_config_error_is_one_paragraph_exit_2_with_traceback_in_log_and_results(tmp_path):
    p = _py(_TRAIN, f"paths.log_dir={tmp_path}", "data.pred_len=-5", cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("error (ConfigError): data.pred_len=-5 is invalid: must be >= 1")
    assert "Traceback" not in p.stderr + p.stdout
    assert _imported(p) == []  # reported (and results.json written) before torch/Lightning load
    (res,) = list(tmp_path.rglob("results.json"))
    r = json.loads(res.read_text())
    assert r["status"] == "failed" and "data.pred_len=-5" in r["error"] and "Traceback" in r["traceback"]
    (logf,) = list(tmp_path.rglob("train.log"))
    assert "Traceback" in logf.read_text() and str(logf) in p.stderr


@pytest.mark.parametrize("arg, needle", [
    ("experiment=hot/forcasting", "did you mean experiment=hot/forecasting?"),
    ("debug=fsat", "did you mean debug=fast?"),
])
def test_misspelt_optional_group_fails_listing_options(tmp_path, monkeypatch, capsys, arg, needle):
    monkeypatch.chdir(tmp_path)
    assert _train([f"paths.log_dir={tmp_path}", arg], monkeypatch) == 2
    err = capsys.readouterr().err
    group = arg.split("=")[0]
    assert err.startswith("error (ConfigError): ") and needle in err and f"config group {group!r}" in err
    assert ", ".join(group_options(group)) in err
    assert not list(tmp_path.rglob("results.json"))  # nothing ran


def test_misspelt_trainer_key_fails_listing_the_keys(monkeypatch, capsys):
    """A key of the Trainer (every option of the installed Lightning) is checked before composing."""
    assert _train(["trainer.max_epocs=3"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("error (ConfigError): trainer.max_epocs is not a key of trainer (did you mean "
                          "max_epochs?); available: default_root_dir, accelerator, strategy, devices, ")
    assert "overfit_batches" in err and "callbacks" not in err  # the callbacks group fills those


def test_group_choices():
    assert check_group_choices(["debug=fast", "experiment=hot/forecasting", "model=hot", "data.name=ETTh2"]) is None
    assert check_group_choices(["debug=null", "+experiment=smyrf/glue"]) is None
    assert check_group_choices(["trainer.max_epochs=3", "+trainer.mine=1", "paths.log_dir=x"]) is None
    assert "paths.logdir is not a key of paths (did you mean log_dir?)" in check_group_choices(["paths.logdir=x"])
    assert "model=hto" in check_group_choices(["-m", "model=hot,hto"])
    listed = check_group_choices(["model/attention=nope"]).split("available: ")[1].split(", ")
    assert set(listed) >= set(attention.available())  # every registered entry, by name
    with pytest.raises(Exception, match="debug/fsat"):  # Hydra too: the groups are no longer `optional`
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            compose("train", overrides=["debug=fsat"])


# ----------------------------------------------------------------------------- checks
@pytest.mark.parametrize("overrides, needle", [
    (["+foo=1"], "unknown top-level key 'foo'"),
    (["+paths.foo=1"], "paths key='foo'"),
    (["callbacks.early_stopping.patience=abc"], "callbacks.early_stopping.patience"),
    (["callbacks.early_stopping.patience=-1"], "callbacks.early_stopping.patience=-1"),
    (["+callbacks.early_stopping.patients=2"], "patients' not in 'EarlyStoppingConfig'; did you mean "
     "callbacks.early_stopping.patience?"),
    (["+callbacks.mine.every_n_epochs=2"], "callbacks.mine needs a _target_"),
    (["callbacks.model_checkpoint.mode=low"], "callbacks.model_checkpoint.mode='low'"),
    (["+logger.csv.save_dri=x"], "save_dri"),
    # the library's own options, typed from the installed source: a misspelt or mistyped one names the key
    (["+callbacks.early_stopping.check_finit=true"], "check_finit' not in 'EarlyStoppingConfig'; did you mean "
     "callbacks.early_stopping.check_finite? (keys of EarlyStopping: monitor, min_delta, patience, "),
    (["callbacks.lr_monitor.logging_interval=batch"], "callbacks.lr_monitor.logging_interval='batch' is invalid; "
     "allowed: step, epoch, null"),
    (["callbacks.model_checkpoint.save_top_k=many"], "callbacks.model_checkpoint.save_top_k"),
    (["logger=wandb", "+logger.wandb.note=x"], "Key 'note' not in 'WandbLoggerConfig'"),
    (["logger=wandb", "+logger.wandb.mode=offlin"], "logger.wandb.mode='offlin' is invalid (did you mean 'offline'?)"),
    (["logger=wandb", "logger.wandb.log_model=some"], "logger.wandb.log_model='some' is invalid"),
    (["trainer.precision=bf16"], "trainer.precision='bf16' is invalid (did you mean 'bf16-true'?)"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0 is invalid"),
    (["seed=-1"], "seed=-1"),
    (["model.optimizer.betas=[0.9,1.0]"], "model.optimizer.betas=[0.9, 1.0]"),
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0"),
    (["trainer.devices=0"], "trainer.devices=0"),
    (["trainer.devices=two"], "trainer.devices='two'"),
    (["trainer.limit_val_batches=1.5"], "trainer.limit_val_batches=1"),  # write an int for a batch count
    (["trainer.limit_train_batches=-2"], "trainer.limit_train_batches=-2"),
    (["model.monitor=val/msee"], "did you mean 'val/mse'"),
    (["model.monitor_mode=maximum"], "model.monitor_mode='maximum'"),
    (["model=full", "model/attention=linformer", "model.net.attention.max_len=40", "model.net.attention.k=8"],
     "max_len=40 is smaller than the 168 tokens of this run (7 variables x data.seq_len/model.net.patch_len = "
     "96/4 patches): set model.net.attention.max_len=168"),
])
def test_checks_name_the_key(compose_cfg, overrides, needle):
    cfg = compose_cfg(overrides)
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert needle in str(e.value)


def test_checks_accept(compose_cfg):
    for ov in (["seed=null"], ["seed=0"], ["trainer.devices=auto"], ["trainer.devices=[0,1]"],
               ["trainer.limit_val_batches=0.25"], ["trainer.val_check_interval=10"], ["model.monitor=val/mae"],
               ["callbacks=none"], ["logger=none"], ["callbacks.early_stopping=null"],
               # options of the installed Lightning and W&B that no schema of ours lists
               ["trainer.overfit_batches=2", "trainer.fast_dev_run=true", "trainer.inference_mode=false",
                "trainer.reload_dataloaders_every_n_epochs=1"], ["trainer.precision=null", "trainer.max_epochs=null"],
               ["+callbacks.early_stopping.log_rank_zero_only=true",
                "+callbacks.model_checkpoint.save_on_exception=true"],
               ["logger=wandb", "+logger.wandb.notes=a note", "+logger.wandb.mode=offline",
                "+logger.wandb.save_code=true"],
               ["model=full", "model/attention=linformer", "model.net.attention.max_len=168",
                "model.net.attention.k=8"],
               ["experiment=hot/forecasting_shared_head", "model.monitor=val/mse_336"]):
        validate(compose_cfg(ov))


def test_batch_limits_keep_the_users_type(compose_cfg):
    cfg = compose_cfg(["trainer.limit_val_batches=1", "trainer.limit_test_batches=0.5", "debug=fast"])
    assert cfg.trainer.limit_val_batches == 1 and type(cfg.trainer.limit_val_batches) is int
    assert type(cfg.trainer.limit_test_batches) is float
    assert type(cfg.trainer.limit_train_batches) is int  # debug=fast: 3 batches


def test_progress_bar_dropped_when_disabled_or_not_a_terminal(compose_cfg):
    cfg = compose_cfg(["trainer.enable_progress_bar=false"])
    assert drop_disabled_progress_bar(cfg, interactive=True) == ["rich_progress_bar"]
    assert "rich_progress_bar" not in cfg.callbacks
    validate(cfg)
    cfg = compose_cfg()
    assert drop_disabled_progress_bar(cfg, interactive=True) == [] and "rich_progress_bar" in cfg.callbacks
    assert drop_disabled_progress_bar(cfg, interactive=False) == ["rich_progress_bar"]
    assert cfg.trainer.enable_progress_bar is False


@pytest.mark.slow
def test_limit_val_batches_1_runs_one_batch_and_disabled_bar_builds(compose_cfg):
    """`trainer.limit_val_batches=1` validates on 1 batch (not 100 %); `enable_progress_bar=false` builds."""
    import lightning as L
    import torch
    from hydra.utils import instantiate

    cfg = compose_cfg(["trainer.limit_val_batches=1", "trainer.enable_progress_bar=false", "logger=none"])
    drop_disabled_progress_bar(cfg, interactive=True)
    validate(cfg)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]  # every default callback but the bar

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin, self.seen = torch.nn.Linear(2, 1), 0

        def validation_step(self, batch, i):
            self.seen += 1

        def val_dataloader(self):
            return torch.utils.data.DataLoader(torch.randn(10, 2), batch_size=2)  # 5 batches

    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=False, default_root_dir=None)
    model = Tiny()
    trainer.validate(model, verbose=False)
    assert model.seen == 1


# ----------------------------------------------------------------------------- errors
def test_user_error_found_behind_hydra_wrapping():
    from attnbench.attention.registry import CapabilityError, get, require
    from attnbench.data.download import DataError

    inner = ConfigError("x=1 is invalid")
    try:
        try:
            raise inner
        except ConfigError as e:
            raise InstantiationException("Error in call to target") from e
    except InstantiationException as outer:
        assert user_error(outer) is inner
    assert isinstance(user_error(DataError("missing")), DataError)
    with pytest.raises(CapabilityError) as e:
        require(get("nystrom"), causal=True)
    assert user_error(e.value) is e.value and isinstance(e.value, ValueError)
    assert user_error(RuntimeError("a bug")) is None


def test_gpu_trainer_without_gpu_names_trainer_cpu(compose_cfg):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    fix = gpu_missing(compose_cfg(["trainer=gpu"]))
    assert str(fix).startswith("trainer.accelerator=gpu but this machine has no CUDA GPU") and "trainer=cpu" in str(fix)
    assert gpu_missing(compose_cfg()) is None


@pytest.mark.slow
def test_missing_data_is_one_paragraph(compose_cfg, tmp_path, capsys):
    cfg = compose_cfg(["debug=fast", "data.download=false", f"paths.data_dir={tmp_path / 'nothing'}", "logger=none"],
                      output_dir=str(tmp_path))
    with pytest.raises(Exception) as e:
        run_with_results(cfg)
    fix = user_error(e.value)
    assert isinstance(fix, DataError)
    capsys.readouterr()  # what the run printed
    report(e.value, fix, str(tmp_path))
    err = capsys.readouterr().err
    assert err.startswith("error (DataError): ETTh1: ") and "prepare_data.py ETTh1" in err
    assert "Traceback (most recent call last)" not in err
    where = err.splitlines()[-1]  # the last line says where the traceback is
    assert where.startswith("(traceback: ") and where.endswith(f"{tmp_path / 'results.json'})")
    assert "DataError" in json.loads((tmp_path / "results.json").read_text())["error"]


@pytest.fixture
def hydra_logging():
    """Hydra's job logging (it replaces the root logger's handlers) undone after a run of ``cli.train`` here."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


def _datamodule_raises(monkeypatch, make) -> None:
    """The forecasting datamodule's constructor (called by Hydra's instantiate) raises ``make()``."""
    from attnbench.data.timeseries import TimeSeriesDataModule

    def init(self, *args, **kwargs):
        raise make()

    monkeypatch.setattr(TimeSeriesDataModule, "__init__", init)


MISSING = "ETTh1: no copy in this test's data folder"


@pytest.mark.parametrize("sweep", [False, True])
def test_error_of_ours_at_instantiate_is_one_paragraph_exit_2(tmp_path, monkeypatch, capsys, hydra_logging, sweep):
    """A DataError raised inside Hydra's instantiate (which wraps it in InstantiationException), in a single run
    and in each job of a -m sweep: the paragraph, exit 2; the sweep runs every job, each results.json failed with
    the DataError's own message, and ends with the first failure's paragraph instead of Hydra's stack."""
    _datamodule_raises(monkeypatch, lambda: DataError(MISSING))
    args = ["model=hot", "data=ett", "debug=fast", "logger=csv", f"paths.log_dir={tmp_path}"]
    assert _train([*(["-m", "seed=1,2"] if sweep else []), *args], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error (DataError): {MISSING}\n(traceback: ")
    assert "Traceback" not in err and "HYDRA_FULL_ERROR" not in err and "InstantiationException" not in err
    runs = sorted(tmp_path.rglob("results.json"))
    assert len(runs) == (2 if sweep else 1)
    for run in runs:
        r = json.loads(run.read_text())
        assert r["status"] == "failed" and r["error"] == f"DataError: {MISSING}"
        assert f"{run.parent}/results.json" in err  # its paragraph says where its traceback is
    if sweep:  # a paragraph per job as it fails, then the sweeper's first failure again, as the last paragraph
        assert err.count(f"error (DataError): {MISSING}") == 3
        first = err.split("Error executing job with overrides: ")[1].splitlines()
        assert first[1] == f"error (DataError): {MISSING}" and first[2].startswith("(traceback: ")
        assert str(runs[0].parent) in first[2]


@pytest.mark.parametrize("sweep", [False, True])
def test_a_bug_at_instantiate_is_reported_by_hydra_as_before(tmp_path, monkeypatch, capsys, hydra_logging, sweep):
    """Anything but an error of ours: Hydra's report (for an error in instantiate, its one-line summary and the
    HYDRA_FULL_ERROR hint), exit 1; the traceback in results.json."""
    _datamodule_raises(monkeypatch, lambda: KeyError("a bug"))
    args = ["model=hot", "data=ett", "debug=fast", "logger=csv", f"paths.log_dir={tmp_path}"]
    assert _train([*(["-m", "seed=1,2"] if sweep else []), *args], monkeypatch) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error executing job with overrides: ") and "KeyError('a bug')" in err
    assert "HYDRA_FULL_ERROR=1" in err and "error (" not in err
    runs = sorted(tmp_path.rglob("results.json"))
    assert len(runs) == (2 if sweep else 1)
    assert all("KeyError: 'a bug'" in json.loads(r.read_text())["traceback"] for r in runs)


def test_a_sweep_jobs_error_survives_pickling():
    """A job run by submitit returns its error pickled: the class and the note saying where its traceback is
    survive (a chain of causes would not: the job raises the error of ours itself)."""
    from attnbench.pretrained import PretrainedError

    for e in (DataError("missing"), PretrainedError("no model")):
        e.add_note("(traceback: x/results.json)")
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and user_error(back) is back and back.__notes__ == e.__notes__
    assert isinstance(PretrainedError("x"), OSError)  # as transformers' own "not found", for callers catching it



@pytest.mark.parametrize("folder", ["missing", "empty", "a file"])
def test_prepare_data_copy_that_finds_nothing_fails_naming_the_folder(tmp_path, capsys, folder):
    """``prepare_data.py glue --from DIR``: a folder that does not exist (or is a file) is said at once, exit 2; one
    that holds none of the group's files skips each, then fails naming the folder, exit 1."""
    from scripts.prepare_data import GROUPS, catalogue
    from scripts.prepare_data import main as prepare_data

    n, first, src = len(GROUPS["glue"]), catalogue()[GROUPS["glue"][0]].path, tmp_path / folder
    if folder == "empty":
        src.mkdir()
    elif folder == "a file":
        src.write_text("")
    rc = prepare_data(["glue", "--from", str(src), "--data-dir", str(tmp_path / "data")])
    out, err = capsys.readouterr()
    if folder == "empty":
        assert rc == 1 and out.count("skip glue_") == n and f"not in {src}" in out
        assert err == (f"error: --from {src} holds none of the {n} files of glue (looked for at "
                       f"{src / first}, ..., or by file name in the folder itself): name the folder "
                       "that holds them\n")
    else:
        assert rc == 2 and out == ""
        what = "is not a folder" if folder == "a file" else "does not exist"
        assert err == f"error: --from {src} {what}: name the folder that holds the files\n"
    assert not (tmp_path / "data").exists()


def test_prepare_data_copy_that_finds_some_files_succeeds(tmp_path, capsys):
    from scripts.prepare_data import GROUPS
    from scripts.prepare_data import main as prepare_data

    rte = tmp_path / "src" / "glue" / "RTE"
    rte.mkdir(parents=True)
    (rte / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    rc = prepare_data(["glue", "--from", str(tmp_path / "src"), "--data-dir", str(tmp_path / "data")])
    out, err = capsys.readouterr()
    assert "holds none" not in err and out.count("skip glue_") == len(GROUPS["glue"]) - 1
    assert rc == 1 and "glue_rte_dev" in err  # the one copied file fails its checksum: said, as before


# ----------------------------------------------------------------------------- list
def test_list_attention_models_experiments(capsys):
    assert main(["list", "attention"]) == 0
    out = capsys.readouterr().out
    assert "| `linformer` |" in out
    assert "- `linformer`: model.net.attention.max_len=<value> model.net.attention.k=<value>" in out
    assert "`reformer`:" not in out  # its yaml gives every option a value
    main(["list", "models"])
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("bert") and "smyrf_bert" in out and "_schema" not in out
    main(["list", "experiments"])
    assert "hot/forecasting " in capsys.readouterr().out


def test_list_data_marks_present_files(tmp_path, capsys):
    (tmp_path / "ETT-small").mkdir()
    (tmp_path / "ETT-small" / "ETTh2.csv").write_text("date,OT\n")
    main(["list", "data", "--data-dir", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert any(s.split()[:2] == ["ETTh2", "present"] for s in lines)
    assert any(s.split()[:2] == ["ETTh1", "missing"] for s in lines)


def test_python_m_attnbench_and_data_dir_env(monkeypatch, capsys):
    monkeypatch.setenv("DATA_DIR", str(SHARED_DATA))
    monkeypatch.setattr(sys, "argv", ["attnbench", "list", "data"])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("attnbench", run_name="__main__")
    assert e.value.code == 0
    assert f"data directory: {SHARED_DATA}" in capsys.readouterr().out


# ----------------------------------------------------------------------------- noise
def test_lightning_noise_filtered_precisely():
    def rec(msg: str) -> logging.LogRecord:
        return logging.LogRecord("lightning.pytorch.utilities.rank_zero", logging.INFO, "", 0, msg, (), None)

    assert not LIGHTNING_NOISE.filter(rec("💡 Tip: For seamless cloud logging and experiment tracking, ..."))
    assert not LIGHTNING_NOISE.filter(rec("Trainer already configured with model summary callbacks: [x]."))
    assert LIGHTNING_NOISE.filter(rec("GPU available: False, used: False"))


@pytest.mark.slow  # imports Lightning
def test_model_summary_without_zero_flops(caplog):
    from attnbench.callbacks import ModelSummary

    data = [(" ", ["0"]), ("Name", ["net"]), ("Type", ["Linear"]), ("Params", ["3"]), ("Mode", ["train"]),
            ("FLOPs", ["0"])]
    with caplog.at_level(logging.INFO, logger="attnbench.callbacks"):
        ModelSummary.summarize(data, 3, 3, 1e-5, {"train": 1, "eval": 0}, 0)
        ModelSummary.summarize(data[:-1] + [("FLOPs", ["12"])], 3, 3, 1e-5, {"train": 1, "eval": 0}, 12)
    zero, counted = (r.getMessage() for r in caplog.records)
    assert "Total params" in zero and "FLOPs" not in zero and "Flops" not in zero
    assert "FLOPs" in counted and "Total Flops" in counted
