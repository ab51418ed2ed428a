"""Critics (discriminators): the three-player GAN's patch critic and DISGAN's wavelet U-Net."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bids_enhance.models._checks import check_float, check_int, check_widths
from bids_enhance.models.blocks import ConvBlock3d, CriticBlock3d
from bids_enhance.models.wavelet import HaarDWT3d

__all__ = ["ResNetCritic", "WaveletDown3d", "WaveletUNetCritic"]


class ResNetCritic(nn.Module):
    """Patch critic: ``len(widths)`` blocks of (conv s1 → InstanceNorm → LeakyReLU → conv s2 → IN →
    LeakyReLU), then a 3×3×3 conv to one channel of logits (no sigmoid).

    Input ``(B, in_channels, D, H, W)`` float, each spatial size at least ``2^(len(widths)+1)``
    (InstanceNorm needs more than one voxel); output ``(B, 1, ⌈D/2^n⌉, ⌈H/2^n⌉, ⌈W/2^n⌉)``
    unbounded logits with ``n = len(widths)``. Thesis: ``widths=(64, 128, 256, 512)`` on 64³.
    """

    def __init__(self, *, in_channels: int = 1, widths: tuple[int, ...] = (64, 128, 256, 512),
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels)
        self.widths = check_widths("widths", widths)
        negative_slope = check_float("negative_slope", negative_slope, minimum=0.0)
        chans = (in_channels, *self.widths)
        self.blocks = nn.Sequential(*[
            CriticBlock3d(chans[i], chans[i + 1], negative_slope=negative_slope)
            for i in range(len(self.widths))])
        self.conv_out = nn.Conv3d(self.widths[-1], 1, 3, padding=1)

    @property
    def min_size(self) -> int:
        return 2 ** (len(self.widths) + 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 5:
            raise ValueError(f"ResNetCritic expects (B, C, D, H, W), got shape {tuple(x.shape)}")
        if min(x.shape[2:]) < self.min_size:
            raise ValueError(
                f"ResNetCritic with {len(self.widths)} blocks needs spatial sizes >= "
                f"{self.min_size}, got {tuple(x.shape[2:])}")
        return self.conv_out(self.blocks(x))


class WaveletDown3d(nn.Module):
    """Haar DWT of a feature map, split into the encoder path and the decoder skip.

    ``(B, C, D, H, W)`` → ``low (B, low_channels, D/2, H/2, W/2)`` from the LLL band through a
    1×1×1 conv, and ``high (B, high_channels, D/2, H/2, W/2)`` from the 7 stacked detail bands
    through their own 1×1×1 conv.
    """

    def __init__(self, in_channels: int, *, low_channels: int, high_channels: int) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels)
        self.dwt = HaarDWT3d()
        self.low = nn.Conv3d(in_channels, check_int("low_channels", low_channels), 1)
        self.high = nn.Conv3d(7 * in_channels, check_int("high_channels", high_channels), 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        bands = self.dwt(x)  # (B, C, 8, d, h, w)
        b = bands.shape[0]
        low = bands[:, :, 0]
        high = bands[:, :, 1:].reshape(b, -1, *bands.shape[3:])
        return self.low(low), self.high(high)


class WaveletUNetCritic(nn.Module):
    """DISGAN's critic: a 3D U-Net whose down-sampling is a Haar DWT.

    Encoder level ``i`` (width ``widths[i]``) ends in a :class:`WaveletDown3d`: the LLL band,
    mixed by a 1×1×1 conv to ``widths[i+1]`` channels, feeds encoder level ``i+1``; the 7 detail
    bands, mixed by their own 1×1×1 conv to ``widths[i]`` channels, are the skip that joins the
    decoder at that (half) resolution. The decoder concatenates skip and features, applies two
    convs and upsamples ×2 (trilinear); a final conv block and a 1×1×1 conv give one logit per
    voxel.

    Input ``(B, in_channels, D, H, W)`` float with D, H, W divisible by ``2^(len(widths)-1)``;
    output ``(B, 1, D, H, W)`` unbounded logits (no sigmoid).
    """

    def __init__(self, *, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128, 256),
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels)
        self.widths = check_widths("widths", widths, min_length=2)
        self.negative_slope = check_float("negative_slope", negative_slope, minimum=0.0)
        w = self.widths
        levels = len(w) - 1
        self.stem = nn.Conv3d(in_channels, w[0], 3, padding=1)
        self.encoders = nn.ModuleList([
            ConvBlock3d(w[i], w[i], negative_slope=negative_slope) for i in range(levels + 1)])
        self.downs = nn.ModuleList([
            WaveletDown3d(w[i], low_channels=w[i + 1], high_channels=w[i]) for i in range(levels)])
        # decoders[k] works at the resolution of level levels-k, from deep to shallow
        self.decoders = nn.ModuleList([
            ConvBlock3d(w[i + 1] + w[i], w[i], negative_slope=negative_slope)
            for i in reversed(range(levels))])
        self.head = ConvBlock3d(w[0], w[0], negative_slope=negative_slope)
        self.conv_out = nn.Conv3d(w[0], 1, 1)

    @property
    def size_multiple(self) -> int:
        return 2 ** (len(self.widths) - 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 5:
            raise ValueError(
                f"WaveletUNetCritic expects (B, C, D, H, W), got shape {tuple(x.shape)}")
        m = self.size_multiple
        if any(s % m for s in x.shape[2:]):
            raise ValueError(
                f"WaveletUNetCritic with {len(self.widths)} levels needs D, H, W divisible by "
                f"{m}, got {tuple(x.shape[2:])}")
        h = F.leaky_relu(self.stem(x), self.negative_slope)
        skips: list[Tensor] = []
        for encoder, down in zip(self.encoders[:-1], self.downs, strict=True):
            h, high = down(encoder(h))
            skips.append(high)
        h = self.encoders[-1](h)
        for decoder in self.decoders:
            h = decoder(torch.cat((h, skips.pop()), dim=1))
            h = F.interpolate(h, scale_factor=2.0, mode="trilinear", align_corners=False)
        return self.conv_out(self.head(h))
