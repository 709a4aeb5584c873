"""``model/attention``: an attention node (``model.net.attention`` and the per-position nodes of the
encoder-decoders) checked against the registry's declarations (``attention_spec``, read without torch)."""

import functools
import typing
from dataclasses import field, make_dataclass
from typing import Any

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ValidationError

from attnbench import attention_spec as attention
from attnbench.config.base import choice, field_type, need
from attnbench.errors import ConfigError


@functools.cache
def attention_schema(name: str) -> type:
    """The options of attention entry ``name`` as a schema: each constructor parameter with the type of its
    annotation (``field_type``; Any where OmegaConf cannot hold it; a Literal's values are ``Entry.choices``), every
    field ``???``, so that only the options a node sets are checked."""
    fields_ = []
    for k, annotation in attention.attention_types(name).items():
        try:
            t = field_type(annotation)[0] if annotation else Any
        except TypeError:
            t = Any
        fields_.append((k, t, field(default=MISSING)))
    return make_dataclass(f"{name}_attention_options", fields_)


def check_attention(key: str, att: dict) -> None:
    """An attention node: a registry key plus options its constructor accepts, of the types it annotates."""
    if "name" not in att:
        raise ConfigError(f"{key}.name is missing; allowed: {', '.join(attention.available())}")
    choice(f"{key}.name", att["name"], attention.available())
    opts = {k: v for k, v in att.items() if k != "name"}
    try:
        attention.check_kwargs(att["name"], opts)
    except TypeError as e:
        raise ConfigError(f"{key}: {e}") from None
    for opt, allowed in attention.get(att["name"]).choices.items():  # options the constructor types as Literal
        if opt in opts:
            choice(f"{key}.{opt}", opts[opt], allowed)
    schema = attention_schema(att["name"])
    for k, v in opts.items():  # typed as the constructor annotates them; an option left out keeps its default
        if v is None and k in attention.SIZES:  # null: the model fills in the size (e.g. lra/linformer's max_len)
            continue
        try:
            OmegaConf.merge(OmegaConf.structured(schema), {k: v})
        except ValidationError as e:
            t = typing.get_type_hints(schema)[k]
            raise ConfigError(f"{key}.{k}={v!r} is invalid: attention {att['name']!r} takes "
                              f"{getattr(t, '__name__', t)} ({str(e).splitlines()[0]})") from None


def check_attention_position(key: str, att: dict, *needs: str) -> None:
    """An attention node for one position of a network: a registry entry with the capabilities ``needs``
    (``Caps`` fields); the error lists the entries that have them."""
    check_attention(key, att)
    entry = attention.get(att["name"])
    lacking = [c for c in needs if not entry.caps[c]]
    if lacking:
        fit = [n for n, e in attention.entries().items() if all(e.caps[c] for c in needs)]
        raise ConfigError(f"{key}.name={entry.name!r} lacks {', '.join(lacking)}, which this position needs "
                          f"({', '.join(needs)}); entries that have it: {', '.join(fit)}")


def check_pretrained_encoder(dropout: float | None, att: Any, trainable_attention: bool) -> None:
    """``model.net`` of a pretrained HF encoder (classifier or masked LM): its dropout, and the attention swapped in
    (an entry that can replace a pretrained dense self-attention)."""
    need(dropout is None or 0.0 <= dropout < 1.0, "model.net.dropout", dropout, "must lie in [0, 1) or be null")
    if att is not None:
        check_attention("model.net.attention", dict(att))
        problem = attention.drop_in_problem(att["name"], trainable_attention)
        if problem:
            raise ConfigError(f"model.net.attention.name={att['name']!r} cannot replace a pretrained "
                              f"self-attention: {problem}")
