"""Datamodules and data-set download/verification."""
