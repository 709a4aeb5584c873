"""What the LightningModules (``attnbench.lit``) may read off the nets they train, beyond calling them.

The nets satisfy these structurally (no base class to inherit); the modules check with ``isinstance`` and
raise naming the missing attribute, instead of reading attributes nothing promises.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Forecaster(Protocol):
    """``net(x)``: (B, seq_len, C) -> (B, pred_len, C). ``ForecastingModule`` scores the last ``pred_len`` steps
    of each target window and checks its horizons against it."""

    pred_len: int


@runtime_checkable
class CalendarForecaster(Protocol):
    """A ``Forecaster`` that also reads the calendar features (``data.timeseries.time_features``):
    ``net(x, x_mark, y_mark)`` with x_mark (B, seq_len, F) of the input window and y_mark (B, label_len + pred_len, F)
    of the decoder window (the batches of ``data.timeseries.ForecastWindows``)."""

    pred_len: int
    label_len: int
    n_time_features: int


@runtime_checkable
class PretrainedNet(Protocol):
    """A net loaded from a checkpoint (``models.hf_text.pretrained_classifier``)."""

    attnbench_trained_head: bool  # every weight, the task head included, came from the checkpoint
    attnbench_model_state: tuple[str, ...]  # state_dict key parts that follow the model, not a checkpoint


@runtime_checkable
class AuxLoss(Protocol):
    """A submodule with a regulariser of its own (e.g. Treeformer's leaf-balance loss): ``aux_loss()`` returns the
    weighted term of its last training forward (then forgets it), or None. ``ConfiguredModule.add_aux_loss`` adds
    every such term to the training loss."""

    def aux_loss(self): ...


def missing(net: object, protocol: type) -> list[str]:
    """The attributes of ``protocol`` that ``net`` lacks (for error messages)."""
    return [a for a in protocol.__annotations__ if not hasattr(net, a)]


@runtime_checkable
class LanguageModel(Protocol):
    """``net(ids)``: (B, L) -> logits (B, L, vocab_size) (``models.lm``); ``lit.lm`` checks ``causal`` against its
    objective (next-token LM: causal; MLM: not) and ``vocab_size`` against the tokeniser."""

    causal: bool
    vocab_size: int
