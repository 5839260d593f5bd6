"""Where the shared reference material lives: ``../shared/reference`` beside the repository (as in CI)."""

from pathlib import Path

import numpy as np
from PIL import Image

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
GOLDEN = REFERENCE / "golden-tiny"

# The golden tests are the definition of a working model, so a missing reference fails them, never skips them.
assert GOLDEN.is_dir(), f"golden reference not found at {GOLDEN} (expected ../shared beside the repository)"


def rgb(path: Path) -> np.ndarray:
    """A reference image or frame as an RGB uint8 array."""
    return np.asarray(Image.open(path).convert("RGB"))
