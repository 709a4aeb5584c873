"""Reusable blocks: multi-head attention over tensors, MLPs, positional encodings."""
