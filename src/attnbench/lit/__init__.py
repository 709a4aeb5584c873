"""LightningModules, one per task kind."""
