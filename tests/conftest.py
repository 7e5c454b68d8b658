import sys
from pathlib import Path

import pyro
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def fresh_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def fake_images():
    """64 binary 'images' with structure (a few prototypes plus noise), and labels."""
    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(4, 784, generator=g) > 0.5).float()
    y = torch.arange(64) % 4
    flip = (torch.rand(64, 784, generator=g) < 0.05).float()
    return (protos[y] - flip).abs(), y
