"""lica: an experiment platform for LICA (Learning Implicit Credit Assignment, NeurIPS 2020)."""

__version__ = "0.1.0"
