"""Synthetic utility customer base: realistic customers, hourly load, owners, legacy bills with known errors.

``generate_base(out_dir, customers, seed)`` writes the Parquet layout that :mod:`grid.base` loads; see
:mod:`grid.synth.generate` for the steps and :mod:`grid.synth.writer` for the layout.
"""
from grid.synth.generate import FORMAT, generate_base

__all__ = ["FORMAT", "generate_base"]
