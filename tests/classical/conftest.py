"""Fixtures of the classical-denoiser tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers module next to this file
from classical_helpers import make_brain_phantom  # noqa: E402


@pytest.fixture
def brain_phantom():
    """The default 48^3 head-like phantom in [0, 1] (seeded, zero background)."""
    return make_brain_phantom()
