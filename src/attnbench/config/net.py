"""``model.net``: the networks (``attnbench.models``), one schema each; the fields are the constructor's
(``from_code``), the checks say what a constructor would refuse, before anything is built."""

from typing import Any, ClassVar

from attnbench import attention_spec as attention
from attnbench.config.attention import check_attention, check_attention_position, check_pretrained_encoder
from attnbench.config.base import Checked, at_least_one, below_one, by_target, choice, from_code, need
from attnbench.errors import ConfigError


def heads_divide(n_heads: int, width: int, what: str = "model.net.d_model") -> None:
    if width % n_heads:
        raise ConfigError(f"model.net.n_heads={n_heads} must divide {what}={width}")


class TransformerNetConfig(Checked):
    """Checks shared by the tensor-block networks (``layers.block.TensorBlock`` stacks): sizes, heads, RoPE,
    attention, per-axis q/k; ``sizes`` names further sizes of the subclass that must be >= 1."""

    sizes: ClassVar[tuple[str, ...]] = ()

    def check(self) -> None:
        at_least_one("model.net", self, *self.sizes, "d_model", "n_heads", "n_layers", "d_mlp")
        below_one("model.net", self, "dropout")
        heads_divide(self.n_heads, self.d_model)
        if self.rope and (self.d_model // self.n_heads) % 2:
            raise ConfigError(f"RoPE needs an even head size: model.net.d_model/n_heads = "
                              f"{self.d_model}/{self.n_heads} is odd (or set model.net.rope=false)")
        check_attention("model.net.attention", dict(self.attention))
        entry = attention.get(self.attention["name"])
        if self.per_axis_qk and not entry.caps["per_axis_qk"]:
            raise ConfigError(f"model.net.per_axis_qk=true but attention {entry.name!r} takes one query/key "
                              "tensor: set model.net.per_axis_qk=false")


@from_code("attnbench.models.forecaster.PatchForecaster")
class ForecasterNetConfig(TransformerNetConfig):
    sizes = ("patch_len",)

    def check(self) -> None:
        super().check()
        if self.seq_len % self.patch_len:
            raise ConfigError(f"model.net.patch_len={self.patch_len} must divide data.seq_len={self.seq_len}")


@from_code("attnbench.models.informer.InformerForecaster")
class InformerNetConfig(Checked):
    """Informer's encoder-decoder (CAB's LSTF backbone): a sequence attention per position. Its lengths are the
    data's (``config.checks``)."""

    def check(self) -> None:
        at_least_one("model.net", self, "enc_in", "n_time_features", "d_model", "n_heads", "e_layers", "d_layers",
                     "d_ff")
        at_least_one("model.net", self, "c_out", null=True)
        below_one("model.net", self, "dropout")
        heads_divide(self.n_heads, self.d_model)
        for key, cap in (("self_attention", "self_attention"), ("cross_attention", "cross_attention"),
                         ("decoder_self_attention", "causal")):  # CAB's NS, NC and the decoder's causal self
            node = dict(getattr(self, key))
            check_attention(f"model.net.{key}", node)
            entry = attention.get(node["name"])
            if entry.caps["tensor"] or not entry.caps[cap]:
                able = [n for n, e in attention.entries().items() if e.caps[cap] and not e.caps["tensor"]]
                raise ConfigError(f"model.net.{key}.name={node['name']!r} is not a sequence attention with {cap} "
                                  f"support; entries that are: {', '.join(able)}")


@from_code("attnbench.models.timesnet.TimesNet")
class TimesNetNetConfig(Checked):
    """TimesNet: 2-D Inception blocks over the top-k FFT periods of seq_len + pred_len steps. Its lengths are the
    data's (``config.checks``)."""

    def check(self) -> None:
        at_least_one("model.net", self, "enc_in", "n_time_features", "d_model", "d_ff", "e_layers", "top_k",
                     "num_kernels")
        below_one("model.net", self, "dropout")
        steps = self.seq_len + self.pred_len
        need(self.top_k <= steps // 2, "model.net.top_k", self.top_k,
             f"at most (data.seq_len + data.pred_len) // 2 = {steps // 2}, the non-zero frequencies of {steps} steps")


@from_code("attnbench.models.linear_forecasters.DLinear")
class DLinearNetConfig(Checked):
    """DLinear: moving-average decomposition, a linear map over time per part. Its lengths are the data's."""

    def check(self) -> None:
        at_least_one("model.net", self, "enc_in", "moving_avg")
        need(self.moving_avg % 2 == 1, "model.net.moving_avg", self.moving_avg, "must be odd (a centred window)")


@from_code("attnbench.models.linear_forecasters.RLinear")
class RLinearNetConfig(Checked):
    """RLinear: RevIN around one linear map over time. Its lengths are the data's."""

    def check(self) -> None:
        at_least_one("model.net", self, "enc_in")
        below_one("model.net", self, "dropout")


def check_sequence_attention(att: Any, fixed_len: bool) -> None:
    """``model.net.attention`` of a sequence encoder (iTransformer, PatchTST): a self-attention entry over one token
    axis, not a tensor entry; ``fixed_len``: whether an entry built for a fixed length (Linformer) fits."""
    check_attention_position("model.net.attention", dict(att), "self_attention")
    entry = attention.get(att["name"])
    if entry.caps["tensor"] or (entry.caps["fixed_len"] and not fixed_len):
        able = [n for n, e in attention.entries().items()
                if e.caps["self_attention"] and not e.caps["tensor"] and (fixed_len or not e.caps["fixed_len"])]
        raise ConfigError(f"model.net.attention.name={entry.name!r} is not a sequence attention this net can build "
                          f"(tensor entries, and fixed-length ones where the token count varies, are not); entries "
                          f"that are: {', '.join(able)}")


@from_code("attnbench.models.itransformer.ITransformer")
class ITransformerNetConfig(Checked):
    """iTransformer: a token per variable (and per calendar feature), attention across them. Its lengths are the
    data's (``config.checks``)."""

    def check(self) -> None:
        at_least_one("model.net", self, "d_model", "n_heads", "e_layers", "d_ff")
        below_one("model.net", self, "dropout")
        heads_divide(self.n_heads, self.d_model)
        need(not self.calendar_tokens or self.n_time_features >= 1, "model.net.n_time_features",
             self.n_time_features, "must be >= 1 with model.net.calendar_tokens=true")
        check_sequence_attention(self.attention, fixed_len=False)  # the token count is the data's variables


@from_code("attnbench.models.patchtst.PatchTST")
class PatchTSTNetConfig(Checked):
    """PatchTST: each variable a sequence of patch tokens. Its lengths are the data's (``config.checks``)."""

    def check(self) -> None:
        at_least_one("model.net", self, "patch_len", "stride", "d_model", "n_heads", "e_layers", "d_ff")
        below_one("model.net", self, "dropout")
        heads_divide(self.n_heads, self.d_model)
        need(self.patch_len <= self.seq_len, "model.net.patch_len", self.patch_len,
             f"at most data.seq_len={self.seq_len}")
        check_sequence_attention(self.attention, fixed_len=True)  # max_len: the patch count


@from_code("attnbench.models.classifier3d.VolumeClassifier")
class VolumeClassifierNetConfig(TransformerNetConfig):
    sizes = ("patch_size", "in_channels")

    def check(self) -> None:
        super().check()
        size, patch = self.img_size, self.patch_size
        sides = [size] * 3 if isinstance(size, int) else list(size)
        if len(sides) != 3 or any(int(s) % patch for s in sides):
            raise ConfigError(f"model.net.patch_size={patch} must divide every side of model.net.img_size={sides}")


@from_code("attnbench.models.classifier3d.resnet3d")
class ResNet3DNetConfig(Checked):
    def check(self) -> None:
        choice("model.net.depth", str(self.depth), ["10", "18", "34", "50"])
        need(self.widen_factor > 0, "model.net.widen_factor", self.widen_factor, "must be > 0")


@from_code("attnbench.models.hf_text.pretrained_classifier")
class HFClassifierNetConfig(Checked):
    def check(self) -> None:
        need(self.n_labels >= 1, "model.net.n_labels", self.n_labels, "must be >= 1 (1 = regression)")
        check_pretrained_encoder(self.dropout, self.attention, self.trainable_attention)


@from_code("attnbench.models.hf_text.pretrained_masked_lm")
class HFMaskedLMNetConfig(Checked):
    def check(self) -> None:
        check_pretrained_encoder(self.dropout, self.attention, self.trainable_attention)


class LMNetConfig(Checked):
    """Checks of the language models of ``models.lm`` (GPT decoder, RoBERTa encoder)."""

    def check(self) -> None:
        at_least_one("model.net", self, "vocab_size", "max_len", "d_model", "n_heads", "n_layers", "d_mlp")
        below_one("model.net", self, "dropout", "attn_dropout")
        heads_divide(self.n_heads, self.d_model)
        check_attention("model.net.attention", dict(self.attention))


@from_code("attnbench.models.lm.GPTDecoder")
class GPTDecoderNetConfig(LMNetConfig):
    def check(self) -> None:
        super().check()
        name = self.attention["name"]
        if not attention.get(name).caps["causal"]:
            able = [n for n in attention.available() if attention.get(n).caps["causal"]]
            raise ConfigError(f"model.net.attention.name={name!r} cannot run causally (the LM's decoder needs it); "
                              f"entries that can: {', '.join(able)}")


@from_code("attnbench.models.lm.RobertaEncoder")
class RobertaEncoderNetConfig(LMNetConfig):
    pass


@from_code("attnbench.models.lra.LRAEncoder")
class LRAEncoderNetConfig(Checked):
    def check(self) -> None:
        at_least_one("model.net", self, "vocab_size", "n_classes", "max_len", "d_model", "n_heads", "n_layers",
                     "d_mlp")
        below_one("model.net", self, "dropout")
        heads_divide(self.n_heads, self.d_model if self.qkv_dim is None else self.qkv_dim,
                     "the attention width (model.net.qkv_dim, else d_model)")
        att: Any = self.attention
        check_attention("model.net.attention", dict(att))
        if self.key_padding and not attention.get(att["name"]).caps["key_padding_mask"]:
            able = [n for n, e in attention.entries().items() if e.caps["key_padding_mask"]]
            raise ConfigError(f"model.net.attention.name={att['name']!r} takes no key padding mask, and this task "
                              f"pads (model.net.key_padding=true); entries that do: {', '.join(able)}")


@from_code("attnbench.models.seq2seq.Seq2SeqTransformer")
class Seq2SeqNetConfig(Checked):
    def check(self) -> None:
        at_least_one("model.net", self, "d_model", "n_heads", "n_encoder_layers", "n_decoder_layers", "d_mlp")
        if self.d_model % self.n_heads or self.d_model % 2:
            raise ConfigError(f"model.net.d_model={self.d_model} must be even and divisible by "
                              f"model.net.n_heads={self.n_heads}")
        below_one("model.net", self, "dropout", "attn_dropout")
        padded = ("key_padding_mask",)
        check_attention_position("model.net.encoder_attention", dict(self.encoder_attention),
                                 "self_attention", *padded)
        check_attention_position("model.net.decoder_attention", dict(self.decoder_attention),
                                 "self_attention", "causal", *padded)
        # the decoder is autoregressive: its cross attention is CAB's causal cross (queries do not mix)
        check_attention_position("model.net.cross_attention", dict(self.cross_attention),
                                 "cross_attention", *padded, "causal_cross")
        for key in ("encoder_attention", "decoder_attention", "cross_attention"):
            entry = attention.get(getattr(self, key)["name"])
            need(not entry.caps["tensor"] and not entry.caps["fixed_len"], f"model.net.{key}.name", entry.name,
                 "a sequence attention without a fixed length (tensor and fixed_len entries are not supported)")


NET_SCHEMAS = by_target(VolumeClassifierNetConfig, ResNet3DNetConfig)  # model.net of 3D classification
FORECAST_NET_SCHEMAS = by_target(ForecasterNetConfig, InformerNetConfig, TimesNetNetConfig, DLinearNetConfig,
                                 RLinearNetConfig, ITransformerNetConfig, PatchTSTNetConfig)  # model.net of forecasting
LM_NET_SCHEMAS = by_target(GPTDecoderNetConfig, RobertaEncoderNetConfig)
LM_NETS = {"lm": GPTDecoderNetConfig._target_, "mlm": RobertaEncoderNetConfig._target_}  # objective
