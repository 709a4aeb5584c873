"""Structured-config schemas and the checks run before training, one module per group of ``conf/``.

``data``, ``model`` (its ``net`` and ``attention`` nodes), ``trainer``, ``callbacks``, ``logger`` and
``experiment`` (the top level and ``paths``) hold a schema per ``_target_``: a dataclass whose fields are the
constructor's parameters, their types and defaults read from its source (``base.from_code``; no import, no torch),
for our classes and Lightning's and W&B's alike, plus the checks only we state. ``store`` puts them in Hydra's
ConfigStore, so a typo fails while composing; ``checks.validate`` runs every other check once, cross-group ones
included, before anything is built.
"""

from attnbench.config.attention import attention_schema, check_attention
from attnbench.config.base import FROM_CODE, Checked, check_schema, field_type, from_code, resolved
from attnbench.config.callbacks import (
    CALLBACK_SCHEMAS,
    PROGRESS_BARS,
    TreeBootstrapConfig,
    check_tree_bootstrap,
    drop_disabled_progress_bar,
)
from attnbench.config.checks import SCHEMAS, TASK_DATA, token_count, validate
from attnbench.config.data import LRADataConfig, MedMNISTDataConfig, Seq2SeqDataConfig, TimeSeriesDataConfig
from attnbench.config.experiment import DROPOUT_RNGS, PathsConfig, TrainConfig
from attnbench.config.logger import LOGGER_SCHEMAS
from attnbench.config.model import ClassificationModelConfig, ForecastingModelConfig, LRAModelConfig, OptimizerConfig
from attnbench.config.net import (
    FORECAST_NET_SCHEMAS,
    LM_NET_SCHEMAS,
    NET_SCHEMAS,
    ForecasterNetConfig,
    ResNet3DNetConfig,
    TransformerNetConfig,
)
from attnbench.config.resolvers import project_root
from attnbench.config.store import register_configs
from attnbench.config.trainer import PRECISIONS, TrainerConfig
from attnbench.errors import ConfigError

__all__ = [
    "CALLBACK_SCHEMAS", "DROPOUT_RNGS", "FORECAST_NET_SCHEMAS", "FROM_CODE", "LM_NET_SCHEMAS", "LOGGER_SCHEMAS",
    "NET_SCHEMAS", "PRECISIONS", "PROGRESS_BARS", "SCHEMAS", "TASK_DATA", "Checked", "ClassificationModelConfig",
    "ConfigError", "ForecasterNetConfig", "ForecastingModelConfig", "LRADataConfig", "LRAModelConfig",
    "MedMNISTDataConfig", "OptimizerConfig", "PathsConfig", "ResNet3DNetConfig", "Seq2SeqDataConfig",
    "TimeSeriesDataConfig", "TrainConfig", "TrainerConfig", "TransformerNetConfig", "TreeBootstrapConfig",
    "attention_schema", "check_attention", "check_schema", "check_tree_bootstrap",
    "drop_disabled_progress_bar", "field_type", "from_code", "project_root", "register_configs", "resolved",
    "token_count", "validate",
]
