"""``config.checks.token_count``: the tokens one sequence of each forecaster holds, which a fixed-length attention
(Linformer's ``max_len``) must cover: PatchTST's patches of one variable (channel independence), iTransformer's
variables and calendar features, the patch forecaster's variables x patches; and a PatchTST run at that count."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hydra.utils import instantiate

from attnbench.config import ConfigError, token_count, validate
from attnbench.config.checks import patchtst_patches
from attnbench.models.patchtst import n_patches
from tests.conftest import QUICK, train_run

LINFORMER = ["model/attention=linformer", "model.net.attention.k=8"]
SMALL = ["model.net.d_model=16", "model.net.d_ff=32", "model.net.n_heads=2", "model.net.e_layers=1"]


def test_the_checks_patch_count_is_the_models():
    for seq_len in (1, 5, 16, 36, 96, 97, 336):
        for patch_len in range(1, min(seq_len, 24) + 1):
            for stride in (1, 2, 3, 8, 12, 16):
                assert patchtst_patches(seq_len, patch_len, stride) == n_patches(seq_len, patch_len, stride)


@pytest.mark.parametrize(("overrides", "n"), [
    ([], (96 - 16) // 8 + 2),                                            # 12
    (["data.features=S"], 12),                                           # one variable: the same sequences
    (["model.net.patch_len=24", "model.net.stride=12"], (96 - 24) // 12 + 2),
    (["data=illness", "data.seq_len=36"], (36 - 16) // 8 + 2),           # ILI's lookback: 4
])
def test_patchtst_counts_the_patches_of_one_variable(compose_cfg, overrides, n):
    """Each variable is a sequence of its own: not variables x patches."""
    cfg = compose_cfg(["model=patchtst", *overrides])
    assert token_count(cfg)[0] == n
    net = instantiate(compose_cfg(["model=patchtst", *SMALL, *overrides]).model.net)
    assert net.n_patches == n


def test_patchtst_with_linformer_is_checked_at_its_patch_count(compose_cfg):
    validate(compose_cfg(["model=patchtst", *LINFORMER, "model.net.attention.max_len=12"]))
    with pytest.raises(ConfigError, match=re.escape(
            "model.net.attention.max_len=11 is smaller than the 12 tokens of this run (the patches of one variable, "
            "each variable a sequence of its own: (data.seq_len - model.net.patch_len) // model.net.stride + 2 = "
            "(96 - 16) // 8 + 2): set model.net.attention.max_len=12 (or more)")):
        validate(compose_cfg(["model=patchtst", *LINFORMER, "model.net.attention.max_len=11"]))


@pytest.mark.parametrize(("overrides", "n"), [
    ([], 7 + 4),                                 # ETTh1's 7 variables + hour, weekday, day of month, day of year
    (["model.net.calendar_tokens=false"], 7),
    (["data.features=S"], 1 + 4),
    (["data.features=MS"], 7 + 4),
])
def test_itransformer_counts_a_token_per_variable_and_calendar_feature(compose_cfg, overrides, n):
    cfg = compose_cfg(["model=itransformer", *overrides])
    assert token_count(cfg)[0] == n
    net = instantiate(compose_cfg(["model=itransformer", *SMALL, *overrides]).model.net)
    n_vars = 1 if "data.features=S" in overrides else 7
    marks = torch.rand(2, 96, 4) if net.calendar_tokens else None
    seen = []
    hook = net.encoder[0].register_forward_hook(lambda m, args, out: seen.append(out.shape[1]))
    net(torch.randn(2, 96, n_vars), marks)
    hook.remove()
    assert seen == [n]


def test_the_patch_forecaster_counts_variables_times_patches(compose_cfg):
    assert token_count(compose_cfg(["model=full"]))[0] == 7 * 96 // 4
    assert token_count(compose_cfg(["model=full", "data.features=S"]))[0] == 96 // 4


def test_patchtst_with_linformer_at_its_patch_count_trains(tmp_path, synth_data_dir):
    res = train_run([*QUICK, "model=patchtst", "data=ett", f"paths.data_dir={synth_data_dir}", *SMALL, *LINFORMER,
                     "model.net.attention.max_len=12"], tmp_path)
    assert res["status"] == "ok" and res["error"] is None
    assert math.isfinite(res["metrics"]["test/mse"])
