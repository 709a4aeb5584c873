"""What Hydra sees: each group's schema in the ConfigStore (a group yaml names it first in its defaults list,
``- timeseries_schema``, so an unknown key or a value of the wrong type fails while composing) and the resolvers
the yamls use."""

from hydra.core.config_store import ConfigStore

from attnbench.config import data, model, net
from attnbench.config.experiment import PathsConfig, TrainConfig
from attnbench.config.resolvers import register_resolvers
from attnbench.config.trainer import TrainerConfig

# group -> {name in the defaults lists: schema}
STORED: dict[str | None, dict[str, type]] = {
    None: {"train_schema": TrainConfig},
    "data": {"timeseries_schema": data.TimeSeriesDataConfig, "medmnist_schema": data.MedMNISTDataConfig,
             "nifti_schema": data.NiftiDataConfig, "glue_schema": data.GlueDataConfig,
             "imdb_schema": data.ImdbDataConfig, "lra_schema": data.LRADataConfig,
             "corpus_schema": data.CorpusDataConfig, "wordpiece_corpus_schema": data.WordPieceCorpusDataConfig,
             "seq2seq_schema": data.Seq2SeqDataConfig},
    "model": {"forecasting_schema": model.ForecastingModelConfig,
              "classification_schema": model.ClassificationModelConfig,
              "text_classification_schema": model.TextClassificationModelConfig,
              "lm_schema": model.LanguageModelConfig, "hf_mlm_schema": model.PretrainedMLMModelConfig,
              "lra_schema": model.LRAModelConfig, "seq2seq_schema": model.Seq2SeqModelConfig},
    # model.net typed while composing (the hot and informer yamls)
    "model/net": {"patch_forecaster_schema": net.ForecasterNetConfig, "informer_schema": net.InformerNetConfig,
                  "timesnet_schema": net.TimesNetNetConfig, "dlinear_schema": net.DLinearNetConfig,
                  "rlinear_schema": net.RLinearNetConfig, "itransformer_schema": net.ITransformerNetConfig,
                  "patchtst_schema": net.PatchTSTNetConfig},
    "trainer": {"trainer_schema": TrainerConfig},
    "paths": {"paths_schema": PathsConfig},
}


def register_configs() -> None:
    """Put the schemas in the ConfigStore and the resolvers in OmegaConf (idempotent)."""
    cs = ConfigStore.instance()
    for group, schemas in STORED.items():
        for name, node in schemas.items():
            cs.store(group=group, name=name, node=node)
    register_resolvers()
