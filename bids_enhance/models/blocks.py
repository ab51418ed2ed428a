"""Reusable building blocks of the networks (whole networks live in their own modules).

3D blocks take ``(B, C, D, H, W)`` tensors, 2D blocks ``(B, C, H, W)``; all are dtype-agnostic
(float32, or bfloat16/float16 under autocast) and work with contiguous or channels-last inputs.
Attribute names are checkpoint keys: renaming one needs a key map and a test.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bids_enhance.models._checks import check_float, check_int

__all__ = [
    "RRDB",
    "AttentionBlock2d",
    "BasicBlock3d",
    "ConvBlock3d",
    "CriticBlock3d",
    "Downsample2d",
    "ResBlock2d",
    "ResidualDenseBlock",
    "TimeEmbedding",
    "Upsample2d",
    "VoxelShuffle",
    "VoxelUnshuffle",
    "sinusoidal_embedding",
    "voxel_shuffle",
    "voxel_unshuffle",
]


# --------------------------------------------------------------------------------------------
# voxel shuffle (3D pixel shuffle)
# --------------------------------------------------------------------------------------------

def _is_channels_last_3d(x: Tensor) -> bool:
    return (x.ndim == 5 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last_3d))


def voxel_shuffle(x: Tensor, scale: int) -> Tensor:
    """Rearrange ``(B, C·r³, D, H, W)`` into ``(B, C, D·r, H·r, W·r)`` (3D ``pixel_shuffle``).

    Channel ``c·r³ + i·r² + j·r + k`` of input voxel ``(d, h, w)`` goes to output voxel
    ``(d·r + i, h·r + j, w·r + k)`` of channel ``c`` — the ordering of ``torch.pixel_shuffle``
    extended to three axes. A channels-last input gives a channels-last output (one copy).
    """
    check_int("scale", scale)
    if x.ndim != 5:
        raise ValueError(f"voxel_shuffle expects (B, C, D, H, W), got shape {tuple(x.shape)}")
    b, c, d, h, w = x.shape
    r = scale
    if c % r**3:
        raise ValueError(f"voxel_shuffle with scale {r} needs channels divisible by {r**3}, got {c}")
    oc = c // r**3
    if _is_channels_last_3d(x):
        y = x.permute(0, 2, 3, 4, 1).reshape(b, d, h, w, oc, r, r, r)  # a view
        y = y.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, d * r, h * r, w * r, oc)
        return y.permute(0, 4, 1, 2, 3)  # channels-last layout in memory
    y = x.reshape(b, oc, r, r, r, d, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return y.reshape(b, oc, d * r, h * r, w * r)


def voxel_unshuffle(x: Tensor, scale: int) -> Tensor:
    """Inverse of :func:`voxel_shuffle`: ``(B, C, D·r, H·r, W·r)`` → ``(B, C·r³, D, H, W)``."""
    check_int("scale", scale)
    if x.ndim != 5:
        raise ValueError(f"voxel_unshuffle expects (B, C, D, H, W), got shape {tuple(x.shape)}")
    b, c, dd, hh, ww = x.shape
    r = scale
    if dd % r or hh % r or ww % r:
        raise ValueError(
            f"voxel_unshuffle with scale {r} needs spatial sizes divisible by {r}, got {(dd, hh, ww)}")
    d, h, w = dd // r, hh // r, ww // r
    y = x.reshape(b, c, d, r, h, r, w, r).permute(0, 1, 3, 5, 7, 2, 4, 6)
    return y.reshape(b, c * r**3, d, h, w)


class VoxelShuffle(nn.Module):
    """Module form of :func:`voxel_shuffle` (no parameters)."""

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.scale = check_int("scale", scale)

    def forward(self, x: Tensor) -> Tensor:
        return voxel_shuffle(x, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class VoxelUnshuffle(nn.Module):
    """Module form of :func:`voxel_unshuffle` (no parameters)."""

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.scale = check_int("scale", scale)

    def forward(self, x: Tensor) -> Tensor:
        return voxel_unshuffle(x, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


# --------------------------------------------------------------------------------------------
# RRDB (ESRGAN; BasicSR's rrdbnet_arch.py as reference, in 3D)
# --------------------------------------------------------------------------------------------

def _scaled_kaiming_(conv: nn.Conv3d, scale: float) -> None:
    """Kaiming-normal weights times ``scale``, zero bias (ESRGAN's residual-block init)."""
    nn.init.kaiming_normal_(conv.weight)
    conv.weight.data.mul_(scale)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3×3×3 convs; ``x + residual_scale · conv5(...)``.

    conv_k sees the input and the outputs of all previous convs (``features + (k-1)·growth``
    channels); conv1–conv4 produce ``growth`` channels followed by LeakyReLU, conv5 maps back to
    ``features`` with no activation. ``(B, features, D, H, W)`` in and out.
    """

    def __init__(self, *, features: int = 64, growth: int = 32, negative_slope: float = 0.2,
                 residual_scale: float = 0.2) -> None:
        super().__init__()
        features = check_int("features", features)
        growth = check_int("growth", growth)
        self.negative_slope = check_float("negative_slope", negative_slope, minimum=0.0)
        self.residual_scale = check_float("residual_scale", residual_scale, minimum=0.0)
        self.conv1 = nn.Conv3d(features, growth, 3, padding=1)
        self.conv2 = nn.Conv3d(features + growth, growth, 3, padding=1)
        self.conv3 = nn.Conv3d(features + 2 * growth, growth, 3, padding=1)
        self.conv4 = nn.Conv3d(features + 3 * growth, growth, 3, padding=1)
        self.conv5 = nn.Conv3d(features + 4 * growth, features, 3, padding=1)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            _scaled_kaiming_(conv, 0.1)

    def forward(self, x: Tensor) -> Tensor:
        act = self.negative_slope
        x1 = F.leaky_relu(self.conv1(x), act)
        x2 = F.leaky_relu(self.conv2(torch.cat((x, x1), 1)), act)
        x3 = F.leaky_relu(self.conv3(torch.cat((x, x1, x2), 1)), act)
        x4 = F.leaky_relu(self.conv4(torch.cat((x, x1, x2, x3), 1)), act)
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x + self.residual_scale * x5


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs and a scaled skip around them."""

    def __init__(self, *, features: int = 64, growth: int = 32, negative_slope: float = 0.2,
                 residual_scale: float = 0.2) -> None:
        super().__init__()
        kw = dict(features=features, growth=growth, negative_slope=negative_slope,
                  residual_scale=residual_scale)
        self.residual_scale = check_float("residual_scale", residual_scale, minimum=0.0)
        self.rdb1 = ResidualDenseBlock(**kw)
        self.rdb2 = ResidualDenseBlock(**kw)
        self.rdb3 = ResidualDenseBlock(**kw)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.residual_scale * self.rdb3(self.rdb2(self.rdb1(x)))


# --------------------------------------------------------------------------------------------
# critic / feature-extractor blocks (3D)
# --------------------------------------------------------------------------------------------

class CriticBlock3d(nn.Module):
    """conv s1 → InstanceNorm → LeakyReLU → conv s2 → InstanceNorm → LeakyReLU (halves D, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, *, negative_slope: float = 0.2) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels)
        out_channels = check_int("out_channels", out_channels)
        self.negative_slope = check_float("negative_slope", negative_slope, minimum=0.0)
        # no bias: InstanceNorm removes a per-channel constant anyway
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.InstanceNorm3d(out_channels, affine=True)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, stride=2, padding=1, bias=False)
        self.norm2 = nn.InstanceNorm3d(out_channels, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        x = F.leaky_relu(self.norm1(self.conv1(x)), self.negative_slope)
        return F.leaky_relu(self.norm2(self.conv2(x)), self.negative_slope)


class BasicBlock3d(nn.Module):
    """ResNet basic block in 3D (two 3×3×3 convs with BatchNorm; 1×1×1 projection shortcut when
    the stride or width changes). Attribute names follow torchvision/MedicalNet."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels)
        out_channels = check_int("out_channels", out_channels)
        stride = check_int("stride", stride)
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm3d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class ConvBlock3d(nn.Module):
    """Two 3×3×3 convs, each followed by LeakyReLU (no normalisation; U-Net critic levels)."""

    def __init__(self, in_channels: int, out_channels: int, *, negative_slope: float = 0.2) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels)
        out_channels = check_int("out_channels", out_channels)
        self.negative_slope = check_float("negative_slope", negative_slope, minimum=0.0)
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.leaky_relu(self.conv1(x), self.negative_slope)
        return F.leaky_relu(self.conv2(x), self.negative_slope)


# --------------------------------------------------------------------------------------------
# diffusion U-Net blocks (2D)
# --------------------------------------------------------------------------------------------

def sinusoidal_embedding(t: Tensor, dim: int, *, max_period: float = 10000.0) -> Tensor:
    """Transformer-style sinusoidal embedding of timesteps ``t`` (shape ``(B,)``) → ``(B, dim)``.

    Half the channels are ``cos(t·f_k)``, half ``sin(t·f_k)`` with ``f_k = max_period^(-k/half)``;
    computed in float32 whatever the input dtype.
    """
    check_int("dim", dim, minimum=2)
    half = dim // 2
    freqs = torch.exp(-math.log(max_period)
                      * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat((torch.cos(args), torch.sin(args)), dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding of the timestep followed by Linear → SiLU → Linear."""

    def __init__(self, base_dim: int, out_dim: int) -> None:
        super().__init__()
        self.base_dim = check_int("base_dim", base_dim, minimum=2)
        out_dim = check_int("out_dim", out_dim)
        self.linear1 = nn.Linear(self.base_dim, out_dim)
        self.linear2 = nn.Linear(out_dim, out_dim)

    def forward(self, t: Tensor) -> Tensor:
        emb = sinusoidal_embedding(t, self.base_dim).to(self.linear1.weight.dtype)
        return self.linear2(F.silu(self.linear1(emb)))


class ResBlock2d(nn.Module):
    """GroupNorm → SiLU → conv (+ time projection) → GroupNorm → SiLU → dropout → conv, plus a
    skip (1×1 conv when the width changes). ``time_dim=None`` builds a block without time input."""

    def __init__(self, in_channels: int, out_channels: int, *, time_dim: int | None,
                 norm_groups: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels)
        out_channels = check_int("out_channels", out_channels)
        norm_groups = check_int("norm_groups", norm_groups)
        for name, ch in (("in_channels", in_channels), ("out_channels", out_channels)):
            if ch % norm_groups:
                raise ValueError(f"{name}={ch} is not divisible by norm_groups={norm_groups}")
        self.norm1 = nn.GroupNorm(norm_groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_proj = None if time_dim is None else nn.Linear(time_dim, out_channels)
        self.norm2 = nn.GroupNorm(norm_groups, out_channels)
        self.dropout = nn.Dropout(check_float("dropout", dropout, minimum=0.0, maximum=1.0))
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (nn.Identity() if in_channels == out_channels
                     else nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_proj is not None:
            if temb is None:
                raise ValueError("this block needs a time embedding")
            h = h + self.time_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttentionBlock2d(nn.Module):
    """Multi-head self-attention over all pixels (GroupNorm, qkv 1×1 conv, output 1×1 conv,
    residual). Quadratic in H·W: use it only at the lowest resolution."""

    def __init__(self, channels: int, *, heads: int = 4, norm_groups: int = 8) -> None:
        super().__init__()
        channels = check_int("channels", channels)
        self.heads = check_int("heads", heads)
        if channels % heads:
            raise ValueError(f"channels={channels} is not divisible by heads={heads}")
        if channels % norm_groups:
            raise ValueError(f"channels={channels} is not divisible by norm_groups={norm_groups}")
        self.norm = nn.GroupNorm(norm_groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # (B, heads, HW, c/heads)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


class Downsample2d(nn.Module):
    """3×3 conv with stride 2 (halves H and W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        channels = check_int("channels", channels)
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample2d(nn.Module):
    """Nearest-neighbour ×2 followed by a 3×3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        channels = check_int("channels", channels)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
