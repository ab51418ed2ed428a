"""Shared helpers of the classical denoisers: validation, containers, chunks, shifts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bids_enhance.classical._common import (
    bounding_box,
    check_choice,
    check_sigma,
    chunk_depth_for_budget,
    cube_offsets,
    half_offsets,
    iter_z_chunks,
    pad3d,
    prepare_volume,
    resolve_device,
    restore_volume,
    shifted,
)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [(np.int16, np.float32), (np.uint8, np.float32), (np.float64, np.float64),
     (np.float32, np.float32), (np.float16, np.float16), (bool, np.float32)],
)
def test_numpy_roundtrip_dtype(dtype, expected):
    vol = (np.arange(60).reshape(3, 4, 5) % 7).astype(dtype)
    x, spec = prepare_volume(vol)
    assert x.dtype == torch.float32 and x.shape == (3, 4, 5)
    out = restore_volume(x, spec)
    assert isinstance(out, np.ndarray) and out.dtype == expected
    np.testing.assert_allclose(out, vol.astype(np.float64))


def test_big_endian_input_is_accepted():
    vol = np.arange(27, dtype=">f8").reshape(3, 3, 3)
    x, spec = prepare_volume(vol)
    assert restore_volume(x, spec).dtype == np.float64
    assert float(x[2, 2, 2]) == 26.0


def test_tensor_roundtrip_keeps_container_and_dtype():
    vol = torch.arange(24, dtype=torch.float64).reshape(2, 3, 4).requires_grad_()
    x, spec = prepare_volume(vol)
    out = restore_volume(x * 2, spec)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and not out.requires_grad
    ints = torch.ones(2, 3, 4, dtype=torch.int32)
    assert restore_volume(*prepare_volume(ints)).dtype == torch.float32


@pytest.mark.parametrize(
    ("volume", "match"),
    [(np.zeros((4, 4)), "3D"), (np.zeros((2, 4, 4, 1)), "3D"),
     (np.zeros((4, 4, 2)), "at least 3"), (np.array([[[np.nan] * 3] * 3] * 3), "finite"),
     (np.zeros((3, 3, 3), complex), "real"), (np.array([[["a"] * 3] * 3] * 3), "real")],
)
def test_bad_volumes_raise(volume, match):
    with pytest.raises(ValueError, match=match):
        prepare_volume(volume, min_size=3)


@pytest.mark.parametrize("sigma", [-1.0, float("nan"), float("inf"), "abc", None])
def test_bad_sigma_raises(sigma):
    with pytest.raises(ValueError, match="sigma"):
        check_sigma(sigma)


def test_check_choice_suggests():
    assert check_choice("noise_model", "Rician", ("rician", "gaussian")) == "rician"
    with pytest.raises(ValueError, match="did you mean 'gaussian'"):
        check_choice("noise_model", "gausian", ("rician", "gaussian"))


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="--gpus all"):
            resolve_device("cuda")


@pytest.mark.parametrize(("depth", "chunk", "halo"), [(10, 3, 2), (7, 7, 3), (5, 1, 0), (9, 4, 6)])
def test_z_chunks_cover_exactly(depth, chunk, halo):
    seen = []
    for ch in iter_z_chunks(depth, chunk, halo):
        assert 0 <= ch.lo <= ch.start < ch.stop <= ch.hi <= depth
        assert ch.start - ch.lo == min(halo, ch.start) and ch.hi - ch.stop == min(halo, depth - ch.stop)
        assert ch.core.stop - ch.core.start == ch.stop - ch.start
        seen += list(range(ch.start, ch.stop))
    assert seen == list(range(depth))


def test_chunk_depth_for_budget():
    # 1 MiB budget, 1 KiB per slice, halo 2 -> 1024 - 4 slices, capped by depth
    assert chunk_depth_for_budget(depth=5000, plane_voxels=256, bytes_per_voxel=4, halo=2,
                                  budget_gb=2**-10) == 1020
    assert chunk_depth_for_budget(depth=10, plane_voxels=256, bytes_per_voxel=4, halo=2,
                                  budget_gb=1.0) == 10
    assert chunk_depth_for_budget(depth=10, plane_voxels=10**9, bytes_per_voxel=4, halo=2,
                                  budget_gb=1e-3, minimum=3) == 3
    with pytest.raises(ValueError, match="budget"):
        chunk_depth_for_budget(depth=10, plane_voxels=1, bytes_per_voxel=1, halo=0, budget_gb=0)


def test_offsets_and_shift():
    full = cube_offsets(2)
    half = half_offsets(2)
    assert len(full) == 124 and len(half) == 62
    assert sorted(half + [tuple(-c for c in o) for o in half]) == sorted(full)
    assert all(o[0] >= 0 for o in half)
    x = torch.arange(4 * 5 * 6, dtype=torch.float32).reshape(4, 5, 6)
    padded = pad3d(x, 2, value=-1.0)
    view = shifted(padded, (1, -2, 2), 2, x.shape)
    assert view[0, 2, 0] == x[1, 0, 2]
    assert view[3, 0, 0] == -1.0  # beyond the volume: padding
    mirrored = pad3d(x, 1, mode="reflect")
    assert mirrored[0, 1, 1] == x[1, 0, 0]


def test_bounding_box():
    mask = torch.zeros(6, 7, 8, dtype=torch.bool)
    assert bounding_box(mask) is None
    mask[2, 3, 4] = mask[3, 5, 4] = True
    assert bounding_box(mask) == (slice(2, 4), slice(3, 6), slice(4, 5))
    assert bounding_box(mask, margin=3) == (slice(0, 6), slice(0, 7), slice(1, 8))
