"""Visual-token selection: EVTP and its baselines. Pure tensors in, indices out; knows nothing of models."""

from .coverage import Coverage, coverage_radius
from .select import METHODS, select_tokens
from .selection import Selection
from .validation import budget

__all__ = ["METHODS", "Coverage", "Selection", "budget", "coverage_radius", "select_tokens"]
