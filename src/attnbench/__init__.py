"""attnbench: efficient-attention benchmarks reproduced from one Hydra config tree."""

__version__ = "0.1.0"
