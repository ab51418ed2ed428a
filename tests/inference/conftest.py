"""Fixtures for the inference tests: tiny networks and small synthetic volumes only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bids_enhance.models import RRDBGenerator


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny convolutions are dominated by OpenMP synchronisation on a busy 2-core machine
    (30 ms instead of 1 ms per call); one thread keeps these tests fast and their timing stable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: one RRDB, 8 features: receptive radius 19 input voxels
TINY = {"features": 8, "growth": 4, "num_blocks": 1}


def tiny_generator(scale: int = 2, *, seed: int = 0, boost: float = 1.0) -> RRDBGenerator:
    """A tiny generator; ``boost`` multiplies the RRDB weights (the default initialisation
    scales them by 0.1, which keeps the body weak; trained weights are stronger)."""
    torch.manual_seed(seed)
    model = RRDBGenerator(scale=scale, **TINY).eval()
    if boost != 1.0:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.startswith("body") and p.ndim == 5:
                    p.mul_(boost)
    return model


class TrilinearStub(nn.Module):
    """'Identity-like' x2 model: trilinear upsampling with ``align_corners=False``, i.e. output
    voxel ``j`` at input coordinate ``j/2 − 1/4`` — the box geometry."""

    scale = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)


def smooth_volume(shape, *, seed: int = 0, sigma: float = 1.5) -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    vol = ndimage.gaussian_filter(rng.random(shape), sigma, mode="wrap")
    return ((vol - vol.min()) / np.ptp(vol)).astype(np.float32)


def blob(shape, centre, *, sigma: float = 3.0) -> np.ndarray:
    """A Gaussian blob centred at voxel coordinates ``centre`` (need not be on the grid)."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
    return np.exp(-0.5 * r2 / sigma**2)


def world_centre_of_mass(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of mass in world (mm) coordinates."""
    data = np.asarray(data, dtype=np.float64)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in data.shape], indexing="ij")
    total = data.sum()
    ijk = np.array([(g * data).sum() / total for g in grids])
    return affine[:3, :3] @ ijk + affine[:3, 3]


@pytest.fixture
def oblique_affine() -> np.ndarray:
    """Rotated, anisotropic (0.9 × 1.0 × 1.2 mm), translated voxel→world matrix."""
    a, b = np.deg2rad(20.0), np.deg2rad(-10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([0.9, 1.0, 1.2])
    affine[:3, 3] = [-40.0, 12.5, 7.25]
    return affine
