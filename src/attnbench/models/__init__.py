"""Architectures built from layers/ and attention/."""
