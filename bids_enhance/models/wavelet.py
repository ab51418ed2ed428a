"""One-level 3D Haar wavelet transform as a fixed stride-2 convolution, and its inverse.

Band order (dimension 2 of :func:`haar_dwt3d`'s output) is :data:`HAAR_BANDS`, the key order of
``pywt.dwtn(x, 'haar')``: the letters refer to the D, H, W axes in that order, ``a`` = low pass
``(x0 + x1)/√2``, ``d`` = high pass ``(x0 − x1)/√2``. Band 0 (``aaa``) is the low-frequency LLL
band; bands 1–7 are the details. The eight 2×2×2 filters are orthonormal, so the inverse is the
transposed convolution with the same filters (perfect reconstruction).

Spatial sizes must be even (pywt pads odd sizes; we refuse them instead).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["HAAR_BANDS", "HaarDWT3d", "HaarIDWT3d", "haar_dwt3d", "haar_filters3d", "haar_idwt3d"]

HAAR_BANDS: tuple[str, ...] = tuple("".join(p) for p in itertools.product("ad", repeat=3))


def haar_filters3d(dtype: torch.dtype = torch.float32) -> Tensor:
    """The eight 2×2×2 Haar analysis filters, shape ``(8, 1, 2, 2, 2)``, in :data:`HAAR_BANDS` order."""
    s = 2.0 ** -0.5
    taps = {"a": torch.tensor([s, s], dtype=torch.float64),
            "d": torch.tensor([s, -s], dtype=torch.float64)}
    filters = [torch.einsum("i,j,k->ijk", taps[b[0]], taps[b[1]], taps[b[2]]) for b in HAAR_BANDS]
    return torch.stack(filters)[:, None].to(dtype)


def _check_even(x: Tensor) -> None:
    if x.ndim != 5:
        raise ValueError(f"expected (B, C, D, H, W), got shape {tuple(x.shape)}")
    if any(s % 2 for s in x.shape[2:]):
        raise ValueError(f"the Haar DWT needs even D, H, W, got {tuple(x.shape[2:])}")


def haar_dwt3d(x: Tensor, filters: Tensor | None = None) -> Tensor:
    """``(B, C, D, H, W)`` → ``(B, C, 8, D/2, H/2, W/2)``, bands in :data:`HAAR_BANDS` order."""
    _check_even(x)
    b, c = x.shape[:2]
    w = haar_filters3d() if filters is None else filters
    w = w.to(device=x.device, dtype=x.dtype).repeat(c, 1, 1, 1, 1)  # (8C, 1, 2, 2, 2)
    y = F.conv3d(x, w, stride=2, groups=c)  # channel c*8 + band
    return y.reshape(b, c, 8, *y.shape[2:])


def haar_idwt3d(bands: Tensor, filters: Tensor | None = None) -> Tensor:
    """Inverse of :func:`haar_dwt3d`: ``(B, C, 8, d, h, w)`` → ``(B, C, 2d, 2h, 2w)``."""
    if bands.ndim != 6 or bands.shape[2] != 8:
        raise ValueError(f"expected (B, C, 8, d, h, w), got shape {tuple(bands.shape)}")
    b, c = bands.shape[:2]
    w = haar_filters3d() if filters is None else filters
    w = w.to(device=bands.device, dtype=bands.dtype).repeat(c, 1, 1, 1, 1)
    return F.conv_transpose3d(bands.reshape(b, 8 * c, *bands.shape[3:]), w, stride=2, groups=c)


class HaarDWT3d(nn.Module):
    """Module form of :func:`haar_dwt3d`; the filters are a (non-trainable) buffer."""

    filters: Tensor

    def __init__(self) -> None:
        super().__init__()
        # persistent=False: fixed maths, not a learned weight, so not a checkpoint key
        self.register_buffer("filters", haar_filters3d(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return haar_dwt3d(x, self.filters)


class HaarIDWT3d(nn.Module):
    """Module form of :func:`haar_idwt3d`; the filters are a (non-trainable) buffer."""

    filters: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("filters", haar_filters3d(), persistent=False)

    def forward(self, bands: Tensor) -> Tensor:
        return haar_idwt3d(bands, self.filters)
