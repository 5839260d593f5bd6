"""EVTP-IVS: batch instructed-visual-segmentation with EVTP visual-token pruning."""

from .pruning import Selection, coverage_radius, select_tokens

__version__ = "0.1.0"

__all__ = ["Selection", "coverage_radius", "select_tokens"]
