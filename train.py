"""Train a model: ``python train.py model=hot data=ett`` (Hydra overrides; ``--help`` lists the groups)."""

from attnbench.train import main

if __name__ == "__main__":
    main()
