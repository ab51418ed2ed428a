"""RRDB generator of the three-player GAN, DISGAN (scale 2) and the motion-correction GAN (scale 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bids_enhance.models._checks import check_float, check_int
from bids_enhance.models.blocks import RRDB, VoxelShuffle, VoxelUnshuffle

__all__ = ["RRDBGenerator"]

SUPPORTED_SCALES = (1, 2)


class RRDBGenerator(nn.Module):
    """ESRGAN-style generator in 3D.

    stem conv ``in_channels → features``; ``num_blocks`` RRDBs (each three residual dense blocks
    of five convs with ``growth`` channels, LeakyReLU, ``residual_scale`` and a scaled skip around
    the RRDB); trunk conv and a global skip; for ``scale=2`` a conv ``features → 8·features`` and
    a ×2 voxel shuffle; then conv, LeakyReLU, conv → ``out_channels``. The output is linear (no
    activation, no clamping).

    Input ``(B, in_channels, D, H, W)``, float32 (bfloat16/float16 under autocast), intensities
    normalised to about [0, 1]; any spatial size. Output ``(B, out_channels, s·D, s·H, s·W)`` with
    ``s = scale``, same dtype, unbounded. Contiguous and ``channels_last_3d`` layouts both work.

    The thesis used ``num_blocks=3, features=64``; the authors' code ``growth=64,
    negative_slope=0.01``; ESRGAN ``growth=32, negative_slope=0.2``.

    ``image_skip=True`` (not in the thesis; off by default) adds the input, upsampled by
    :meth:`image_residual` (trilinear, ``align_corners=False``: HR voxel ``j`` at LR coordinate
    ``j/2 − 0.25``, exactly the 2×2×2 box-average geometry), to the output, so the network learns
    only the residual over trilinear interpolation. On real heads this made a small generator
    beat cubic B-spline interpolation within 100 L1 iterations where the plain one was still
    below it after 400 (see docs/benchmarks/superres.md): short GPU budgets converge faster.
    With more input than output channels (a guided input, e.g. a classical filter's output
    stacked with the noisy image it came from, :class:`~bids_enhance.degrade.Prefilter`) the
    skip carries the first ``out_channels`` input channels.

    Compact variants (not in the thesis; the shipped CPU-trained weights use them):

    ``hr_features`` (default ``features``) is the width of the high-resolution head: the
    upsampling conv makes ``8·hr_features`` channels and ``conv_hr`` runs ``hr_features →
    hr_features`` on the fine grid. At ``scale=2`` that head runs on 8× the voxels of the body,
    so a narrow head (e.g. 8 of 32) cuts the generator's cost by about a third for almost no loss
    (benchmarks/compact_sweep.py).

    ``space_to_depth=True`` (``scale=1`` only) folds every 2×2×2 block of the input into 8
    channels (voxel unshuffle) before the stem, runs the body on half the grid and shuffles back
    up with the x2 head: the same network as the x2 super-resolution generator seen from the
    fine grid. The body then costs an eighth and sees twice as far — what a scale-1 motion
    corrector needs to reach the ghosts it removes.
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, features: int = 64,
                 growth: int = 32, num_blocks: int = 3, scale: int = 2,
                 negative_slope: float = 0.2, residual_scale: float = 0.2,
                 image_skip: bool = False, hr_features: int | None = None,
                 space_to_depth: bool = False) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels)
        out_channels = check_int("out_channels", out_channels)
        features = check_int("features", features)
        growth = check_int("growth", growth)
        num_blocks = check_int("num_blocks", num_blocks)
        if isinstance(scale, bool) or scale not in SUPPORTED_SCALES:
            raise ValueError(f"scale must be one of {SUPPORTED_SCALES}, got {scale!r}")
        self.scale = int(scale)
        self.negative_slope = check_float("negative_slope", negative_slope, minimum=0.0)
        residual_scale = check_float("residual_scale", residual_scale, minimum=0.0)
        if not isinstance(image_skip, bool):
            raise ValueError(f"image_skip must be True or False, got {image_skip!r}")
        if image_skip and in_channels < out_channels:
            raise ValueError("image_skip needs in_channels >= out_channels, got "
                             f"{in_channels} and {out_channels}")
        self.image_skip = image_skip
        hr_features = features if hr_features is None else check_int("hr_features", hr_features)
        if not isinstance(space_to_depth, bool):
            raise ValueError(f"space_to_depth must be True or False, got {space_to_depth!r}")
        if space_to_depth and self.scale != 1:
            raise ValueError("space_to_depth is for scale 1 only (a scale-2 generator already "
                             "runs its body on the coarse grid)")
        self.space_to_depth = space_to_depth
        self.hr_features = hr_features
        # the body's grid is coarser than the output by this factor (2 for x2 and space_to_depth)
        self.body_factor = 2 if (self.scale == 2 or space_to_depth) else 1

        self.unshuffle: nn.Module = VoxelUnshuffle(2) if space_to_depth else nn.Identity()
        stem_in = in_channels * (8 if space_to_depth else 1)
        self.conv_first = nn.Conv3d(stem_in, features, 3, padding=1)
        self.body = nn.Sequential(*[
            RRDB(features=features, growth=growth, negative_slope=self.negative_slope,
                 residual_scale=residual_scale)
            for _ in range(num_blocks)])
        self.conv_body = nn.Conv3d(features, features, 3, padding=1)
        self.upsample: nn.Module
        if self.body_factor == 2:
            self.upsample = nn.Sequential(nn.Conv3d(features, 8 * hr_features, 3, padding=1),
                                          VoxelShuffle(2))
        elif hr_features != features:
            self.upsample = nn.Conv3d(features, hr_features, 1)
        else:
            self.upsample = nn.Identity()
        self.conv_hr = nn.Conv3d(hr_features, hr_features, 3, padding=1)
        self.conv_last = nn.Conv3d(hr_features, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 5:
            raise ValueError(f"RRDBGenerator expects (B, C, D, H, W), got shape {tuple(x.shape)}")
        if self.space_to_depth and any(n % 2 for n in x.shape[2:]):
            # odd sizes: replicate one plane at the far end, run, and cut it off again
            size = x.shape[2:]
            pad = [p for n in reversed(size) for p in (0, n % 2)]
            out = self.forward(F.pad(x, pad, mode="replicate"))
            return out[:, :, :size[0], :size[1], :size[2]]
        feat = self.conv_first(self.unshuffle(x))
        feat = feat + self.conv_body(self.body(feat))
        feat = self.upsample(feat)
        out = self.conv_last(F.leaky_relu(self.conv_hr(feat), self.negative_slope))
        if self.image_skip:
            out = out + self.image_residual(x).to(out.dtype)
        return out

    @property
    def supports_lean_forward(self) -> bool:
        """Whether :meth:`forward_lean` applies: an x2 generator with its body on the input
        grid (the head, on 8× the voxels, is what the lean forward slices)."""
        return self.scale == 2 and not self.space_to_depth

    def forward_lean(self, x: Tensor, *, slab: int, halo: int = 2) -> Tensor:
        """:meth:`forward` with less memory (inference): stem, RRDBs and trunk on the whole
        input, then the x2 head (conv → voxel shuffle → conv → LeakyReLU → conv) in slabs of
        ``slab`` input voxels along axis 2 of ``(B, C, D, H, W)``, each with ``halo`` trunk
        voxels of context on either side. ``halo`` ≥ 2 is the head's whole receptive field, so
        the result equals ``forward(x)`` up to float rounding. The slab depth is chosen by the
        caller's memory plan (:func:`bids_enhance.inference.memory.rrdb_head_slab`). Returns
        float32 ``(B, out_channels, 2D, 2H, 2W)``."""
        if not self.supports_lean_forward:
            raise ValueError("forward_lean needs an x2 generator without space_to_depth")
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, D, H, W), got shape {tuple(x.shape)}")
        if slab < 1:
            raise ValueError(f"slab must be >= 1, got {slab}")
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        depth = feat.shape[2]
        out = None
        for d0 in range(0, depth, slab):
            d1 = min(d0 + slab, depth)
            lo, hi = max(d0 - halo, 0), min(d1 + halo, depth)
            # one expression, so each 8F-channel intermediate is freed as soon as it is consumed
            y = self.conv_last(F.leaky_relu(self.conv_hr(self.upsample(feat[:, :, lo:hi])),
                                            self.negative_slope))
            if out is None:
                if slab >= depth:
                    out = y.float()
                    break
                out = torch.empty((y.shape[0], y.shape[1], 2 * depth, *y.shape[3:]),
                                  dtype=torch.float32, device=y.device)
            out[:, :, 2 * d0:2 * d1] = y[:, :, 2 * (d0 - lo):2 * (d0 - lo) + 2 * (d1 - d0)]
        assert out is not None
        if self.image_skip:
            out += self.image_residual(x).float()
        return out

    def image_residual(self, x: Tensor) -> Tensor:
        """What ``image_skip`` adds: the first ``out_channels`` channels of ``x`` (scale 1) or
        their trilinear x2 upsampling."""
        out_channels = self.conv_last.out_channels
        if x.shape[1] != out_channels:
            x = x[:, :out_channels]
        if self.scale == 1:
            return x
        return F.interpolate(x, scale_factor=self.scale, mode="trilinear", align_corners=False)
