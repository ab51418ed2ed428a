"""Conditional diffusion U-Net for 2D slices (2.5D with neighbouring slices as condition channels)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bids_enhance.models._checks import check_choice, check_float, check_int, check_widths
from bids_enhance.models.blocks import (
    AttentionBlock2d,
    Downsample2d,
    ResBlock2d,
    TimeEmbedding,
    Upsample2d,
)

__all__ = ["CONDITIONING_MODES", "DiffusionUNet"]

CONDITIONING_MODES = ("concat", "separate")


class DiffusionUNet(nn.Module):
    """DDPM-style U-Net predicting ε or v for a noisy slice given a condition.

    ``forward(x_t, t, condition)``:

    - ``x_t``: ``(B, image_channels, H, W)`` float, the noisy image (clean data in about [-1, 1]
      or [0, 1], whatever the trainer chose);
    - ``t``: ``(B,)`` timesteps (int or float, in [0, T)), or a scalar;
    - ``condition``: ``(B, condition_channels, H, W)`` float, the motion-corrupted slice and, for
      2.5D, its neighbours (see :func:`bids_enhance.models.diffusion.neighbour_slices`);
    - returns ``(B, out_channels, H, W)``, same dtype as the computation (unbounded).

    H and W must be divisible by ``2^(len(channel_mults) - 1)``.

    Levels have widths ``features · channel_mults[i]`` and ``num_res_blocks`` residual blocks
    (GroupNorm, SiLU, time embedding added); the middle block has self-attention when
    ``attention`` is true (lowest resolution only). Conditioning:

    - ``"concat"`` (default; SR3/Palette): the condition is concatenated to ``x_t`` at the input;
    - ``"separate"`` (the thesis): a second encoder (same widths, no time input) reads the
      condition, and its features are added to the noisy-image encoder's after the stem and after
      every block and down-sampling step.
    """

    def __init__(self, *, image_channels: int = 1, condition_channels: int = 1,
                 out_channels: int | None = None, features: int = 64,
                 channel_mults: tuple[int, ...] = (1, 2, 4), num_res_blocks: int = 2,
                 attention: bool = True, attention_heads: int = 4, norm_groups: int = 8,
                 dropout: float = 0.0, conditioning: str = "concat") -> None:
        super().__init__()
        self.image_channels = check_int("image_channels", image_channels)
        self.condition_channels = check_int("condition_channels", condition_channels, minimum=0)
        out_channels = self.image_channels if out_channels is None else out_channels
        out_channels = check_int("out_channels", out_channels)
        features = check_int("features", features)
        mults = check_widths("channel_mults", channel_mults)
        num_res_blocks = check_int("num_res_blocks", num_res_blocks)
        if not isinstance(attention, bool):
            raise ValueError(f"attention must be True or False, got {attention!r}")
        check_int("attention_heads", attention_heads)
        check_int("norm_groups", norm_groups)
        dropout = check_float("dropout", dropout, minimum=0.0, maximum=1.0)
        self.conditioning = check_choice("conditioning", conditioning, CONDITIONING_MODES)
        if self.conditioning == "separate" and self.condition_channels == 0:
            raise ValueError("conditioning='separate' needs condition_channels >= 1, got 0")
        for m in mults:
            if (features * m) % norm_groups:
                raise ValueError(f"features·channel_mults ({features}·{m}) must be divisible by "
                                 f"norm_groups={norm_groups}")
        self.num_levels = len(mults)
        time_dim = 4 * features
        block = dict(time_dim=time_dim, norm_groups=norm_groups, dropout=dropout)

        self.time_embedding = TimeEmbedding(features, time_dim)
        stem_in = self.image_channels
        if self.conditioning == "concat":
            stem_in += self.condition_channels
        self.stem = nn.Conv2d(stem_in, features, 3, padding=1)

        chans = [features * m for m in mults]
        ch = features
        skip_chans = [ch]
        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        for i, c in enumerate(chans):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResBlock2d(ch, c, **block))
                ch = c
                skip_chans.append(ch)
            self.down_blocks.append(blocks)
            last = i == len(chans) - 1
            self.downsamplers.append(nn.Identity() if last else Downsample2d(ch))
            if not last:
                skip_chans.append(ch)

        self.mid_block1 = ResBlock2d(ch, ch, **block)
        self.mid_attention = (AttentionBlock2d(ch, heads=attention_heads, norm_groups=norm_groups)
                              if attention else nn.Identity())
        self.mid_block2 = ResBlock2d(ch, ch, **block)

        self.up_blocks = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for i in reversed(range(len(chans))):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                blocks.append(ResBlock2d(ch + skip_chans.pop(), chans[i], **block))
                ch = chans[i]
            self.up_blocks.append(blocks)
            self.upsamplers.append(Upsample2d(ch) if i > 0 else nn.Identity())

        self.out_norm = nn.GroupNorm(norm_groups, ch)
        self.out_conv = nn.Conv2d(ch, out_channels, 3, padding=1)

        self.condition_encoder: _ConditionEncoder | None = None
        if self.conditioning == "separate":
            self.condition_encoder = _ConditionEncoder(
                self.condition_channels, features=features, chans=chans,
                num_res_blocks=num_res_blocks, norm_groups=norm_groups, dropout=dropout)

    @property
    def size_multiple(self) -> int:
        return 2 ** (self.num_levels - 1)

    def _check_inputs(self, x_t: Tensor, t: Tensor, condition: Tensor | None) -> Tensor:
        if x_t.ndim != 4 or x_t.shape[1] != self.image_channels:
            raise ValueError(f"x_t must be (B, {self.image_channels}, H, W), "
                             f"got shape {tuple(x_t.shape)}")
        m = self.size_multiple
        if x_t.shape[2] % m or x_t.shape[3] % m:
            raise ValueError(f"DiffusionUNet with {self.num_levels} levels needs H, W divisible "
                             f"by {m}, got {tuple(x_t.shape[2:])}")
        if self.condition_channels:
            expected = (x_t.shape[0], self.condition_channels, *x_t.shape[2:])
            if condition is None or tuple(condition.shape) != expected:
                got = None if condition is None else tuple(condition.shape)
                raise ValueError(f"condition must have shape {expected}, got {got}")
        elif condition is not None:
            raise ValueError("this model was built with condition_channels=0; pass condition=None")
        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        if t.shape != (x_t.shape[0],):
            raise ValueError(f"t must be a scalar or have shape ({x_t.shape[0]},), "
                             f"got {tuple(t.shape)}")
        return t

    def forward(self, x_t: Tensor, t: Tensor, condition: Tensor | None = None) -> Tensor:
        t = self._check_inputs(x_t, t, condition)
        temb = self.time_embedding(t)
        if self.conditioning == "concat" and condition is not None:
            h = self.stem(torch.cat((x_t, condition.to(x_t.dtype)), dim=1))
        else:
            h = self.stem(x_t)
        cond_feats: list[Tensor] = []
        if self.condition_encoder is not None:
            cond_feats = self.condition_encoder(condition)
            cond_feats.reverse()  # pop() in encoder order
            h = h + cond_feats.pop()
        skips = [h]
        for blocks, down in zip(self.down_blocks, self.downsamplers, strict=True):
            for blk in blocks:
                h = blk(h, temb)
                if cond_feats:
                    h = h + cond_feats.pop()
                skips.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                if cond_feats:
                    h = h + cond_feats.pop()
                skips.append(h)
        h = self.mid_block2(self.mid_attention(self.mid_block1(h, temb)), temb)
        for blocks, up in zip(self.up_blocks, self.upsamplers, strict=True):
            for blk in blocks:
                h = blk(torch.cat((h, skips.pop()), dim=1), temb)
            h = up(h)
        return self.out_conv(torch.nn.functional.silu(self.out_norm(h)))


class _ConditionEncoder(nn.Module):
    """The thesis' condition encoder: the down path of the U-Net without time input; returns the
    feature map after the stem, after every block and after every down-sampling step."""

    def __init__(self, in_channels: int, *, features: int, chans: list[int], num_res_blocks: int,
                 norm_groups: int, dropout: float) -> None:
        super().__init__()
        block = dict(time_dim=None, norm_groups=norm_groups, dropout=dropout)
        self.stem = nn.Conv2d(in_channels, features, 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        ch = features
        for i, c in enumerate(chans):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResBlock2d(ch, c, **block))
                ch = c
            self.down_blocks.append(blocks)
            self.downsamplers.append(nn.Identity() if i == len(chans) - 1 else Downsample2d(ch))

    def forward(self, condition: Tensor) -> list[Tensor]:
        h = self.stem(condition)
        out = [h]
        for blocks, down in zip(self.down_blocks, self.downsamplers, strict=True):
            for blk in blocks:
                h = blk(h)
                out.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                out.append(h)
        return out
