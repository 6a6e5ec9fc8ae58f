"""Dataset helpers for mmib."""

from .synthetic_ade import generate_ade_layout

__all__ = ['generate_ade_layout']
