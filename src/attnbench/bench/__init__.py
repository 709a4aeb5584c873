"""Benchmarks that measure attention cost rather than accuracy (``python -m attnbench.bench.<name>``).

- :mod:`attnbench.bench.hot_scaling`: training-step time and peak memory of HOT vs full attention as the
  number of variables (tokens) grows.
- :mod:`attnbench.bench.attention`: forward and forward+backward time and peak memory of every sequence
  attention entry vs full attention over lengths, and their efficiency lengths (after CAB).
- :mod:`attnbench.bench.common`: timing, memory and machine helpers shared by both.
"""
