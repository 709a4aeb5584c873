"""MLM continued pre-training of a pretrained HF encoder (``models.hf_text.pretrained_masked_lm``), and moving its
encoder into a fine-tuning model (``init_encoder``, the GLUE module's ``init_from``).

Batches are ``data.wordpiece``'s: ``input_ids`` and ``labels`` (-100 except at the masked positions). The head
runs on the masked positions only (the vocabulary projection is about half the FLOPs of a MiniLM token; 15 % of
the positions carry a loss), with the same summed cross-entropy as ``lit.lm`` (``token_nll``). Logged:
``train/loss`` and ``train/acc`` per step; ``val|test/loss`` (mean NLL per masked token), ``/acc`` (masked tokens
predicted exactly, %), ``/ppl`` and ``/tokens`` summed over the split.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchmetrics import SumMetric

from attnbench import checkpoint
from attnbench.data.corpus import IGNORE
from attnbench.lit.base import ConfiguredModule, Interval, Mode, build_over_training_steps
from attnbench.lit.lm import perplexity, token_nll
from attnbench.models.hf_swap import ATTR

log = logging.getLogger(__name__)


def mlm_head(net: nn.Module) -> nn.Module:
    """The MLM head of a HF ``*ForMaskedLM`` (BERT: ``cls``; RoBERTa: ``lm_head``)."""
    for name in ("cls", "lm_head"):
        head = getattr(net, name, None)
        if isinstance(head, nn.Module):
            return head
    raise TypeError(f"{type(net).__name__} has no MLM head (cls / lm_head): build it with "
                    "attnbench.models.hf_text.pretrained_masked_lm")


class PretrainedMLMModule(ConfiguredModule):
    """Trains a HF masked LM on its masked tokens (module doc). The scheduler may take ``num_training_steps``
    (transformers' linear warm-up/decay), filled in as for GLUE fine-tuning.

    ``evaluable_untrained``: ``train=false`` without a checkpoint tests the model as loaded (the pretrained encoder,
    the MLM head as ``pretrained_masked_lm`` built it): the loss before continued pre-training.
    """

    evaluable_untrained = True

    def __init__(self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable | None = None, scheduler_interval: Interval = "step", warmup_ratio: float = 0.1,
                 monitor: str = "val/loss", monitor_mode: Mode = "min") -> None:
        super().__init__()
        mlm_head(net)  # a TypeError now for a net without one
        if not 0.0 <= warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio={warmup_ratio} must lie in [0, 1)")
        self.save_plain_hyperparameters()
        self.net = net.train()  # from_pretrained returns eval mode
        for stage in ("val", "test"):  # summed over the split (and over processes under DDP)
            for what in ("nll", "tokens", "correct"):
                setattr(self, f"{stage}_{what}", SumMetric().set_dtype(torch.float64))

    def forward(self, batch: dict) -> Tensor:
        """Logits of every position (B, L, V)."""
        return self.net(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits

    def masked_scores(self, batch: dict) -> tuple[Tensor, Tensor, Tensor]:
        """(summed NLL, masked tokens, correctly predicted masked tokens) of a batch, the head run on the masked
        positions only."""
        labels = batch["labels"]  # (B, L), IGNORE where unmasked
        hidden = self.net.base_model(input_ids=batch["input_ids"],
                                     attention_mask=batch.get("attention_mask")).last_hidden_state  # (B, L, d)
        sel = labels != IGNORE
        logits = mlm_head(self.net)(hidden[sel])  # (M, V)
        target = labels[sel]  # (M,)
        nll, n = token_nll(logits[None], target[None])
        return nll, n, (logits.argmax(-1) == target).sum()

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        nll, n, correct = self.masked_scores(batch)
        loss = nll / n.clamp(min=1)
        b = len(batch["input_ids"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=b)
        self.log("train/acc", 100.0 * correct.float() / n.clamp(min=1), on_step=True, on_epoch=True, batch_size=b)
        return self.add_aux_loss(loss)

    def _eval_step(self, batch: dict, stage: str) -> None:
        nll, n, correct = self.masked_scores(batch)
        getattr(self, f"{stage}_nll").update(nll)
        getattr(self, f"{stage}_tokens").update(n)
        getattr(self, f"{stage}_correct").update(correct)

    def _epoch_end(self, stage: str) -> None:
        total, count, correct = (getattr(self, f"{stage}_{w}").compute() for w in ("nll", "tokens", "correct"))
        self.log_dict({f"{stage}/loss": (total / count.clamp(min=1)).float(),
                       f"{stage}/acc": (100.0 * correct / count.clamp(min=1)).float(),
                       f"{stage}/ppl": perplexity(total, count).float(), f"{stage}/tokens": count.float()},
                      prog_bar=True)
        for w in ("nll", "tokens", "correct"):
            getattr(self, f"{stage}_{w}").reset()

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    build_scheduler = build_over_training_steps  # the linear warm-up/decay over the trainer's step estimate


def init_encoder(net: nn.Module, path: str, key: str = "model.init_from") -> dict[str, list[str]]:
    """Load the encoder (``net.<base_model_prefix>.*``, e.g. ``bert.*``) of a Lightning checkpoint written by
    ``PretrainedMLMModule`` (or any module holding the same HF encoder under ``net``) into the HF model ``net``,
    ``weights_only=True``. Every encoder tensor of this model but the pooler (an MLM has none: it keeps its
    pretrained values) must be in the checkpoint with its shape, and nothing else of the checkpoint's encoder may
    be left over; the swapped-in attention's own state (Treeformer's trees) is loaded where both have it and kept
    at its init where only this model has it. Else one CheckpointError naming ``key``. Returns the kept-at-init
    (``kept``) and the unused attention keys (``unused``)."""
    ckpt = checkpoint.load(path, key)
    prefix = net.base_model_prefix
    src = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith(f"net.{prefix}.")}
    if not src:
        raise checkpoint.CheckpointError(f"{key}={path!r} holds no encoder weights (no net.{prefix}.* tensors): "
                                         "it must be a checkpoint of experiment=treeformer/mlm (or of a model "
                                         "with the same HF encoder)")
    own = {k: v for k, v in net.state_dict().items() if k.startswith(f"{prefix}.")}
    attention_state = f".{ATTR}."
    unexpected = sorted(k for k in src if k not in own and attention_state not in k)
    shapes = sorted(k for k in src if k in own and tuple(src[k].shape) != tuple(own[k].shape))
    missing = sorted(k for k in own if k not in src and attention_state not in k
                     and not k.startswith(f"{prefix}.pooler."))
    if unexpected or shapes or missing:
        parts = [f"{len(x)} {what} (e.g. {x[0]})" for x, what in (
            (shapes, "tensors of another shape"), (missing, "encoder tensors missing"),
            (unexpected, "tensors not in this model")) if x]
        saved = ckpt.get(checkpoint.CONFIG_KEY) or {}
        was = (saved.get("model") or {}).get("net", {}).get("pretrained")
        hint = f"; it was trained from model.net.pretrained={was!r}" if was else ""
        raise checkpoint.CheckpointError(f"{key}={path!r} does not fit this model's encoder: {'; '.join(parts)}"
                                         f"{hint}. It must come from the same pretrained model with the same "
                                         "attention options (experiment=treeformer/mlm).")
    net.load_state_dict(src, strict=False)
    kept = sorted(k for k in own if k not in src)
    unused = sorted(k for k in src if k not in own)
    return {"kept": kept, "unused": unused}
