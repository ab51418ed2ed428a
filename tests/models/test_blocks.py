from __future__ import annotations

import itertools

import pytest
import torch

from bids_enhance.models.blocks import (
    RRDB,
    ResidualDenseBlock,
    VoxelShuffle,
    VoxelUnshuffle,
    voxel_shuffle,
    voxel_unshuffle,
)


def _reference_shuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """Element-by-element definition of the voxel shuffle."""
    b, c, d, h, w = x.shape
    oc = c // r**3
    out = torch.empty(b, oc, d * r, h * r, w * r, dtype=x.dtype)
    for ch, i, j, k in itertools.product(range(oc), range(r), range(r), range(r)):
        out[:, ch, i::r, j::r, k::r] = x[:, ch * r**3 + i * r * r + j * r + k]
    return out


@pytest.mark.parametrize("r", [1, 2, 3])
def test_voxel_shuffle_matches_reference_and_inverts(r):
    x = torch.randn(2, 2 * r**3, 3, 2, 4)
    y = voxel_shuffle(x, r)
    assert torch.equal(y, _reference_shuffle(x, r))
    assert torch.equal(voxel_unshuffle(y, r), x)


def test_voxel_shuffle_matches_pixel_shuffle_on_a_flat_axis():
    # with D = 1 and only the (j, k) sub-positions used, it reduces to torch.pixel_shuffle
    x = torch.randn(1, 8, 1, 3, 3)
    y = voxel_shuffle(x, 2)[:, :, 0]  # depth sub-position i = 0 → channels 0..3
    assert torch.equal(y, torch.pixel_shuffle(x[:, :4, 0], 2))


def test_voxel_shuffle_channels_last_gives_same_values_and_layout():
    x = torch.randn(2, 16, 3, 4, 5)
    xc = x.contiguous(memory_format=torch.channels_last_3d)
    y = VoxelShuffle(2)(xc)
    assert torch.equal(y, voxel_shuffle(x, 2))
    assert y.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(VoxelUnshuffle(2)(y), x)


def test_voxel_shuffle_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible by 8"):
        voxel_shuffle(torch.zeros(1, 4, 2, 2, 2), 2)
    with pytest.raises(ValueError, match="D, H, W"):
        voxel_shuffle(torch.zeros(1, 8, 2, 2), 2)
    with pytest.raises(ValueError, match="divisible by 2"):
        voxel_unshuffle(torch.zeros(1, 1, 3, 2, 2), 2)
    with pytest.raises(ValueError, match="scale"):
        VoxelShuffle(0)


def test_rrdb_keeps_shape_and_is_near_identity_at_init():
    torch.manual_seed(0)
    block = RRDB(features=4, growth=3)
    x = torch.randn(1, 4, 5, 5, 5)
    y = block(x)
    assert y.shape == x.shape
    # ESRGAN init (kaiming × 0.1) keeps each RDB close to identity, so (as in BasicSR) the RRDB
    # starts close to (1 + residual_scale)·x
    assert (y - 1.2 * x).abs().mean() < 0.05 * x.abs().mean()


def test_dense_block_wiring():
    rdb = ResidualDenseBlock(features=4, growth=3)
    assert [rdb.conv1.in_channels, rdb.conv2.in_channels, rdb.conv5.in_channels] == [4, 7, 16]
    assert rdb.conv5.out_channels == 4
    with pytest.raises(ValueError, match="growth"):
        ResidualDenseBlock(features=4, growth=0)
