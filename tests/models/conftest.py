"""Fixtures for the model tests: tiny networks only (2 CPU cores)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bids_enhance.models import build_model, save_checkpoint

TINY_GENERATOR = {"features": 4, "growth": 4, "num_blocks": 1, "scale": 2}


@pytest.fixture
def tiny_generator_checkpoint(tmp_path) -> tuple[Path, str]:
    """A one-block x2 generator checkpoint: ``(path, sha256)``."""
    torch.manual_seed(0)
    model = build_model("rrdb_generator", **TINY_GENERATOR)
    path = tmp_path / "gen.pt"
    digest = save_checkpoint(path, model=model, arch_name="rrdb_generator",
                             arch_kwargs=TINY_GENERATOR, degradation={"kind": "box"},
                             normalisation={"method": "p99.9", "scale": 1.0}, seed=7,
                             training_command=["bids_enhance", "bids", "out", "train"])
    return path, digest
