import pytest
import torch


@pytest.fixture
def frames():
    """3 frames of 48 tokens (a 6x8 grid) with 10-dim random features: distances without near-ties."""
    generator = torch.Generator().manual_seed(1234)
    return torch.randn(3, 48, 10, generator=generator), (6, 8)
