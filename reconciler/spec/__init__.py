"""Spec kinds, their loading from YAML, and their JSON Schema (the bottom layer: no I/O to AWS)."""
