"""Treeformer training: the 2-D bootstrapping callback (schedule, dense fallback, statistics, dense warm start),
the leaf-balance loss and its hook, data-dependent split init, and the HF-swap path with trainable trees."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch import nn

from attnbench.attention.treeformer import (
    balance_loss,
    median_split_init,
    route,
    routing_stats,
    switch_balance,
)
from attnbench.config import ConfigError
from attnbench.layers.attention import MultiAxisAttention
from attnbench.lit.base import ConfiguredModule
from attnbench.lit.treeformer import TreeBootstrap, bootstrap_plan, leaf_balance, load_dense_weights, n_stages
from tests.conftest import QUICK, needs_minilm, train_run

E, HEADS = 16, 2


def tiny(attention: dict, n_layers: int = 3, seed: int = 0) -> nn.ModuleList:
    torch.manual_seed(seed)
    return nn.ModuleList([MultiAxisAttention(E, HEADS, 1, attention, qk_norm=False) for _ in range(n_layers)])


TREE = {"name": "treeformer_tf", "height": 2}


# ----------------------------------------------------------------------------- schedule
def test_plan_per_order():
    # both: one more layer per stage, every tree one level higher per stage
    assert [bootstrap_plan(s, [3, 3, 3], "both") for s in range(4)] == [
        [1, None, None], [2, 2, None], [3, 3, 3], [3, 3, 3]]
    # depth: all layers switch at the start height first, then the trees grow together
    assert [bootstrap_plan(s, [2, 2], "depth") for s in range(4)] == [[1, None], [1, 1], [2, 2], [2, 2]]
    # height: a layer grows to its full height before the next one switches
    assert [bootstrap_plan(s, [2, 2], "height") for s in range(5)] == [[1, None], [2, None], [2, 1], [2, 2], [2, 2]]
    assert bootstrap_plan(0, [2, 3], "off") == [2, 3]
    assert bootstrap_plan(0, [2, 2, 2], "both", layer_order="top_down") == [None, None, 1]
    assert bootstrap_plan(0, [2, 2, 2], "depth", layers_per_stage=2, start_height=0) == [0, 0, None]
    assert n_stages([3, 3, 3], "both") == 3 and n_stages([2, 2], "height") == 4 and n_stages([2], "off") == 1


def test_callback_switches_layers_and_heights_by_step_and_keeps_the_weights():
    model = tiny(TREE)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cb = TreeBootstrap(order="both", steps_per_stage=2)
    cb._find(model)
    seen = {}
    for step in range(7):
        cb.apply(step)
        seen[step] = [None if m.dense else m.active_height for m in cb.layers]
    assert seen == {0: [1, None, None], 1: [1, None, None], 2: [2, 2, None], 3: [2, 2, None],
                    4: [2, 2, 2], 5: [2, 2, 2], 6: [2, 2, 2]}
    assert cb.done(4) and not cb.done(3)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ConfigError, match="no tree attention"):
        TreeBootstrap(order="both", steps_per_stage=2)._find(tiny({"name": "full"}))


@pytest.mark.parametrize(("kwargs", "message"), [({"order": "sideways"}, "order='sideways'"),
                                                 ({"steps_per_stage": 0}, "steps_per_stage"),
                                                 ({"steps_per_stage": 1.5}, "steps_per_stage"),
                                                 ({"layer_order": "random"}, "layer_order")])
def test_bad_options_name_the_key(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TreeBootstrap(**{"order": "both", "steps_per_stage": 2, **kwargs})


@pytest.mark.parametrize("name", ["treeformer_tf", "treeformer_tc"])
def test_a_dense_switched_layer_is_exactly_full_attention(name):
    torch.manual_seed(0)
    tree = MultiAxisAttention(E, HEADS, 1, {"name": name, "height": 2}, qk_norm=True)
    full = MultiAxisAttention(E, HEADS, 1, {"name": "full"}, qk_norm=True)
    missing, unexpected = full.load_state_dict(tree.state_dict(), strict=False)
    assert not missing and sorted(unexpected) == ["attn.bias", "attn.weight"]  # the tree's own parameters only
    x = torch.randn(2, 10, E)
    kpm = torch.ones(2, 10, dtype=torch.bool)
    kpm[1, 7:] = False
    tree.attn.set_dense(True)
    assert torch.equal(tree(x, key_padding_mask=kpm), full(x, key_padding_mask=kpm))
    tree.attn.set_dense(False)
    assert not torch.allclose(tree(x, key_padding_mask=kpm), full(x, key_padding_mask=kpm))


# ----------------------------------------------------------------------------- statistics and balance
def test_leaf_balance_and_routing_stats_on_hand_made_leaves():
    bal = leaf_balance(torch.tensor([[4, 4, 4, 4], [16, 0, 0, 0]]))
    # rows: uniform (entropy 1, Gini 0) and all in one leaf (entropy 0, Gini 3/4): means
    assert bal["leaf_entropy"].item() == pytest.approx(0.5) and bal["leaf_gini"].item() == pytest.approx(0.375)
    leaf_k = torch.tensor([[[0, 0, 0, 1]]])  # (B=1, H=1, S=4)
    kpm = torch.tensor([[True, True, True, False]])
    s = routing_stats(leaf_k, leaf_k, kpm, 2, capacity=2)
    assert s["key_counts"].tolist() == [[[3, 0]]]  # the padded key counts nowhere
    assert s["dropped"].item() == 2 and s["tokens"].item() == 7  # leaf 0: 3 keys and 3 queries over capacity 2


def test_switch_balance_is_minimal_for_uniform_routing():
    n = 4
    uniform = torch.full((n,), 1 / n)
    one = torch.tensor([1.0, 0, 0, 0])
    assert switch_balance(uniform, uniform).item() == pytest.approx(1.0)
    assert switch_balance(one, one).item() == pytest.approx(n)
    assert switch_balance(one, uniform).item() == pytest.approx(1.0)  # the soft side decides the gradient
    skewed = torch.tensor([0.4, 0.3, 0.2, 0.1])
    assert switch_balance(skewed, skewed).item() > 1.0


def test_balance_loss_on_a_hand_made_tree():
    """Height 1, split on the first coordinate: tokens at +-a. Balanced: loss 1; all on one side: 2 sigmoid(a)."""
    a = 2.0
    weight = nn.Parameter(torch.tensor([[1.0, 0.0]]))
    bias = nn.Parameter(torch.zeros(1))
    pts = torch.tensor([[a, 0.3], [-a, 0.1], [a, -0.2], [-a, 0.5]])[None, None]  # (1, 1, 4, 2)
    assert balance_loss(pts, pts, weight, bias, 1).item() == pytest.approx(1.0)
    left = pts.abs()
    loss = balance_loss(left, left, weight, bias, 1)
    assert loss.item() == pytest.approx(2 * torch.sigmoid(torch.tensor(a)).item())
    loss.backward()
    assert bias.grad.item() > 0  # descending moves the split towards the tokens (a more even split)


def test_balance_loss_reaches_the_training_loss_through_the_task_hook():
    torch.manual_seed(0)
    layer = MultiAxisAttention(E, HEADS, 1, {**TREE, "balance_weight": 0.5}, qk_norm=False).train()
    holder = ConfiguredModule()
    holder.net = layer
    x = torch.randn(2, 12, E)
    layer(x)
    q, k = (t.unflatten(-1, (HEADS, E // HEADS)).transpose(1, 2) for t in (layer.q_proj(x), layer.k_proj(x)))
    expected = 0.5 * balance_loss(q, k, layer.attn.weight, layer.attn.bias, 2)
    zero = torch.zeros(())
    total = holder.add_aux_loss(zero)
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert holder.add_aux_loss(zero) is zero  # consumed: no term until the next training forward
    layer.eval()
    layer(x)
    assert holder.add_aux_loss(zero) is zero  # evaluation adds nothing


def test_median_split_init_balances_off_centre_keys():
    torch.manual_seed(0)
    D, height = 8, 3
    k = torch.randn(2, 2, 64, D) + 5.0  # keys far from the origin: random splits through 0 send all one way
    weight, bias = torch.randn(2**height - 1, D), torch.zeros(2**height - 1)
    median_split_init(k, weight, bias, height)
    leaf, _ = route(k.reshape(1, 1, -1, D), weight, bias, height)
    assert torch.bincount(leaf.flatten(), minlength=8).tolist() == [32] * 8  # 256 keys, 8 leaves


# ----------------------------------------------------------------------------- in a Lightning fit
class _Tiny(L.LightningModule):
    def __init__(self, attention: dict) -> None:
        super().__init__()
        self.layers = tiny(attention)
        self.head = nn.Linear(E, 1)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        for layer in self.layers:
            x = x + layer(x)
        return self.head(x).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(module: L.LightningModule, cb: TreeBootstrap, steps: int) -> L.Trainer:
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 12, E)), batch_size=4)
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[cb], accelerator="cpu")
    trainer.fit(module, data)
    return trainer


def test_statistics_are_logged_every_step_and_the_schedule_follows_the_steps():
    module = _Tiny({**TREE, "capacity_factor": 0.5})
    cb = TreeBootstrap(order="depth", steps_per_stage=2)
    trainer = _fit(module, cb, steps=3)
    m = trainer.callback_metrics
    # logged after step index 2 (stage 1): layers 0 and 1 are trees of height 1, layer 2 still dense
    assert m["tree/n_tree_layers"].item() == 2 and m["tree/active_height"].item() == 1
    assert [x.dense for x in cb.layers] == [False, False, True]
    assert m["tree/leaf_min"] <= m["tree/leaf_mean"] <= m["tree/leaf_max"]
    assert m["tree/leaf_mean"].item() == pytest.approx(12 / 2)  # 12 keys over 2 leaves
    assert 0.0 < m["tree/dropped_frac"].item() < 1.0  # capacity 0.5 * 12 / 2 = 3 slots per leaf
    assert 0.0 <= m["tree/leaf_entropy"].item() <= 1.0 and 0.0 <= m["tree/leaf_gini"].item() < 1.0
    assert m["tree/schedule_done"].item() == 0.0


def test_dense_checkpoint_warm_start(tmp_path):
    dense = _Tiny({"name": "full"})
    path = tmp_path / "dense.ckpt"
    torch.save({"state_dict": dense.state_dict()}, path)
    tree = _Tiny(TREE)
    missing = load_dense_weights(tree, str(path))
    assert sorted(missing) == sorted(f"layers.{i}.attn.{p}" for i in range(3) for p in ("weight", "bias"))
    assert torch.equal(tree.layers[1].q_proj.weight, dense.layers[1].q_proj.weight)
    other = nn.Linear(3, 3)
    torch.save({"state_dict": other.state_dict()}, path)
    with pytest.raises(ConfigError, match="does not fit this model"):
        load_dense_weights(tree, str(path))


# ----------------------------------------------------------------------------- HF swap (pretrained MiniLM)
@needs_minilm
def test_hf_swap_with_trainable_trees_trains_one_step():
    pytest.importorskip("transformers")
    from transformers import AutoModel, AutoTokenizer

    from attnbench.models.hf_swap import swap_self_attention
    from attnbench.pretrained import resolve_pretrained

    path = resolve_pretrained("minilm")
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    batch = tok(["A man is playing a guitar on the stage tonight.", "The cat sat."], padding=True,
                return_tensors="pt")
    with torch.no_grad():
        ref = model(**batch).last_hidden_state
    with pytest.raises(ValueError, match="allow_trainable=True"):
        swap_self_attention(model, "treeformer_tf", height=2)
    swap_self_attention(model, "treeformer_tf", allow_trainable=True, height=2, data_init=True)
    cb = TreeBootstrap(order="both", steps_per_stage=1)
    cb._find(model)
    assert len(cb.layers) == 6
    for m in cb.layers:
        m.set_dense(True)
    model.eval()
    with torch.no_grad():  # every layer dense: the pretrained model
        torch.testing.assert_close(model(**batch).last_hidden_state, ref, atol=1e-5, rtol=1e-5)
    cb.apply(10)  # every layer a full-height tree
    model.train()
    model(**batch).last_hidden_state.pow(2).mean().backward()
    attn = cb.layers[0]
    assert bool(attn.data_init_done) and attn.bias.abs().sum() > 0  # splits moved to the keys' medians
    assert attn.weight.grad is not None and attn.weight.grad.abs().sum() > 0  # gradient reaches the tree
    assert attn.last_stats["key_counts"].shape[-1] == 4


@needs_minilm
@pytest.mark.slow
def test_treeformer_glue_experiment_runs_fast(tmp_path):
    from tests.test_glue import SST2, write_glue

    data = write_glue(tmp_path / "data", "SST-2", SST2, SST2)
    args = [*QUICK, "experiment=treeformer/glue", "data.task=sst2", "data.max_length=24", "data.batch_size=4",
            "data.eval_batch_size=4", f"paths.data_dir={data}", "callbacks.tree_bootstrap.steps_per_stage=1",
            "model.net.attention.balance_weight=0.01"]
    res = train_run(args, tmp_path / "run")
    m = res["metrics"]
    assert res["status"] == "ok" and math.isfinite(m["test/score"])
    # 3 steps of 1 step per stage: after step index 2, layers 0-2 are trees at heights up to 3
    assert m["tree/n_tree_layers"] == 3 and m["test/tree_layers"] == 3 and m["tree/schedule_done"] == 0.0
    assert math.isfinite(m["train/aux_loss_epoch"]) and m["tree/leaf_max"] >= m["tree/leaf_mean"]


def test_glue_table_separates_the_bootstrapping_arms_and_shows_no_published_numbers(tmp_path):
    import json

    from attnbench.analysis import glue
    from scripts.make_table import main as make_table

    for i, (order, task, score) in enumerate([("both", "rte", 60.0), ("off", "rte", 55.0), ("both", "rte", 62.0)]):
        d = tmp_path / "sweep" / str(i)
        d.mkdir(parents=True)
        res = {"status": "ok", "error": None, "metrics": {"test/score": score, "epochs": 3, "n_params": 2e7},
               "choices": {"model": "tree_bert", "model/attention": "treeformer_tf", "data": "glue",
                           "callbacks": "tree_bootstrap", "experiment": "treeformer/glue"},
               "config": {"model": {"_target_": "attnbench.lit.text_classification.TextClassificationModule",
                                    "net": {"pretrained": "minilm", "attention": {"name": "treeformer_tf"}}},
                          "callbacks": {"tree_bootstrap": {"order": order}}, "data": {"task": task}},
               "wall_time_s": 10.0}
        (d / "results.json").write_text(json.dumps(res))
    runs = glue.load_runs(tmp_path / "sweep")
    table = glue.glue_table(runs, glue.load_reference("treeformer_glue"))
    both, off = "ours: tree_bert[treeformer_tf] (minilm) boot=both", "ours: tree_bert[treeformer_tf] (minilm) boot=off"
    assert table.loc[both, "rte"] == pytest.approx(61.0) and table.loc[off, "rte"] == 55.0
    assert pd_isna(table.loc["Treeformer BERT-Base (N/F)", "rte"])
    assert make_table([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "table.md").read_text()
    assert "boot=off" in md and "| Treeformer BERT-Base (N/F)? | – |" in md


def pd_isna(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


@pytest.mark.parametrize(("override", "message"), [
    ("callbacks.tree_bootstrap.order=sideways", "callbacks.tree_bootstrap.order='sideways' is invalid"),
    ("callbacks.tree_bootstrap.steps_per_stage=2.5", "callbacks.tree_bootstrap.steps_per_stage=2.5"),
    ("callbacks.tree_bootstrap.start_height=-1", "callbacks.tree_bootstrap.start_height=-1")])
def test_experiment_config_is_checked_before_anything_is_built(compose_cfg, override, message):
    from attnbench.config import validate

    cfg = compose_cfg(["experiment=treeformer/glue", "data.task=rte"])
    validate(cfg)
    assert cfg.model.net.trainable_attention and cfg.model.net.attention.name == "treeformer_tf"
    assert cfg.test_ckpt == "last" and cfg.callbacks.tree_bootstrap.order == "both"
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate(compose_cfg(["experiment=treeformer/glue", "data.task=rte", override]))
    bad = compose_cfg(["experiment=treeformer/glue", "data.task=rte", "model.net.trainable_attention=false"])
    with pytest.raises(ConfigError, match="trainable_attention=true"):
        validate(bad)


def test_steps_per_stage_keeps_its_type_int_steps_or_float_fraction(compose_cfg):
    from hydra.utils import instantiate

    for value, steps, kind in (("20", 20, int), ("0.25", None, float)):
        cfg = compose_cfg(["experiment=treeformer/glue", f"callbacks.tree_bootstrap.steps_per_stage={value}"])
        cb = instantiate(cfg.callbacks.tree_bootstrap)
        assert cb._stage_steps == steps and type(cb.steps_per_stage) is kind


def test_a_dense_switched_tree_layer_counts_full_attention_flops():
    from attnbench.attention import build
    from attnbench.attention.flops import attention_flops

    full = attention_flops(build("full", {}), B=1, H=2, q_axes=64, D=8)
    for name in ("treeformer_tf", "treeformer_tc"):
        tree = build(name, {"head_dim": 8, "n_heads": 2}, height=3)
        sparse = attention_flops(tree, B=1, H=2, q_axes=64, D=8)
        tree.set_dense(True)
        assert attention_flops(tree, B=1, H=2, q_axes=64, D=8) == full != sparse


@pytest.mark.slow
def test_treeformer_listops_experiment_runs_fast(tmp_path):
    from attnbench.data.lra.listops import ListOpsSpec, write_splits

    data = tmp_path / "data"
    write_splits(data / "lra" / "listops", ListOpsSpec(n_train=24, n_val=8, n_test=8, min_length=10, max_length=60))
    res = train_run(["experiment=treeformer/listops", "debug=fast", "seed=0", "logger=csv",
                     "~callbacks.rich_progress_bar", "trainer.enable_progress_bar=false", "data.batch_size=4",
                     f"paths.data_dir={data}", "callbacks.tree_bootstrap.steps_per_stage=1"], tmp_path / "run")
    m = res["metrics"]
    assert res["status"] == "ok" and 0.0 <= m["test/acc"] <= 1.0
    # 2 layers, 3 steps of one stage each: after step index 2 both layers are trees of height 3 (schedule final)
    assert m["tree/n_tree_layers"] == 2 and m["tree/active_height"] == 3 and m["tree/schedule_done"] == 1.0
    assert res["config"]["model"]["net"]["attention"]["name"] == "treeformer_tf"


# ----------------------------------------------------------------------------- per-head trees
@pytest.mark.parametrize("name", ["treeformer_tf", "treeformer_tc"])
def test_bootstrapping_runs_with_per_head_trees(name):
    """The schedule, the data init and the statistics with one tree per head: every head's tree is moved by the
    data init and trained (its weights change), leaf counts are per (row, head)."""
    module = _Tiny({"name": name, "height": 2, "trees": "per_head", "data_init": True})
    w0 = [m.weight.detach().clone() for m in module.layers.modules() if hasattr(m, "trees")]
    cb = TreeBootstrap(order="both", steps_per_stage=1)
    trainer = _fit(module, cb, steps=3)
    m = trainer.callback_metrics
    assert [x.weight.shape for x in cb.layers] == [(HEADS, 3, E // HEADS)] * 3
    assert [(x.dense, x.active_height) for x in cb.layers] == [(False, 2)] * 3 and m["tree/schedule_done"] == 1.0
    assert m["tree/n_tree_layers"].item() == 3 and m["tree/leaf_mean"].item() == pytest.approx(12 / 4)
    assert cb.layers[0].last_stats["key_counts"].shape == (4, HEADS, 4)
    assert all(bool(x.data_init_done) for x in cb.layers)
    assert all(not torch.equal(x.weight, w) for x, w in zip(cb.layers[:2], w0[:2], strict=True))  # trained
    assert not torch.equal(cb.layers[0].bias[0], cb.layers[0].bias[1])  # each head's splits its own
