"""Benchmarks that measure attention cost rather than accuracy (``python -m attnbench.bench.<name>``).

- :mod:`attnbench.bench.hot_scaling`: training-step time and peak memory of HOT vs full attention as the
  number of variables (tokens) grows.
"""
