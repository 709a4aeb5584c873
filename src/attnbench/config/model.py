"""``model``: the LightningModules (``attnbench.lit``), one schema each, with their optimizer and schedule; the
network under ``model.net`` is checked by its own schema (``config.net``)."""

from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import MISSING

from attnbench.config.base import FROM_CODE, Checked, below_one, check_schema, choice, from_code, need
from attnbench.config.net import (
    FORECAST_NET_SCHEMAS,
    LM_NET_SCHEMAS,
    LM_NETS,
    NET_SCHEMAS,
    HFClassifierNetConfig,
    HFMaskedLMNetConfig,
    LRAEncoderNetConfig,
    Seq2SeqNetConfig,
)
from attnbench.data.catalog import TEXT_TASKS
from attnbench.data.catalog.corpus import VOCABS
from attnbench.errors import ConfigError


@from_code("torch.optim.AdamW", omit=("params",))  # the model passes its parameters
class OptimizerConfig(Checked):
    """``model.optimizer``: a partial of AdamW; the numbers a yaml gives typed as numbers (torch also takes
    tensors)."""

    _partial_: bool = True
    lr: float = FROM_CODE
    betas: list[float] = FROM_CODE

    def check(self) -> None:
        need(self.lr > 0, "model.optimizer.lr", self.lr, "must be > 0")
        need(self.weight_decay >= 0, "model.optimizer.weight_decay", self.weight_decay, "must be >= 0")
        need(self.eps > 0, "model.optimizer.eps", self.eps, "must be > 0")
        need(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), "model.optimizer.betas",
             list(self.betas), "must be two numbers in [0, 1), e.g. [0.9, 0.999]")


@dataclass
class ModelConfig(Checked):
    """What every LightningModule's schema has: the network node (a schema of its own checks it), the optimizer,
    an optional LR scheduler node with a ``_target_`` (``schedule`` names one in the error), and the metric the
    checkpoints and early stopping follow (one of ``monitors()``, in one of ``modes``, where a subclass says)."""

    _target_: str = MISSING
    net: Any = MISSING
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: dict[str, Any] | None = FROM_CODE
    schedule: ClassVar[str] = "torch.optim.lr_scheduler.CosineAnnealingLR"
    modes: ClassVar[tuple[str, ...]] = ()

    def monitors(self) -> list[str]:
        """The val metrics the module logs that ``monitor`` may name ([]: any)."""
        return []

    def check(self) -> None:
        if self.scheduler is not None and "_target_" not in self.scheduler:
            raise ConfigError(f"model.scheduler needs a _target_ (e.g. {self.schedule})")
        if self.monitors():
            choice("model.monitor", self.monitor, self.monitors())
        if self.modes:
            choice("model.monitor_mode", self.monitor_mode, self.modes)

    def check_net(self, schemas: dict[str, type]) -> None:
        """``model.net`` by the schema of its ``_target_`` (one of ``schemas``)."""
        target = self.net.get("_target_") if isinstance(self.net, dict) else None
        choice("model.net._target_", str(target), list(schemas))
        check_schema("model.net", schemas[target], self.net)


@from_code("attnbench.lit.forecasting.ForecastingModule")
class ForecastingModelConfig(ModelConfig):
    """``net``: a node of one of ``FORECAST_NET_SCHEMAS`` (PatchForecaster, InformerForecaster, ...); ``horizons``
    lie within ``data.pred_len`` (``config.checks``)."""

    n_targets: int = MISSING  # the scored variables: a yaml states them (${ts_targets:...}), never the code's 1

    def monitors(self) -> list[str]:
        """The val metrics ForecastingModule logs for these horizons (a test checks they are all logged)."""
        hs = sorted(self.horizons) if self.horizons else [self.net["pred_len"]]
        per_h = [f"val/{m}_{h}" for h in hs for m in ("mse", "mae")] if len(hs) > 1 else ["val/mae"]
        return ["val/mse", "val/mae_avg", *per_h]

    def check(self) -> None:
        self.check_net(FORECAST_NET_SCHEMAS)
        super().check()


@from_code("attnbench.lit.classification.ClassificationModule")
class ClassificationModelConfig(ModelConfig):
    """``net``: a VolumeClassifier or resnet3d node."""

    def check(self) -> None:
        super().check()
        self.check_net(NET_SCHEMAS)
        self.check_classes(self.net.get("n_classes"))

    def check_classes(self, n_classes: int) -> None:
        if n_classes != self.n_classes:
            raise ConfigError(f"model.net.n_classes={n_classes} must equal model.n_classes={self.n_classes}")


@from_code("attnbench.lit.lra.LRAModule")
class LRAModelConfig(ClassificationModelConfig):
    net: LRAEncoderNetConfig = field(default_factory=LRAEncoderNetConfig)
    schedule = "attnbench.lit.schedules.lra_schedule"

    def check(self) -> None:
        ModelConfig.check(self)  # its net: the LRA encoder's schema, not the 3D classifiers'
        self.check_classes(self.net.n_classes)


class FineTuningConfig(ModelConfig):
    """A pretrained encoder fine-tuned with a linear warm-up over ``warmup_ratio`` of the steps."""

    schedule = "transformers.get_linear_schedule_with_warmup"

    def check(self) -> None:
        super().check()
        below_one("model", self, "warmup_ratio")


@from_code("attnbench.lit.text_classification.TextClassificationModule")
class TextClassificationModelConfig(FineTuningConfig):
    net: HFClassifierNetConfig = field(default_factory=HFClassifierNetConfig)

    def check(self) -> None:
        super().check()
        choice("model.task", self.task, TEXT_TASKS)
        if self.net.n_labels != TEXT_TASKS[self.task].n_labels:
            raise ConfigError(f"model.net.n_labels={self.net.n_labels} but task {self.task!r} has "
                              f"{TEXT_TASKS[self.task].n_labels} (1 = regression)")


@from_code("attnbench.lit.hf_mlm.PretrainedMLMModule")
class PretrainedMLMModelConfig(FineTuningConfig):
    net: HFMaskedLMNetConfig = field(default_factory=HFMaskedLMNetConfig)
    modes = ("min",)

    def monitors(self) -> list[str]:
        return ["val/loss", "val/ppl"]


@from_code("attnbench.lit.lm.LanguageModelingModule")
class LanguageModelConfig(ModelConfig):
    """``net``: a GPTDecoder (objective lm) or RobertaEncoder (mlm) node, of the tokenizer's vocabulary."""

    modes = ("min",)

    def monitors(self) -> list[str]:
        return ["val/ppl", "val/loss"]

    def check(self) -> None:
        choice("model.objective", self.objective, LM_NETS)
        choice("model.tokenizer", self.tokenizer, VOCABS)
        super().check()
        need(0 < self.mask_prob < 1, "model.mask_prob", self.mask_prob, "must lie in (0, 1)")
        self.check_net(LM_NET_SCHEMAS)
        if self.net["_target_"] != LM_NETS[self.objective]:
            raise ConfigError(f"model.objective={self.objective} trains {LM_NETS[self.objective]}, not "
                              f"model.net._target_={self.net['_target_']}")
        vocab = VOCABS[self.tokenizer].vocab_size
        need(self.net.get("vocab_size") == vocab, "model.net.vocab_size", self.net.get("vocab_size"),
             f"must be {vocab}, the size of tokenizer {self.tokenizer!r}")


@from_code("attnbench.lit.seq2seq.Seq2SeqModule")
class Seq2SeqModelConfig(ModelConfig):
    net: Seq2SeqNetConfig = field(default_factory=Seq2SeqNetConfig)

    def monitors(self) -> list[str]:
        return [f"val/{m}" for m in ("loss", "acc", "exact", "acc_tf")]

    def check(self) -> None:
        super().check()
        below_one("model", self, "label_smoothing")
