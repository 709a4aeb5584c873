"""bench/readme_debug.py: the README's single-run lines, parsed, filtered and run with debug=fast."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from attnbench.bench.harness import load_config
from attnbench.bench.readme_debug import command, markdown, needs, readme_train_lines, run, why_failed

README = """Some text: python train.py model=hot is prose, not a command line.

```bash
python train.py model=hot data=ett            # a comment
DATA_DIR=../shared/data WANDB_MODE=offline python train.py logger=wandb \\
    tags=[a]
python train.py -m experiment=hot/forecasting   # a multirun: not a single run
python train.py model=hot data=ett            # the same line again
python train.py model=bert model.net.pretrained=<checkpoint or hub id> ...
```
"""


def test_lines_are_parsed_as_a_user_pastes_them():
    lines = readme_train_lines(README)
    assert lines == [
        ({}, ["model=hot", "data=ett"]),
        ({"DATA_DIR": "../shared/data", "WANDB_MODE": "offline"}, ["logger=wandb", "tags=[a]"]),
        ({}, ["model=bert", "model.net.pretrained=", "..."]),
    ]


def test_what_a_line_needs_is_named():
    assert needs({}, ["trainer=gpu"], cuda=False) == "needs a GPU (trainer=gpu / ddp)"
    assert needs({}, ["trainer=gpu"], cuda=True) is None
    assert needs({}, ["logger=wandb"], cuda=False) == "logs to W&B (a login and the network)"
    assert needs({"WANDB_MODE": "offline"}, ["logger=wandb"], cuda=False) is None
    assert needs({}, ["model.net.pretrained="], cuda=False) == \
        "needs a value of the user's own (model.net.pretrained=<...>)"
    assert needs({}, ["train=false", "ckpt_path=outputs/.../last.ckpt"], cuda=False) == \
        "needs a value of the user's own (ckpt_path=outputs/.../last.ckpt)"
    assert needs({}, ["model=hot", "..."], cuda=False) is None  # "and more": dropped
    assert needs({}, ["data.data_dir=/no/such/scans"], cuda=False) == \
        "names a folder of the user's own (data.data_dir=/no/such/scans)"
    assert needs({}, ["model=hot", "data.data_dir=/tmp"], cuda=False) is None


def test_a_line_runs_with_debug_fast_and_the_data_folder():
    assert command({}, ["model=hot", "trainer.max_epochs=40", "..."], "D") == \
        ["model=hot", "paths.data_dir=D", "debug=fast"]
    assert command({"DATA_DIR": "x"}, ["model=hot"], "D") == ["model=hot", "debug=fast"]
    assert command({}, ["paths.data_dir=../shared/data", "debug=limit"], "D") == \
        ["paths.data_dir=../shared/data", "debug=fast"]


def test_a_failure_is_told_by_the_error_its_run_recorded(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"status": "failed", "error": "ConfigError: x=1\n is bad"}))
    assert why_failed(tmp_path, "error: x=1 is bad\n(traceback: a.log)\n") == "ConfigError: x=1 is bad"
    assert why_failed(tmp_path / "none", "error: x=1\n  is bad\n(traceback: a.log)\n") == "is bad"
    assert why_failed(tmp_path / "none", "") == "(no output)"


def test_the_report_counts_the_lines_within_the_limit():
    df = pd.DataFrame([
        {"line": 0, "command": "python train.py a debug=fast", "status": "ok", "wall_s": 12.0, "reason": ""},
        {"line": 1, "command": "python train.py b debug=fast", "status": "ok", "wall_s": 75.0, "reason": ""},
        {"line": 2, "command": "python train.py c debug=fast", "status": "failed", "wall_s": 5.0, "reason": "error: x"},
        {"line": 3, "command": "python train.py d debug=fast", "status": "skipped", "wall_s": float("nan"),
         "reason": "needs a GPU (trainer=gpu / ddp)"},
    ])
    machine = {"command": "python -m attnbench.bench.readme_debug", "device_name": "cpu", "device": "cpu",
               "torch": "2", "threads": 1, "wall_s": 92.0, "loadavg_start": [0.1], "loadavg_end": [0.2]}
    md = markdown(df, 60.0, machine)
    assert "1 of 3 lines that ran answered (exit 0) within 60 s; 1 skipped" in md
    assert "| –" in md and "`python train.py a debug=fast`" in md and "error: x" in md


def test_config_names_a_bad_key():
    with pytest.raises(Exception, match="limit_s"):
        load_config("readme_debug", ["limit_s=0"])


def test_runs_each_line_and_records_how_it_ended(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("python train.py --cfg job\npython train.py trainer=gpu\npython train.py model=no_such_model\n")
    cfg = load_config("readme_debug", [f"readme={readme}", f"out_dir={tmp_path / 'out'}", f"data_dir={tmp_path}"])
    df = run(cfg, "test")
    assert df["status"].iloc[0] == "ok" and df["status"].iloc[2] == "failed"
    if not torch.cuda.is_available():
        assert df["status"].iloc[1] == "skipped" and df["reason"].iloc[1].startswith("needs a GPU")
    assert df["wall_s"].iloc[0] > 0 and "no_such_model" in df["reason"].iloc[2]
    machine = json.loads((tmp_path / "out" / "machine.json").read_text())
    assert machine["bench"] == "readme_debug" and machine["command"] == "test"
    assert (tmp_path / "out" / "readme_debug.md").read_text().count("\n| ") == 4  # the header and one row a line
