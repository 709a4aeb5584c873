"""Language modelling (CAB's LM, causal self-attention) and masked language modelling (CAB's MLM, non-causal).

Batches are token windows (B, block_len + 1) (``data.corpus.BlockDataset``). ``objective="lm"``: the net reads
``w[:, :-1]`` and is scored on predicting ``w[:, 1:]`` (next token). ``objective="mlm"``: the net reads
``w[:, :-1]`` after RoBERTa's masking (``data.corpus.mask_tokens``: 15 %, 80/10/10 mask/random/keep), drawn afresh
for every training batch from a seed (``mask_seed`` and the count of batches trained, so a resumed run draws the
same masks) and fixed per evaluation batch (``mask_seed``, split and batch index: every epoch and every attention
is scored on the same masked positions); it is scored on the selected positions only.

Perplexity is ``exp`` of the mean token NLL over the whole split: the NLL summed over every scored token of
every batch divided by their count (token-weighted, not a mean of per-batch perplexities). Logged as
``<stage>/ppl``, with ``<stage>/loss`` the mean NLL (nats per token) and ``<stage>/tokens`` the count.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchmetrics import SumMetric

from attnbench.data.catalog.corpus import VOCABS
from attnbench.data.corpus import IGNORE, mask_tokens
from attnbench.lit.base import ConfiguredModule, Interval, Mode
from attnbench.models.interfaces import LanguageModel, missing

OBJECTIVES = {"lm": True, "mlm": False}  # objective -> the net must be causal
_STREAMS = {"train": 0, "val": 1, "test": 2}


def token_nll(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Summed NLL (nats) of the scored targets (``IGNORE`` excluded) and their count. logits (B, L, V) in any
    dtype (scored in fp32), targets (B, L)."""
    nll = nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
                                      reduction="sum")
    return nll, (targets != IGNORE).sum()


def perplexity(nll_sum: Tensor | float, n_tokens: Tensor | int) -> Tensor:
    """exp(summed NLL / tokens): the split's perplexity."""
    return torch.exp(torch.as_tensor(nll_sum, dtype=torch.float64) / torch.as_tensor(n_tokens, dtype=torch.float64))


def mask_seed_for(mask_seed: int, stage: str, index: int) -> int:
    """The generator seed of one batch's masking: distinct per (seed, stage, batch index), stable across runs."""
    return (mask_seed * 1_000_003 + _STREAMS[stage] * 1_000_000_007 + index) % (2**63 - 1)


class LanguageModelingModule(ConfiguredModule):
    """Trains a ``LanguageModel`` net (``models.lm``) on next-token (``lm``) or masked-token (``mlm``)
    cross-entropy; val/test perplexity over the split (module doc)."""

    def __init__(self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer], objective: str,
                 tokenizer: str, scheduler: Callable | None = None, scheduler_interval: Interval = "epoch",
                 mask_prob: float = 0.15, mask_seed: int = 0, monitor: str = "val/ppl",
                 monitor_mode: Mode = "min") -> None:
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective={objective!r}; allowed: {', '.join(OBJECTIVES)}")
        if not isinstance(net, LanguageModel):
            raise TypeError(f"{type(net).__name__} is not a language model: it lacks {missing(net, LanguageModel)}")
        if net.causal != OBJECTIVES[objective]:
            raise ValueError(f"objective={objective!r} needs a {'causal' if OBJECTIVES[objective] else 'non-causal'} "
                             f"net; {type(net).__name__} is {'causal' if net.causal else 'non-causal'} "
                             "(lm: models.lm.GPTDecoder, mlm: models.lm.RobertaEncoder)")
        if tokenizer not in VOCABS:
            raise ValueError(f"tokenizer={tokenizer!r}; allowed: {', '.join(VOCABS)}")
        self.vocab = VOCABS[tokenizer]
        if net.vocab_size != self.vocab.vocab_size:
            raise ValueError(f"net vocab_size={net.vocab_size} but tokenizer {tokenizer!r} has "
                             f"{self.vocab.vocab_size} ids")
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"mask_prob={mask_prob} must lie in (0, 1)")
        self.save_plain_hyperparameters()
        self.net, self.objective = net, objective
        for stage in ("val", "test"):  # summed over the split (and over processes under DDP)
            setattr(self, f"{stage}_nll", SumMetric().set_dtype(torch.float64))
            setattr(self, f"{stage}_tokens", SumMetric().set_dtype(torch.float64))

    def forward(self, ids: Tensor) -> Tensor:
        return self.net(ids)

    def inputs_targets(self, window: Tensor, stage: str, index: int) -> tuple[Tensor, Tensor]:
        """window (B, block_len + 1) -> (net input (B, block_len), targets (B, block_len) with IGNORE where
        unscored)."""
        if self.objective == "lm":
            return window[:, :-1], window[:, 1:]
        gen = torch.Generator().manual_seed(mask_seed_for(self.hparams.mask_seed, stage, index))
        return mask_tokens(window[:, :-1], self.vocab, gen, mask_prob=self.hparams.mask_prob)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        step = self.trainer.fit_loop.epoch_loop.total_batch_idx if self._trainer is not None else batch_idx
        x, y = self.inputs_targets(batch, "train", step)
        nll, n = token_nll(self.net(x), y)
        loss = nll / n.clamp(min=1)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch))
        return self.add_aux_loss(loss)

    def _eval_step(self, batch: Tensor, stage: str, batch_idx: int = 0) -> None:
        x, y = self.inputs_targets(batch, stage, batch_idx)
        nll, n = token_nll(self.net(x), y)
        getattr(self, f"{stage}_nll").update(nll)
        getattr(self, f"{stage}_tokens").update(n)

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        self._eval_step(batch, "val", batch_idx)

    def test_step(self, batch: Tensor, batch_idx: int) -> None:
        self._eval_step(batch, "test", batch_idx)

    def _epoch_end(self, stage: str) -> None:
        nll, n = getattr(self, f"{stage}_nll"), getattr(self, f"{stage}_tokens")
        total, count = nll.compute(), n.compute()
        mean = total / count.clamp(min=1)
        self.log_dict({f"{stage}/loss": mean.float(), f"{stage}/ppl": perplexity(total, count).float(),
                       f"{stage}/tokens": count.float()}, prog_bar=True)
        nll.reset()
        n.reset()

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")
