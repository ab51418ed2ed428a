"""Fixtures of the training tests: tiny phantoms and configurations, one torch thread."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # training_helpers next to this file
from training_helpers import volumes  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """Bitwise comparisons need a fixed thread count; 2 shared cores make 1 the fastest."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def train_volumes():
    return volumes(2)


@pytest.fixture
def val_volumes():
    return volumes(1, first_seed=7)
