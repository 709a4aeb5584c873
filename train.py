"""Train a model: ``python train.py model=hot data=ett`` (Hydra overrides; ``--help`` lists the groups).

The same as the installed ``attnbench-train``; ``python -m attnbench list attention|data|models|experiments``
lists what exists.
"""

from attnbench.cli import train

if __name__ == "__main__":
    train()
