"""Treeformer's 2-D bootstrapped training (Algorithm 1 as the digest reconstructs it) as a Lightning callback.

The paper's body is not available (``shared/papers/treeformer.md``): "2-D" is read as two axes along which tree
attention is phased in, both exposed here as a schedule over optimizer steps:

- depth: layers start as dense softmax attention and switch to tree attention, ``layers_per_stage`` at a time.
  The switch is a flag on the tree entry itself (``set_dense``): a dense layer runs full attention with the very
  q/k/v of the layer (same projections, same weights); switching changes no parameter.
- height: a tree layer routes with its top ``active_height`` levels (``set_active_height``), grown by one level
  per stage from ``start_height`` to the entry's configured ``height``.

``order`` combines them, in stages of ``steps_per_stage`` optimizer steps (an int; a float in (0, 1] is a fraction
of the run's steps, ``trainer.estimated_stepping_batches``):

- ``depth``: switch the layers at ``start_height`` (one group per stage), then grow every tree together;
- ``height``: switch one group and grow it to its full height, then the next group;
- ``both``: each stage switches one more group and raises the height of every tree layer by one;
- ``off``: no bootstrapping, every layer is a full-height tree from the first step (the from-scratch arm; the
  statistics are still logged).

``layer_order`` picks which layers switch first (``bottom_up``: the one nearest the input). Tree layers are
found by walking the modules for tree entries (any model: ``MultiAxisAttention`` layers, or a HF encoder with
swapped self-attention), in module order. ``dense_checkpoint``: before fitting, load a Lightning checkpoint of
the same model with dense attention (``checkpoint.load``, ``weights_only=True``); only the trees' own
parameters may be missing from it.

Logged every training step (``tree/*``): ``active_height`` (mean over tree layers), ``n_tree_layers``,
``leaf_min/leaf_mean/leaf_max`` (keys per leaf over every batch row, head and tree layer), ``leaf_entropy``
(entropy of the leaf loads / log(leaves), mean over rows, heads and layers; 1 = balanced), ``leaf_gini`` (Gini
coefficient of the leaf loads; 0 = balanced), ``dropped_frac`` (queries and keys dropped by a leaf capacity,
``treeformer_tf``'s ``capacity_factor``) and ``schedule_done`` (1 once the schedule reached its end). The same
state is logged at test time as ``test/tree_layers`` and ``test/tree_height`` (in what configuration it ran).

The schedule state is not saved in checkpoints: it follows ``trainer.global_step`` (resumed runs pick it up at
the next batch); a model tested after a finished schedule runs every layer as a full-height tree, which is the
entries' default state.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import lightning as L
import torch
from torch import Tensor, nn

from attnbench import checkpoint
from attnbench.attention.treeformer import _TreeAttention
from attnbench.config import check_tree_bootstrap
from attnbench.errors import ConfigError

log = logging.getLogger(__name__)

ORDERS = ("depth", "height", "both", "off")
LAYER_ORDERS = ("bottom_up", "top_down")


def tree_layers(model: nn.Module) -> list[tuple[str, _TreeAttention]]:
    """(name, entry) of every tree-attention entry in ``model``, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _TreeAttention)]


def bootstrap_plan(stage: int, heights: list[int], order: str, start_height: int = 1, layers_per_stage: int = 1,
                   layer_order: str = "bottom_up") -> list[int | None]:
    """Per layer (module order) at ``stage``: None for dense attention, else the tree's active height.

    heights: every layer's target height. Pure function of the stage (module docstring for the orders)."""
    if order not in ORDERS:
        raise ValueError(f"order={order!r}; allowed: {', '.join(ORDERS)}")
    if layer_order not in LAYER_ORDERS:
        raise ValueError(f"layer_order={layer_order!r}; allowed: {', '.join(LAYER_ORDERS)}")
    n = len(heights)
    if order == "off":
        return list(heights)
    rank = list(range(n)) if layer_order == "bottom_up" else list(range(n - 1, -1, -1))  # switch rank of layer i
    group = [r // layers_per_stage for r in rank]  # the stage index of each layer's group
    n_groups = math.ceil(n / layers_per_stage)
    out: list[int | None] = []
    for i, target in enumerate(heights):
        h0 = min(start_height, target)
        if order == "both":
            h = h0 + stage if stage >= group[i] else None
        elif order == "depth":
            h = h0 + max(0, stage - (n_groups - 1)) if stage >= group[i] else None
        else:  # height: each group grows to the tallest target before the next one switches
            per_group = max(heights) - min(start_height, max(heights)) + 1
            first = group[i] * per_group
            h = h0 + (stage - first) if stage >= first else None
        out.append(None if h is None else min(h, target))
    return out


def n_stages(heights: list[int], order: str, start_height: int = 1, layers_per_stage: int = 1) -> int:
    """Stages until the plan is final (every layer a tree at its target height)."""
    if order == "off" or not heights:
        return 1
    s = 0
    final = list(heights)
    while bootstrap_plan(s, heights, order, start_height, layers_per_stage) != final:
        s += 1
    return s + 1


def leaf_balance(counts: Tensor) -> dict[str, Tensor]:
    """Balance of leaf loads ``counts`` (..., n_leaves): normalised entropy (1 = uniform; 1 for one leaf) and Gini
    coefficient (0 = uniform, (n-1)/n = all in one leaf), each averaged over the leading axes."""
    c = counts.float()
    n = c.shape[-1]
    total = c.sum(-1, keepdim=True).clamp_min(1e-12)
    p = c / total
    ent = -(p * p.clamp_min(1e-12).log()).sum(-1)
    ent = ent / math.log(n) if n > 1 else torch.ones_like(ent)
    gini = (c[..., :, None] - c[..., None, :]).abs().sum((-1, -2)) / (2 * n * total.squeeze(-1))
    return {"leaf_entropy": ent.mean(), "leaf_gini": gini.mean()}


def tree_stats(layers: list[_TreeAttention]) -> dict[str, Tensor]:
    """The ``tree/*`` values (module docstring) from the layers' last forward; occupancy keys only when some
    tree layer ran since."""
    trees = [m for m in layers if not m.dense]
    heights = [float(m.active_height) for m in trees]
    out = {"n_tree_layers": torch.tensor(float(len(trees))),
           "active_height": torch.tensor(sum(heights) / len(heights) if heights else 0.0)}
    stats = [m.last_stats for m in trees if m.last_stats is not None]
    if stats:
        counts = [s["key_counts"].float() for s in stats]
        out["leaf_min"] = torch.stack([c.min() for c in counts]).min()
        out["leaf_mean"] = torch.stack([c.mean() for c in counts]).mean()
        out["leaf_max"] = torch.stack([c.max() for c in counts]).max()
        bal = [leaf_balance(c) for c in counts]
        out["leaf_entropy"] = torch.stack([b["leaf_entropy"] for b in bal]).mean()
        out["leaf_gini"] = torch.stack([b["leaf_gini"] for b in bal]).mean()
        out["dropped_frac"] = (torch.stack([s["dropped"] for s in stats]).sum().float()
                               / torch.stack([s["tokens"] for s in stats]).sum().clamp_min(1).float())
    return {k: v.detach().float() for k, v in out.items()}  # no device sync: Lightning reduces when it logs


def load_dense_weights(module: nn.Module, path: str) -> list[str]:
    """Load a dense model's Lightning checkpoint into ``module`` (``weights_only=True``): every key must fit, and
    only the tree entries' own parameters/buffers may be missing. Returns the missing (tree) keys."""
    ckpt = checkpoint.load(path)
    state = ckpt["state_dict"]
    tree_prefixes = tuple(f"{n}." for n, _ in tree_layers(module))
    own = module.state_dict()
    unexpected = sorted(k for k in state if k not in own)
    shapes = sorted(k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape))
    missing = sorted(k for k in own if k not in state)
    foreign = [k for k in missing if not k.startswith(tree_prefixes)]
    if unexpected or shapes or foreign:
        parts = [f"{len(x)} {what} (e.g. {x[0]})" for x, what in ((unexpected, "keys not in this model"),
                 (shapes, "tensors of another shape"), (foreign, "non-tree keys missing")) if x]
        raise ConfigError(f"callbacks.tree_bootstrap.dense_checkpoint={path!r} does not fit this model: "
                          f"{'; '.join(parts)}. It must be a checkpoint of the same model with dense attention.")
    module.load_state_dict(state, strict=False)
    return missing


class TreeBootstrap(L.Callback):
    """The 2-D bootstrapping schedule and the tree statistics (module docstring)."""

    def __init__(self, order: Literal["depth", "height", "both", "off"], steps_per_stage: int | float,
                 start_height: int = 1, layers_per_stage: int = 1,
                 layer_order: Literal["bottom_up", "top_down"] = "bottom_up",
                 dense_checkpoint: str | None = None) -> None:
        check_tree_bootstrap(order, steps_per_stage, start_height, layers_per_stage, layer_order)
        is_int = isinstance(steps_per_stage, int)
        self.order, self.steps_per_stage, self.start_height = order, steps_per_stage, start_height
        self.layers_per_stage, self.layer_order, self.dense_checkpoint = layers_per_stage, layer_order, dense_checkpoint
        self.layers: list[_TreeAttention] = []
        self._stage_steps: int | None = int(steps_per_stage) if is_int else None

    # ------------------------------------------------------------------ schedule
    def _find(self, pl_module: nn.Module) -> None:
        self.layers = [m for _, m in tree_layers(pl_module)]
        if not self.layers:
            raise ConfigError("callbacks.tree_bootstrap: the model has no tree attention (set "
                              "model.net.attention.name to treeformer_tf or treeformer_tc, or remove the callback)")

    def plan(self, step: int) -> list[int | None]:
        """Per tree layer at optimizer step ``step``: None (dense) or the active height."""
        stage = step // self._stage_steps if self._stage_steps else 0
        return bootstrap_plan(stage, [m.height for m in self.layers], self.order, self.start_height,
                              self.layers_per_stage, self.layer_order)

    def apply(self, step: int) -> None:
        for m, h in zip(self.layers, self.plan(step), strict=True):
            m.set_dense(h is None)
            m.set_active_height(m.height if h is None else h)

    def done(self, step: int) -> bool:
        return self.plan(step) == [m.height for m in self.layers]

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._find(pl_module)
        if stage == "fit" and self.dense_checkpoint:  # before Lightning restores a resumed run (which wins)
            missing = load_dense_weights(pl_module, self.dense_checkpoint)
            log.info("tree_bootstrap: dense weights from %s (%d tree tensors kept at their init)",
                     self.dense_checkpoint, len(missing))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.apply(trainer.global_step)  # the sanity check runs in the configuration of the first step

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._stage_steps is None:
            total = int(trainer.estimated_stepping_batches)
            self._stage_steps = max(1, round(self.steps_per_stage * total))
        stages = n_stages([m.height for m in self.layers], self.order, self.start_height, self.layers_per_stage)
        log.info("tree_bootstrap: %d tree layers, order=%s, %d stages of %d steps (final from step %d)",
                 len(self.layers), self.order, stages, self._stage_steps, (stages - 1) * self._stage_steps)
        self.apply(trainer.global_step)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self.apply(trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        values = {f"tree/{k}": v for k, v in tree_stats(self.layers).items()}
        values["tree/schedule_done"] = torch.tensor(float(self.done(trainer.global_step)))
        pl_module.log_dict(values, on_step=True, on_epoch=False, batch_size=1)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.done(trainer.global_step):
            log.warning("tree_bootstrap: the schedule did not finish within the run (step %d): the model ends with "
                        "%d of %d layers as trees; lower callbacks.tree_bootstrap.steps_per_stage",
                        trainer.global_step, sum(not m.dense for m in self.layers), len(self.layers))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        stats = tree_stats(self.layers)
        pl_module.log_dict({"test/tree_layers": stats["n_tree_layers"], "test/tree_height": stats["active_height"]})
