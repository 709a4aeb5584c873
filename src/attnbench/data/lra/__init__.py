"""Long Range Arena (Tay et al., ICLR 2021) tasks: one module per task, each providing ``INFO`` and ``load_split``
(see :mod:`attnbench.data.lra.common`), read by one datamodule."""
