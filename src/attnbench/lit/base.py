"""What every LightningModule here shares: val/test steps through ``_eval_step`` and the optimizer and
scheduler built from config partials."""

from __future__ import annotations

import lightning as L


class ConfiguredModule(L.LightningModule):
    """Subclasses save ``optimizer``, ``scheduler``, ``scheduler_interval`` and ``monitor`` as hparams and
    define ``_eval_step(batch, stage)``."""

    def _eval_step(self, batch, stage: str) -> None:
        raise NotImplementedError

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self):
        opt = self.hparams.optimizer(params=self.parameters())
        if self.hparams.scheduler is None:
            return opt
        sched = self.hparams.scheduler(optimizer=opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": self.hparams.scheduler_interval,
                                                   "monitor": self.hparams.monitor}}
