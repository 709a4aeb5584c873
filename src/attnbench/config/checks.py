"""``validate``: every check of a composed config, run once before anything is built (``train.run``): the top
level, each group by its schema, then what one group says about another, here and nowhere else (which data a
model trains on, the lengths a forecaster shares with its data, the tokens a fixed-length attention is built for)."""

from omegaconf import DictConfig

from attnbench import attention_spec as attention
from attnbench.config.base import by_target, check_entries, check_schema, resolved
from attnbench.config.callbacks import CALLBACK_SCHEMAS
from attnbench.config.data import (
    CorpusDataConfig,
    GlueDataConfig,
    ImdbDataConfig,
    LRADataConfig,
    MedMNISTDataConfig,
    NiftiDataConfig,
    Seq2SeqDataConfig,
    TimeSeriesDataConfig,
    WordPieceCorpusDataConfig,
)
from attnbench.config.experiment import check_run
from attnbench.config.logger import LOGGER_SCHEMAS
from attnbench.config.model import (
    ClassificationModelConfig,
    ForecastingModelConfig,
    LanguageModelConfig,
    LRAModelConfig,
    PretrainedMLMModelConfig,
    Seq2SeqModelConfig,
    TextClassificationModelConfig,
)
from attnbench.config.net import ForecasterNetConfig, ITransformerNetConfig, PatchTSTNetConfig
from attnbench.config.trainer import TrainerConfig
from attnbench.data.catalog import TIME_SERIES
from attnbench.errors import ConfigError

# which datamodules each LightningModule trains on
_TASKS: dict[type, tuple[type, ...]] = {
    ForecastingModelConfig: (TimeSeriesDataConfig,),
    ClassificationModelConfig: (MedMNISTDataConfig, NiftiDataConfig, LRADataConfig),
    TextClassificationModelConfig: (GlueDataConfig, ImdbDataConfig),
    LanguageModelConfig: (CorpusDataConfig,),
    Seq2SeqModelConfig: (Seq2SeqDataConfig,),
    LRAModelConfig: (LRADataConfig,),
    PretrainedMLMModelConfig: (WordPieceCorpusDataConfig,),
}
TASK_DATA = {m._target_: tuple(d._target_ for d in ds) for m, ds in _TASKS.items()}
SCHEMAS = by_target(*_TASKS, *(d for ds in _TASKS.values() for d in ds), TrainerConfig)
TASK_HINT = ("forecasting: model=hot|full|informer|dlinear|rlinear|timesnet|itransformer|patchtst with "
             "data=ett|weather|...; "
             "3D classification: model=hot3d|vit3d|resnet3d with data=medmnist3d|nifti; "
             "GLUE: model=bert|smyrf_bert with data=glue|imdb; "
             "LRA: model=lra_encoder with data=lra")


def patchtst_patches(seq_len: int, patch_len: int, stride: int) -> int:
    """PatchTST's patches of one series, its end padded by ``stride``: (seq_len - patch_len) // stride + 2
    (``models.patchtst.n_patches``, restated here: ``config`` imports no torch)."""
    return (seq_len + stride - patch_len) // stride + 1


def _series_inputs(data: DictConfig) -> int:
    """The variables a forecaster is fed: all of them under features M and MS, the target alone under S."""
    return 1 if str(data.get("features")) == "S" else TIME_SERIES[data.name].n_vars


def token_count(cfg: DictConfig) -> tuple[int, str] | None:
    """Tokens a sequence attention sees in one sequence, with how they arise; None where not known statically.

    PatchForecaster (model=hot, full): variables x seq_len/patch_len, flattened into one sequence; PatchTST: the
    patches of one variable (each variable is a sequence of its own); iTransformer: a token per variable and per
    calendar feature; volume classifier: the product of side/patch_size; text: data.max_length; a corpus:
    data.block_len.
    """
    net, data = cfg.model.get("net"), cfg.data
    if net is None:
        return None
    target = net.get("_target_")
    if target == PatchTSTNetConfig._target_:
        n = patchtst_patches(net.seq_len, net.patch_len, net.stride)
        return n, (f"the patches of one variable, each variable a sequence of its own: (data.seq_len - "
                   f"model.net.patch_len) // model.net.stride + 2 = ({net.seq_len} - {net.patch_len}) // "
                   f"{net.stride} + 2")
    if target == ITransformerNetConfig._target_:
        n_vars, n_marks = _series_inputs(data), net.n_time_features if net.calendar_tokens else 0
        return n_vars + n_marks, (f"{n_vars} variables + {n_marks} calendar features (model.net.calendar_tokens="
                                  f"{str(net.calendar_tokens).lower()})")
    if target == ForecasterNetConfig._target_:
        n_vars = _series_inputs(data)
        n = n_vars * (net.seq_len // net.patch_len)
        return n, f"{n_vars} variables x data.seq_len/model.net.patch_len = {net.seq_len}/{net.patch_len} patches"
    if "img_size" in net and "patch_size" in net:
        sides = [net.img_size] * 3 if isinstance(net.img_size, int) else list(net.img_size)
        grid = [int(s) // net.patch_size for s in sides]
        return grid[0] * grid[1] * grid[2], f"patches {' x '.join(map(str, grid))} of model.net.img_size={sides}"
    for k in ("max_length", "block_len"):
        if k in data:
            return data[k], f"data.{k}"
    return None


def _check_fixed_len(cfg: DictConfig) -> None:
    """A fixed-length attention (Linformer, Super) must be built for at least the run's token count."""
    att = cfg.model.get("net", {}).get("attention") if "net" in cfg.model else None
    if not att or att.get("name") not in attention.entries():
        return
    entry = attention.get(att.name)
    if not entry.caps["fixed_len"] or entry.caps["tensor"] or att.get("max_len") is None:
        return
    counted = token_count(cfg)
    if counted is not None and counted[0] > att.max_len:
        n, how = counted
        raise ConfigError(f"model.net.attention.max_len={att.max_len} is smaller than the {n} tokens of this run "
                          f"({how}): set model.net.attention.max_len={n} (or more)")


def _check_lengths(cfg: DictConfig) -> None:
    """The lengths one group takes from another: a forecaster's are its data's (``data.seq_len``,
    ``data.pred_len``, ``data.label_len``; the model's horizons lie within ``data.pred_len``); a language
    model's positions cover ``data.block_len``."""
    data, model, net = cfg.data, cfg.model, cfg.model.get("net") or {}
    if "pred_len" in data and "pred_len" in net:
        for k in ("seq_len", "pred_len", "label_len"):
            if k in net and net[k] != data[k]:
                raise ConfigError(f"model.net.{k}={net[k]} must equal data.{k}={data[k]} (the model's lengths "
                                  "are the data's)")
        bad = [h for h in model.get("horizons") or () if not 1 <= h <= data.pred_len]
        if bad:
            raise ConfigError(f"model.horizons={list(model.horizons)}: {bad} outside [1, data.pred_len="
                              f"{data.pred_len}]")
    if "block_len" in data and "max_len" in net and net.max_len < data.block_len:
        raise ConfigError(f"model.net.max_len={net.max_len} is shorter than data.block_len={data.block_len}: set "
                          f"model.net.max_len={data.block_len} (or more)")


def check_schedule_budget(scheduler: dict | None, max_epochs: int | None) -> None:
    """Refuse a cosine schedule without a finite period (``T_max`` < 1, e.g. ``trainer.max_epochs=-1``): its
    learning rate would oscillate."""
    if not scheduler or not str(scheduler.get("_target_", "")).endswith("CosineAnnealingLR"):
        return
    t_max = scheduler.get("T_max")
    if isinstance(t_max, int) and t_max < 1:
        raise ConfigError(f"model.scheduler.T_max={t_max} is invalid: a cosine schedule needs a finite period >= 1 "
                          f"(T_max follows trainer.max_epochs, here {max_epochs}; -1 means no limit). Set "
                          "trainer.max_epochs >= 1, or model.scheduler.T_max >= 1, or model.scheduler=null")


def validate(cfg: DictConfig) -> None:
    """Range and cross-group checks; raise ConfigError naming the key before anything is built."""
    check_run(cfg)
    wants = TASK_DATA.get(cfg.model.get("_target_"), ())
    if wants and cfg.data.get("_target_") not in wants:  # before resolving: cross-task interpolations fail
        raise ConfigError(f"model {cfg.model._target_} cannot train on data {cfg.data._target_}; it takes "
                          f"{', '.join(wants)} ({TASK_HINT})")
    for group in ("data", "model", "trainer"):
        target = cfg[group].get("_target_")
        if target not in SCHEMAS:
            raise ConfigError(f"{group}._target_={target!r} has no schema; known: {', '.join(SCHEMAS)}")
        check_schema(group, SCHEMAS[target], resolved(cfg[group]))  # resolved against the whole cfg
    check_schedule_budget(resolved(cfg.model).get("scheduler"), cfg.trainer.get("max_epochs"))
    check_entries("callbacks", resolved(cfg.callbacks) if cfg.get("callbacks") else None, CALLBACK_SCHEMAS)
    check_entries("logger", resolved(cfg.logger) if cfg.get("logger") else None, LOGGER_SCHEMAS)
    _check_lengths(cfg)
    _check_fixed_len(cfg)
