"""Benchmarks that measure attention cost and error rather than accuracy (``python -m attnbench.bench.<name>
key=value ...``, each a Hydra app on ``conf/bench/<name>.yaml``).

- :mod:`attnbench.bench.hot_scaling`: training-step time and peak memory of HOT vs full attention as the
  number of variables (tokens) grows.
- :mod:`attnbench.bench.volume_scaling`: the same for the 3D classifiers (HOT, ViT, ResNet) as volumes grow.
- :mod:`attnbench.bench.attention`: forward and forward+backward time and peak memory of every sequence
  attention entry vs full attention over lengths, and their efficiency lengths (after CAB).
- :mod:`attnbench.bench.approx`: approximation error of every entry vs full attention on structured inputs.
- :mod:`attnbench.bench.swap`: a pretrained encoder's attention swapped for drop-in entries, no retraining.
- :mod:`attnbench.bench.harness`: what they share (config keys, models from ``conf/model``, the point
  measurement, cost prediction, the crossover / efficiency length); :mod:`attnbench.bench.isolation`: point
  processes; :mod:`attnbench.bench.common`: timing, memory and machine helpers.
"""
