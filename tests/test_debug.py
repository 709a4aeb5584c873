"""debug=fast | limit | overfit | profile: every model x data pair the README shows composes, validates and is
shrunk (batches of 4, a few batches, one epoch; LRA reads 64 examples a split); the run says what debug set;
overfit's loss falls; profile writes Lightning's report into the run folder."""

from __future__ import annotations

import pandas as pd
import pytest

from attnbench.bench.readme_debug import readme_train_lines
from attnbench.config import validate
from attnbench.train import debug_settings
from tests.conftest import QUICK, ROOT, compose_train, train_run


def readme_pairs() -> list[tuple[str, str, tuple[str, ...]]]:
    """(model, data, the line's other overrides) of every single-run ``python train.py`` line of the
    README (model / data: "" where the line leaves them to the defaults or its experiment)."""
    pairs = []
    for _, args in readme_train_lines((ROOT / "README.md").read_text()):
        model = next((a.split("=", 1)[1] for a in args if a.startswith("model=")), "")
        data = next((a.split("=", 1)[1] for a in args if a.startswith("data=")), "")
        extra = tuple(a for a in args if not a.startswith(("-", "model=", "data=", "debug=")) and "..." not in a
                      and not a.endswith("=") and a != "job" and not a.startswith("trainer.max_epochs="))
        pairs.append((model, data, extra))
    return sorted(set(pairs))


PAIRS = readme_pairs()


def test_the_readme_shows_the_pairs_we_shrink():
    assert len(PAIRS) >= 10
    shown = {(model, data) for model, data, _ in PAIRS}
    assert {("lra_encoder", "lra"), ("smyrf_bert", "glue"), ("hot3d", "medmnist3d"), ("cab_lm", "corpus")} <= shown


@pytest.mark.parametrize(("model", "data", "extra"), PAIRS)
def test_debug_fast_shrinks_every_readme_pair(model, data, extra):
    groups = [f"{k}={v}" for k, v in (("model", model), ("data", data)) if v]
    cfg = compose_train([*groups, *extra, "debug=fast", "paths.output_dir=/tmp/x"])
    validate(cfg)
    assert cfg.task_name == "debug" and cfg.trainer.max_epochs == 1
    assert (cfg.trainer.limit_train_batches, cfg.trainer.limit_val_batches, cfg.trainer.limit_test_batches) == (3, 2, 2)
    assert cfg.trainer.val_check_interval is None  # a preset's step-based validation would never come
    assert cfg.data.batch_size == cfg.data.eval_batch_size == 4
    if data == "lra":
        assert cfg.data.limit_examples == 64  # the released ListOps has 96k expressions to read


def test_lra_debug_fast_beats_the_presets_steps_and_batches():
    """An experiment's preset (1,000 steps, validation every 250) is overridden: debug comes after it; one epoch
    of 3 batches ends the run long before max_steps, which stays (a cosine schedule's cycle is read from it)."""
    cfg = compose_train(["experiment=lra/cpu/listops", "debug=fast", "paths.output_dir=/tmp/x"])
    assert cfg.trainer.max_epochs == 1 and cfg.trainer.limit_train_batches == 3 and cfg.trainer.max_steps == 1000
    assert cfg.trainer.val_check_interval is None and cfg.trainer.check_val_every_n_epoch == 1
    assert cfg.data.batch_size == 4 and cfg.data.limit_examples == 64


def test_the_run_lists_what_debug_set_with_the_values_it_uses():
    cfg = compose_train(["model=lra_encoder", "data=lra", "debug=fast", "data.batch_size=2",
                         "paths.output_dir=/tmp/x"])
    got = debug_settings(cfg, {"debug": "fast", "data": "lra"})
    assert "data.batch_size=2" in got  # the command line wins, and the line says so
    assert {"trainer.limit_train_batches=3", "trainer.max_epochs=1", "data.limit_examples=64"} <= set(got)
    assert not any(s.startswith("task_name") for s in got)
    assert debug_settings(cfg, {"debug": None, "data": "lra"}) == []
    ett = debug_settings(compose_train(["debug=fast", "paths.output_dir=/tmp/x"]), {"debug": "fast", "data": "ett"})
    assert not any("limit_examples" in s for s in ett)  # LRA's own delta only on LRA


@pytest.mark.parametrize("name", ["limit", "overfit", "profile"])
def test_the_other_debug_configs_compose_and_validate(name):
    cfg = compose_train([f"debug={name}", "paths.output_dir=/tmp/x"])
    validate(cfg)
    assert cfg.task_name == "debug"
    if name == "overfit":
        assert cfg.trainer.overfit_batches == 3 and cfg.trainer.max_epochs == 20
        assert cfg.callbacks.get("early_stopping") is None
    if name == "limit":
        assert cfg.trainer.max_epochs == 3 and isinstance(cfg.trainer.limit_val_batches, int)


NO_DEBUG = [o for o in QUICK if o != "debug=fast"]


@pytest.mark.slow
def test_overfit_drives_the_training_loss_down(tmp_path, synth_data_dir):
    train_run([*NO_DEBUG, "debug=overfit", "model=dlinear", f"paths.data_dir={synth_data_dir}"], tmp_path)
    loss = pd.read_csv(tmp_path / "csv" / "metrics.csv")["train/loss_epoch"].dropna().to_numpy()
    assert len(loss) == 20 and loss[-1] < 0.95 * loss[0]


@pytest.mark.slow
def test_profile_writes_the_simple_profilers_report(tmp_path, synth_data_dir):
    train_run([*NO_DEBUG, "debug=profile", "model=dlinear", f"paths.data_dir={synth_data_dir}"], tmp_path)
    report = (tmp_path / "fit-profile.txt").read_text()
    assert "run_training_batch" in report and "Total" in report
