"""The LRA encoder (models/lra.py), its schedule (lit/schedules.py), configs and table."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math

import pytest
import torch

from attnbench import attention
from attnbench.attention.registry import CapabilityError
from attnbench.data.catalog.lra import LRA_TASKS, PAD_ID
from attnbench.layers.attention import MultiAxisAttention
from attnbench.lit.schedules import LRAFactors, lra_schedule
from attnbench.models.lra import LRAEncoder, pool, sinusoidal_table
from tests.test_attention_contract import TEST_VALUES

SMALL = {"d_model": 16, "n_heads": 2, "n_layers": 2, "d_mlp": 24}


def options(name: str) -> dict:
    """An attention node for entry ``name``: TEST_VALUES for its required options, ``max_len`` left to the model."""
    params = inspect.signature(attention.get(name).__init__).parameters
    opts = {p: TEST_VALUES[p] for p, v in params.items() if p != "self" and v.default is inspect.Parameter.empty
            and p not in ("head_dim", "n_heads", "max_len")}
    if "max_len" in params:
        opts["max_len"] = None  # filled by the encoder (its length, + 1 with CLS)
    if "dropout" in params:
        opts["dropout"] = 0.0
    return {"name": name, **opts}


def tokens(B: int, L: int, real: list[int], vocab: int = 20, seed: int = 0) -> torch.Tensor:
    """(B, L) ids in [1, vocab), row b padded (PAD_ID) after real[b] tokens."""
    x = torch.randint(1, vocab, (B, L), generator=torch.Generator().manual_seed(seed))
    for b, n in enumerate(real):
        x[b, n:] = PAD_ID
    return x


# ----------------------------------------------------------------------------- shapes and sizes
@pytest.mark.parametrize("pooling", ["cls", "mean", "sum"])
@pytest.mark.parametrize("pos_emb", ["sinusoidal", "learned"])
def test_shapes_for_every_pooling_and_position_table(pooling, pos_emb):
    torch.manual_seed(0)
    m = LRAEncoder(20, 3, 12, {"name": "full"}, pooling=pooling, pos_emb=pos_emb, **SMALL).eval()
    x = tokens(4, 12, [12, 7, 3, 12])
    out = m(x)
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    assert m.pos.shape == (1, 12 + (pooling == "cls"), 16)
    assert isinstance(m.pos, torch.nn.Parameter) == (pos_emb == "learned")
    assert m(x[:, :9]).shape == (4, 3)  # shorter inputs use the first rows of the table
    with pytest.raises(ValueError, match="input length 13 > max_len=12"):
        m(tokens(1, 13, [13]))


@pytest.mark.parametrize("interaction", ["nli", "concat"])
def test_two_tower_shares_one_encoder_and_combines_as_asked(interaction):
    torch.manual_seed(0)
    m = LRAEncoder(20, 2, 10, {"name": "full"}, two_tower=True, interaction=interaction, **SMALL).eval()
    assert m.head[0].in_features == 16 * (4 if interaction == "nli" else 2)
    assert [lin.out_features for lin in m.head if isinstance(lin, torch.nn.Linear)] == [24, 12, 2]
    x = torch.stack([tokens(3, 10, [10, 4, 6], seed=1), tokens(3, 10, [8, 10, 2], seed=2)], 1)  # (B, 2, L)
    e1, e2 = m.encode(x[:, 0]), m.encode(x[:, 1])
    feats = [e1, e2, e1 * e2, e1 - e2] if interaction == "nli" else [e1, e2]
    torch.testing.assert_close(m(x), m.head(torch.cat(feats, -1)))
    with pytest.raises(ValueError, match=r"two-tower model takes tokens \(B, 2, L\)"):
        m(x[:, 0])
    with pytest.raises(ValueError, match="model.net.two_tower=true"):
        LRAEncoder(20, 2, 10, {"name": "full"}, **SMALL)(x)


def test_parameter_count_of_the_released_listops_config_equals_the_formula():
    """base_listops_config.py: vocab 16 (15 tokens + padding), 10 classes, width 512 = qkv, 8 heads, 4 layers,
    MLP 1024, CLS, sinusoidal positions (no parameters), attention without biases."""
    V, C, E, M, n = 16, 10, 512, 1024, 4
    block = 2 * (2 * E) + 4 * E * E + (E * M + M + M * E + E)  # two LayerNorms, q/k/v/o, MLP
    expect = V * E + E + n * block + 2 * E + (E * M + M + M * C + C)  # embed, CLS, blocks, final LN, head
    m = LRAEncoder(V, C, 2000, {"name": "full"}, d_model=E, n_heads=8, n_layers=n, d_mlp=M)
    assert sum(p.numel() for p in m.parameters()) == expect == 8_948_234


def test_qkv_width_differs_from_the_model_width():
    """Image's released config: width 128, qkv 64, 8 heads (head size 8)."""
    m = LRAEncoder(256, 10, 16, {"name": "full"}, d_model=128, n_heads=8, n_layers=1, d_mlp=128, qkv_dim=64)
    a = m.layers[0].attn
    assert (a.q_proj.weight.shape, a.o_proj.weight.shape, a.head_dim) == ((64, 128), (128, 64), 8)
    assert a.q_proj.bias is None  # the official attention has no biases
    assert m(tokens(2, 16, [16, 16], vocab=256)).shape == (2, 10)
    with pytest.raises(ValueError, match="n_heads=3 must divide qkv_dim=64"):
        MultiAxisAttention(128, 3, 1, {"name": "full"}, qkv_dim=64)
    with pytest.raises(ValueError, match="qkv_dim=8 != d_model=16.*'optimised'"):
        MultiAxisAttention(16, 2, 1, {"name": "optimised"}, qkv_dim=8)


def test_fixed_length_entries_get_the_encoder_length():
    m = LRAEncoder(20, 3, 12, options("linformer"), **SMALL)
    assert m.layers[0].attn.attn.max_len == 13  # 12 tokens + the CLS
    m = LRAEncoder(20, 3, 12, {**options("linformer"), "max_len": 40}, pooling="mean", **SMALL)
    assert m.layers[0].attn.attn.max_len == 40  # a value set in the config wins


def test_official_initialisation():
    torch.manual_seed(0)
    m = LRAEncoder(300, 10, 8, {"name": "full"}, d_model=64, n_heads=4, n_layers=1, d_mlp=256, pos_emb="learned")
    assert abs(m.embed.weight.std().item() - 1.0) < 0.05  # N(0, 1)
    assert abs(m.pos.std().item() - 0.02) < 0.003 and torch.equal(m.cls, torch.zeros(1, 1, 64))
    w = m.layers[0].attn.q_proj.weight  # xavier-uniform: U(+-sqrt(6 / (fan_in + fan_out)))
    assert w.abs().max() <= math.sqrt(6 / 128) and w.abs().max() > 0.9 * math.sqrt(6 / 128)
    assert m.layers[0].mlp.w1.bias.abs().max() < 1e-5
    assert torch.equal(m.head[0].bias, torch.zeros(256))
    torch.testing.assert_close(sinusoidal_table(3, 4), torch.tensor(
        [[0.0, 1.0, 0.0, 1.0], [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)],
         [math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)]]))


# ----------------------------------------------------------------------------- padding
KEY_PADDING = [pytest.param(n, marks=pytest.mark.skipif(not attention.get(n).caps.key_padding_mask,
                                                         reason="no key padding mask")) for n in attention.available()]


@pytest.mark.parametrize("name", KEY_PADDING)
def test_padded_tokens_do_not_change_the_real_outputs(name):
    """The padding id's embedding (what padded positions carry through every block) changes no logit (nystrom:
    its query landmarks leave the padded queries out, ``query_padding_mask``)."""
    torch.manual_seed(0)
    for pooling in ("cls", "mean"):
        m = LRAEncoder(20, 3, 12, options(name), pooling=pooling, **SMALL).eval()
        x = tokens(3, 12, [12, 7, 3])
        with torch.no_grad():
            out = m(x)
            m.embed.weight[PAD_ID] = 5.0 * torch.randn(16)
            torch.testing.assert_close(m(x), out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean", "sum"])
def test_the_amount_of_padding_changes_nothing_with_full_attention(pooling):
    torch.manual_seed(0)
    m = LRAEncoder(20, 3, 40, {"name": "full"}, pooling=pooling, **SMALL).eval()
    x = tokens(2, 12, [12, 5])
    padded = torch.cat([x, torch.zeros(2, 20, dtype=x.dtype)], 1)  # (2, 32)
    torch.testing.assert_close(m(padded), m(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m(x[1:, :5]), m(x)[1:], atol=1e-5, rtol=1e-5)  # no padding at all


def test_pool_formulas():
    h = torch.arange(12.0).reshape(1, 4, 3)
    mask = torch.tensor([[True, True, False, False]])
    torch.testing.assert_close(pool(h, mask, "mean"), torch.tensor([[1.5, 2.5, 3.5]]))
    torch.testing.assert_close(pool(h, mask, "sum"), torch.tensor([[3.0, 5.0, 7.0]]))
    torch.testing.assert_close(pool(h, None, "mean"), h.mean(1))
    torch.testing.assert_close(pool(h, mask, "cls"), h[:, 0])


def test_without_key_padding_every_token_is_attended():
    """key_padding=False (Image, Pathfinder): token 0 (a black pixel) is an ordinary token."""
    torch.manual_seed(0)
    m = LRAEncoder(20, 3, 12, {"name": "full"}, key_padding=False, pooling="mean", **SMALL).eval()
    x = tokens(1, 12, [8])
    out = m(x)
    with torch.no_grad():
        m.embed.weight[PAD_ID] = 5.0 * torch.randn(16)
    assert not torch.allclose(m(x), out, atol=1e-3)


def test_an_entry_without_a_padding_mask_is_refused_only_when_the_task_pads(monkeypatch):
    cls = attention.get("linear")
    monkeypatch.setattr(cls, "caps", dataclasses.replace(cls.caps, key_padding_mask=False))
    able = {n for n in attention.available() if attention.get(n).caps.key_padding_mask}
    with pytest.raises(CapabilityError, match="'linear' does not support key_padding_mask=True; entries that do") as e:
        LRAEncoder(20, 3, 12, {"name": "linear"}, **SMALL)
    assert set(str(e.value).split("entries that do: ")[1].split(", ")) == able
    m = LRAEncoder(20, 3, 12, {"name": "linear"}, key_padding=False, **SMALL)  # no padding: any entry
    assert m(tokens(2, 12, [12, 12])).shape == (2, 3)


# ----------------------------------------------------------------------------- schedule
def test_lra_rsqrt_schedule_formula_and_peak():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    sched = lra_schedule(opt, "linear_warmup * rsqrt_decay", warmup_steps=1000)
    lrs = []
    for _ in range(4001):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0  # step 0: the official loop's first update has lr 0
    assert lrs[500] == pytest.approx(0.05 * 0.5 / math.sqrt(1000))
    assert max(lrs) == pytest.approx(0.05 / math.sqrt(1000)) == pytest.approx(1.5811e-3, rel=1e-4)
    assert lrs.index(max(lrs)) == 1000
    assert lrs[4000] == pytest.approx(0.05 / math.sqrt(4000))


def test_lra_cosine_schedule_formula_and_refusals():
    f = LRAFactors("linear_warmup * cosine_decay", warmup_steps=10, steps_per_cycle=100)
    assert [f(0), f(5), f(10)] == [0.0, 0.5, 1.0]
    assert f(60) == pytest.approx(0.5) and f(109) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
    assert f(110) == 1.0  # cyclic: (step - warmup) / steps_per_cycle mod 1 restarts the cosine
    with pytest.raises(ValueError, match="unknown factor 'rsqrt'; allowed: linear_warmup, rsqrt_decay, cosine_decay"):
        LRAFactors("linear_warmup * rsqrt", 10)
    with pytest.raises(ValueError, match="cosine_decay needs a cycle"):
        LRAFactors("cosine_decay", 10)
    sched = lra_schedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), "rsqrt_decay", 4)
    assert sched.state_dict()["lr_lambdas"] == [{"factors": ["rsqrt_decay"], "warmup_steps": 4,
                                                 "steps_per_cycle": None}]  # plain data in checkpoints


# ----------------------------------------------------------------------------- task catalogue
def test_the_catalogue_agrees_with_each_task_module():
    for name, task in LRA_TASKS.items():
        try:
            module = importlib.import_module(f"attnbench.data.lra.{name}")
        except ModuleNotFoundError:
            continue  # not written yet
        assert task == module.INFO, f"attnbench.data.lra.{name}.INFO != data.catalog.lra.LRA_TASKS[{name!r}]"


# ----------------------------------------------------------------------------- configs
EXPERIMENTS = [f"lra/{p}{t}" for p in ("", "cpu/") for t in LRA_TASKS]
RELEASED = {  # lra_benchmarks/*/configs/base_*_config.py + transformer_base.py
    "listops": (512, 8, 4, 1024, 512, "cls", 0.05, 1000, 5000, 32),
    "text": (256, 4, 4, 1024, 256, "cls", 0.05, 8000, 20000, 32),
    "retrieval": (128, 4, 4, 512, 128, "cls", 0.05, 8000, 5000, 32),
    "image": (128, 8, 1, 128, 64, "cls", 5e-4, 175, 35000, 256),
    "pathfinder": (32, 4, 4, 32, 16, "mean", 1e-3, 312, 62400, 512),
}


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from attnbench.config import register_configs
    from tests.conftest import ROOT

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose("train", overrides=["paths.output_dir=/tmp/attnbench-test", *overrides],
                           return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_lra_experiment_composes_with_its_task_sizes(experiment):
    from attnbench.config import LRAModelConfig, check_schema, resolved

    cfg = _compose([f"experiment={experiment}"])
    task = LRA_TASKS[cfg.data.task]
    model = resolved(cfg.model)
    check_schema("model", LRAModelConfig, model)  # every value in range, the attention accepted
    net = model["net"]
    assert (net["vocab_size"], net["n_classes"], net["two_tower"]) == (task.vocab_size, task.num_classes,
                                                                      task.two_tower)
    assert net["max_len"] == cfg.data.max_len and cfg.test_ckpt == "last"  # the official tests the last weights
    assert model["optimizer"]["betas"] == [0.9, 0.98] and model["optimizer"]["eps"] == 1e-9
    assert model["scheduler_interval"] == "step" and cfg.callbacks.early_stopping is None
    if not experiment.startswith("lra/cpu/"):
        E, H, n, M, qkv, pooling, lr, warmup, steps, batch = RELEASED[cfg.data.task]
        assert (net["d_model"], net["n_heads"], net["n_layers"], net["d_mlp"], net["qkv_dim"], net["pooling"]) == (
            E, H, n, M, qkv, pooling)
        assert (model["optimizer"]["lr"], model["scheduler"]["warmup_steps"], cfg.trainer.max_steps,
                cfg.data.batch_size) == (lr, warmup, steps, batch)
    else:
        assert net["d_model"] <= 64 and net["n_layers"] <= 2 and cfg.trainer.max_steps <= 1000
    cosine = cfg.data.task in ("image", "pathfinder")  # no padding: no mask; cosine schedule
    assert net["key_padding"] == (not cosine)
    assert model["scheduler"]["factors"] == ("linear_warmup * cosine_decay" if cosine else
                                             "linear_warmup * rsqrt_decay")


def test_the_table_sweeps_tasks_and_attentions():
    """(Every job composes and validates: tests/test_experiments.py.)"""
    cfg = _compose(["experiment=lra/table"])
    params = cfg.hydra.sweeper.params
    tasks, atts = params["lra_task"].split(","), params["model/attention"].split(",")
    assert tasks == ["cpu/listops", "cpu/text"] and len(params["seed"].split(",")) == 3
    # LRA Table 1's eleven models (full = Transformer, ...) plus this project's SMYRF, Treeformer TF / TC
    assert atts == ["full", "linear", "performer", "nystrom", "local", "smyrf", "treeformer_tf", "treeformer_tc",
                    "reformer", "lra/linformer", "sparse_transformer", "longformer", "bigbird", "sinkhorn",
                    "synthesizer"]
    from attnbench import attention

    assert {a.removeprefix("lra/") for a in atts} <= set(attention.available())
    from attnbench.config import resolved

    cfg = _compose(["experiment=lra/table", "lra_task=cpu/text", "model/attention=lra/linformer"])
    model = resolved(cfg.model)
    assert cfg.data.task == "text"
    assert model["net"]["attention"]["max_len"] is None and model["net"]["attention"]["k"] == 16  # from the model
    from attnbench.analysis.spec import experiment_spec

    spec = experiment_spec("lra/table")
    assert (spec.kind, spec.rows, spec.metrics, spec.reference) == ("tasks", ["task"], ["acc"], "lra")


def test_a_task_the_catalogue_does_not_know_is_named():
    from attnbench.config import ConfigError, resolved

    cfg = _compose(["experiment=lra/cpu/listops", "data.task=listopz"])
    with pytest.raises(ConfigError, match=r"data.task='listopz' is invalid \(did you mean 'listops'\?\); allowed: "
                                          r"listops, text, retrieval, image, pathfinder"):
        resolved(cfg.model)


# ----------------------------------------------------------------------------- table
def _job(root, num: int, attention_name: str, task: str, acc: float | None, seed: int, status: str = "ok"):
    import json

    d = root / str(num)
    d.mkdir(parents=True)
    block = _compose(["experiment=lra/table"]).table
    from omegaconf import OmegaConf

    result = {"status": status, "error": None if status == "ok" else "boom",
              "metrics": {} if acc is None else {"test/acc": acc},
              "choices": {"model": "lra_encoder", "model/attention": attention_name, "experiment": "lra/table",
                          "lra_task": f"cpu/{task}"},
              "overrides": [f"seed={seed}", f"lra_task=cpu/{task}", f"model/attention={attention_name}"],
              "config": {"seed": seed, "model": {"net": {"attention": {"name": attention_name.split("/")[-1]}}},
                         "data": {"task": task}, "table": OmegaConf.to_container(block)}}
    (d / "results.json").write_text(json.dumps(result))


def test_the_lra_table_renders_ours_beside_table_1_with_an_average(tmp_path):
    from attnbench.analysis.report import write_table

    sweep = tmp_path / "sweep"
    jobs = [("full", "listops", 0.36, 0), ("full", "listops", 0.38, 1), ("full", "text", 0.60, 0),
            ("lra/linformer", "listops", 0.30, 0), ("lra/linformer", "text", None, 0)]
    for i, (att, task, acc, seed) in enumerate(jobs):
        _job(sweep, i, att, task, acc, seed, "ok" if acc is not None else "failed")
    md, paths = write_table(sweep)
    assert "| model | ListOps | Text | Avg |" in md
    assert "| ours: full | 37.00 ± 1.41 (n=2) | 60.00 (n=1) | 48.50 |" in md
    assert "| ours: linformer | 30.00 (n=1) | failed | – |" in md
    assert "| Transformer | 36.37 | 64.27 | 50.32 |" in md  # Avg over the tasks shown
    assert "| Sinkhorn Trans. | 33.67 | 61.20 | 47.44 |" in md  # its printed Avg is unconfirmed, not shown here
    assert "- linformer / text: failed: boom" in md and "The paper's Avg (all five tasks)" in md
    assert {p.name for p in paths} >= {"table.md", "table.tex", "table.csv", "runs.csv"}


def test_the_reference_holds_table_1():
    from attnbench.analysis.reference import load_reference

    ref = load_reference("lra")
    assert len(ref) == 11 * 6 and set(ref["row"]) == {*LRA_TASKS, "avg"}
    wide = ref.pivot(index="column", columns="row", values="value")
    means = wide[list(LRA_TASKS)].mean(axis=1)
    off = (means - wide["avg"]).abs()
    assert list(off[off > 0.006].index) == ["Sinkhorn Trans."]  # printed 51.39, the five tasks average 51.476
    assert not ref[(ref["column"] == "Sinkhorn Trans.") & (ref["row"] == "avg")]["confirmed"].item()
    assert wide.loc["Transformer", "listops"] == 36.37 and wide.loc["Performer", "pathfinder"] == 77.05


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def listops_dir(tmp_path_factory):
    from attnbench.data.lra.listops import ListOpsSpec, write_splits

    d = tmp_path_factory.mktemp("data")
    write_splits(d / "lra" / "listops", ListOpsSpec(n_train=24, n_val=8, n_test=8, min_length=10, max_length=60))
    return d


QUICK_LRA = ["debug=fast", "logger=csv", "~callbacks.rich_progress_bar", "trainer.enable_progress_bar=false",
             "data.batch_size=4"]


def test_the_cpu_listops_experiment_trains_and_tests_with_a_fixed_length_entry(listops_dir, tmp_path):
    from tests.conftest import train_run

    res = train_run(["experiment=lra/cpu/listops", "model/attention=lra/linformer", "seed=0", *QUICK_LRA,
                     f"paths.data_dir={listops_dir}"], tmp_path)
    assert res["status"] == "ok" and 0.0 <= res["metrics"]["test/acc"] <= 1.0
    net = res["config"]["model"]["net"]
    assert (net["max_len"], net["attention"]["max_len"], net["d_model"]) == (256, None, 64)  # filled by the model


@pytest.mark.slow
def test_the_table_sweep_renders_its_table(listops_dir, tmp_path, capsys):
    """The sweep's two jobs (model/attention=full,performer) run in-process into one folder; make_table renders
    it as the multirun's end does (Hydra's multirun itself: tests/test_sweep.py)."""
    from scripts.make_table import main as make_table
    from tests.conftest import train_run

    for num, entry in enumerate(["full", "performer"]):
        train_run(["experiment=lra/table", "seed=0", "lra_task=cpu/listops", f"model/attention={entry}",
                   *QUICK_LRA, f"paths.data_dir={listops_dir}"], tmp_path / "sweep" / str(num))
    assert make_table([str(tmp_path / "sweep")]) == 0
    md = (tmp_path / "sweep" / "table.md").read_text()
    assert "| model | ListOps | Avg |" in md and "| ours: performer‡ |" in md and "| Performer | 18.01 | 18.01 |" in md


@pytest.mark.slow
def test_the_cpu_retrieval_experiment_trains_two_towers_end_to_end(tmp_path):
    """Synthetic AAN pairs in the official TSV layout (label, ids, two texts), one document empty."""
    from tests.conftest import train_run

    root = tmp_path / "data" / "lra" / LRA_TASKS["retrieval"].dir
    root.mkdir(parents=True)
    for split, n in (("train", 12), ("eval", 8), ("test", 8)):
        lines = [f"{i % 2}\tP{i}\tQ{i}\t{'citing paper ' * (i % 5)}\tcited paper {i}\n" for i in range(n)]
        (root / f"new_aan_pairs.{split}.tsv").write_text("".join(lines))
    res = train_run(["experiment=lra/cpu/retrieval", "seed=0", *QUICK_LRA, f"paths.data_dir={tmp_path / 'data'}"],
                    tmp_path / "run")
    assert res["status"] == "ok" and 0.0 <= res["metrics"]["test/acc"] <= 1.0
    assert res["config"]["model"]["net"]["two_tower"] is True
