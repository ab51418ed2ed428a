"""Whole-volume vs patch inference, blending, mirror padding, planning from a memory budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bids_enhance.inference import (
    HALO_CAP,
    InferenceMemoryError,
    activation_bytes_per_voxel,
    blend_window,
    default_halo,
    infer_volume,
    plan_inference,
    receptive_radius,
)
from bids_enhance.inference.memory import SAFETY, activation_bytes, rrdb_head_slab
from bids_enhance.inference.sliding import deterministic, lean_forward, tile_starts
from bids_enhance.models import RRDBGenerator, VoxelShuffle
from tests.inference.conftest import TINY, smooth_volume, tiny_generator


class ConvStub(nn.Module):
    """Three 3×3×3 convs around a voxel shuffle: receptive radius 3 input voxels."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.LeakyReLU(0.2),
                                 nn.Conv3d(4, 8, 3, padding=1), VoxelShuffle(2),
                                 nn.Conv3d(1, 1, 3, padding=1))

    def forward(self, x):
        return self.net(x)


class Constant(nn.Module):
    def __init__(self, value: float, scale: int = 2) -> None:
        super().__init__()
        self.value, self.scale = value, scale

    def forward(self, x):
        return torch.full((x.shape[0], 1, *(self.scale * n for n in x.shape[2:])), self.value)


def _range(a: np.ndarray) -> float:
    return float(np.ptp(a))


@pytest.mark.parametrize("blend", ["gaussian", "cosine"])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_patches_equal_whole_when_halo_covers_receptive_field(blend, batch_size):
    model = ConvStub()
    assert receptive_radius(model) == 3 == default_halo(model)
    vol = smooth_volume((19, 22, 17), seed=3)
    whole = infer_volume(model, vol, scale=2)
    report = {}
    patches = infer_volume(model, vol, scale=2, patch_size=7, overlap=0.3, blend=blend,
                           batch_size=batch_size, report=report)
    assert report["mode"] == "patches" and report["num_patches"] == 4 * 4 * 3
    assert patches.shape == (38, 44, 34) and patches.dtype == np.float32
    np.testing.assert_allclose(patches, whole, rtol=0, atol=1e-5 * _range(whole))


def test_rrdb_patches_match_whole_within_tight_tolerance():
    """The tiny generator with strong (×10) RRDB weights, halo 8 < receptive radius 19: the
    blended seams differ from whole-volume inference by < 1e-4 of the output range (measured
    2e-5; 9e-7 for the 64-feature generator), a halo of 2 by far more."""
    model = tiny_generator(boost=10.0)
    assert receptive_radius(model) == 15 * TINY["num_blocks"] + 4 == 19
    vol = smooth_volume((6, 6, 12), seed=4)
    whole = infer_volume(model, vol, scale=2, halo=8)
    report = {}
    patches = infer_volume(model, vol, scale=2, halo=8, patch_size=6, report=report)
    assert report["num_patches"] == 3
    error = np.abs(patches - whole).max()
    assert error < 1e-4 * _range(whole)
    thin = infer_volume(model, vol, scale=2, halo=2, patch_size=6)
    assert np.abs(thin - infer_volume(model, vol, scale=2, halo=2)).max() > 10 * error


@pytest.mark.parametrize("blend", ["gaussian", "cosine"])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.6])
def test_constant_output_is_reproduced_exactly(blend, overlap):
    vol = np.zeros((13, 9, 21), np.float32)
    out = infer_volume(Constant(3.7), vol, scale=2, patch_size=(5, 4, 6), overlap=overlap,
                       blend=blend, halo=1)
    np.testing.assert_allclose(out, 3.7, rtol=1e-6)


def test_mirror_padding_keeps_border_voxels_like_interior_ones():
    """A constant input gives the same 2×2×2 output pattern at the border as inside (the x2
    voxel shuffle makes the output periodic, not constant); without padding it does not."""
    model = tiny_generator()
    vol = np.full((8, 8, 8), 0.6, np.float32)

    def spread(out: np.ndarray) -> float:  # variation of each sub-voxel position over blocks
        blocks = out.reshape(8, 2, 8, 2, 8, 2).transpose(1, 3, 5, 0, 2, 4).reshape(8, -1)
        return float(np.ptp(blocks, axis=1).max())

    padded = infer_volume(model, vol, scale=2, halo=8)
    unpadded = infer_volume(model, vol, scale=2, halo=0)  # convolutions' zero padding
    assert spread(padded) < 1e-4 * np.abs(padded).max()
    assert spread(unpadded) > 100 * spread(padded)


def test_scale_one_and_determinism():
    model = tiny_generator(scale=1).train()
    vol = smooth_volume((7, 8, 9), seed=6)
    a = infer_volume(model, vol, scale=1, patch_size=5, halo=3)
    assert model.training  # the caller's mode is restored
    b = infer_volume(model, vol, scale=1, patch_size=5, halo=3)
    assert a.shape == vol.shape
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("image_skip", [False, True])
def test_memory_lean_forward_equals_the_plain_forward(image_skip):
    model = tiny_generator(boost=3.0)
    model.image_skip = image_skip
    x = torch.from_numpy(smooth_volume((61, 5, 4), seed=9))[None, None]
    assert rrdb_head_slab(model, 61) < 61  # the head really runs in several slabs
    with torch.inference_mode():
        np.testing.assert_allclose(lean_forward(model, x), model(x), rtol=0, atol=1e-5)
        small = x[:, :, :6]
        assert rrdb_head_slab(model, 6) >= 6  # one slab: the early exit
        np.testing.assert_allclose(lean_forward(model, small), model(small), rtol=0,
                                   atol=1e-5)
    thesis = RRDBGenerator()
    lean = activation_bytes(thesis, (128, 128, 128), scale=2)
    plain = activation_bytes_per_voxel(thesis, scale=2) * 128**3
    assert lean < 0.6 * plain


def test_blend_windows():
    ramp = blend_window(12, overlap=4, mode="cosine")
    assert ramp[4:8].tolist() == [1.0] * 4 and ramp[0] < 0.05
    # two neighbours overlapping by exactly the ramp sum to one there
    np.testing.assert_allclose(ramp[-4:] + ramp[:4], 1.0, atol=1e-12)
    gauss = blend_window(16, overlap=4, mode="gaussian")
    np.testing.assert_allclose(gauss, gauss[::-1])
    assert gauss.min() > 0 and gauss.max() <= 1.0
    with pytest.raises(ValueError, match="blend must be one of"):
        blend_window(8, overlap=2, mode="hann")


@pytest.mark.parametrize("length, core, stride", [(10, 4, 3), (9, 9, 3), (5, 8, 2), (17, 6, 6)])
def test_tile_starts_cover_the_axis(length, core, stride):
    starts = tile_starts(length, core, stride)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + core] = True
    assert covered.all() and starts[0] == 0 and starts[-1] == max(length - core, 0)


def _work(plan) -> float:
    core = plan.patch_size or plan.input_shape
    windows = plan.num_patches * np.prod([c + 2 * plan.halo for c in core])
    return float(windows / np.prod(plan.input_shape))


def test_plan_whole_then_cheapest_patches_as_budget_shrinks():
    model = RRDBGenerator()  # thesis default: 64 features, growth 32, 3 RRDBs
    per_voxel = activation_bytes_per_voxel(model, scale=2)
    assert per_voxel == 24 * 64 * 4 * SAFETY
    assert activation_bytes_per_voxel(model, scale=2, precision="bf16") == per_voxel / 2
    assert default_halo(model) == HALO_CAP < receptive_radius(model) == 49
    head = (176, 240, 256)
    big = plan_inference(model, head, scale=2, mem_budget_gb=64)
    assert big.mode == "whole" and big.patch_size is None and _work(big) < 1.25
    plans = [plan_inference(model, head, scale=2, mem_budget_gb=gb) for gb in (32, 16, 8, 4)]
    for gb, plan in zip((32, 16, 8, 4), plans, strict=True):
        assert plan.mode == "patches" and plan.estimated_gb <= gb
    works = [_work(p) for p in plans]
    assert works == sorted(works) and works[1] < 2.0  # 16 GB: 5 slabs, 1.8× the voxels
    # far cheaper than the largest cubic patch that fits (2×2×2 cubes of 144³: 4.6×)
    cubes = plan_inference(model, head, scale=2, mem_budget_gb=16, patch_size=144)
    assert _work(cubes) > 2 * works[1]
    batch = plan_inference(model, head, scale=2, mem_budget_gb=8, batch_size=4)
    assert batch.batch_size == 4 and batch.estimated_gb <= 8
    with pytest.raises(InferenceMemoryError, match="too small"):
        plan_inference(model, head, scale=2, mem_budget_gb=0.5)


def test_plan_small_volume_is_whole_and_budget_defaults_to_free_memory():
    model = tiny_generator()
    plan = plan_inference(model, (20, 20, 20), scale=2)
    assert plan.mode == "whole" and plan.budget_gb > 0 and plan.halo == 8
    assert plan.to_dict()["input_shape"] == [20, 20, 20]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"volume": np.zeros((4, 4))}, ValueError, "3D volume"),
    ({"volume": np.full((4, 4, 4), np.nan)}, ValueError, "NaN"),
    ({"overlap": 1.0}, ValueError, "overlap"),
    ({"blend": "linear"}, ValueError, "blend"),
    ({"precision": "fp64"}, ValueError, "precision"),
    ({"halo": -1}, ValueError, "halo"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"scale": 1}, ValueError, "expected"),
    ({"mem_budget_gb": 0}, ValueError, "mem_budget_gb"),
])
def test_bad_arguments_raise(kwargs, error, match):
    args = {"volume": np.zeros((6, 6, 6), np.float32), "scale": 2, **kwargs}
    with pytest.raises(error, match=match):
        infer_volume(ConvStub(), args.pop("volume"), **args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_cuda_without_gpu_fails_loudly():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        infer_volume(ConvStub(), np.zeros((6, 6, 6), np.float32), scale=2, device="cuda")


def test_deterministic_context_restores_settings():
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    with deterministic("cpu"):
        assert torch.are_deterministic_algorithms_enabled()
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_patches_match_whole_and_cpu():
    model = tiny_generator(boost=10.0)
    vol = smooth_volume((24, 24, 24), seed=7)
    cpu = infer_volume(model, vol, scale=2, halo=8)
    report = {}
    whole = infer_volume(model, vol, scale=2, halo=8, device="cuda", report=report)
    assert report["precision"] == "bf16" and report["channels_last"]
    patches = infer_volume(model, vol, scale=2, halo=8, device="cuda", patch_size=12,
                           batch_size=4)
    fp32 = infer_volume(model, vol, scale=2, halo=8, device="cuda", precision="fp32")
    scale = _range(cpu)
    assert np.abs(fp32 - cpu).max() < 1e-4 * scale
    assert np.abs(whole - cpu).max() < 3e-2 * scale  # bf16 rounding
    assert np.abs(patches - whole).max() < 3e-2 * scale
    again = infer_volume(model, vol, scale=2, halo=8, device="cuda")
    np.testing.assert_array_equal(again, whole)


def test_space_to_depth_patches_match_whole_with_its_receptive_radius():
    """The scale-1 space_to_depth generator sees twice as far: its receptive radius (body on the
    half grid) as halo makes patch inference match whole-volume inference."""
    from bids_enhance.models.generator import RRDBGenerator

    torch.manual_seed(0)
    model = RRDBGenerator(features=4, growth=4, num_blocks=1, scale=1, space_to_depth=True,
                          hr_features=4, image_skip=True).eval()
    radius = receptive_radius(model)
    assert radius == 2 * (15 + 3) + 3
    vol = smooth_volume((21, 16, 19), seed=2)  # odd sizes: padded to even and cut again
    whole = infer_volume(model, vol, scale=1, halo=radius)
    assert whole.shape == vol.shape
    for patch_size in (8, 7):  # an odd core is rounded up so every patch starts on an even voxel
        report = {}
        patches = infer_volume(model, vol, scale=1, halo=radius, patch_size=patch_size,
                               report=report)
        assert report["mode"] == "patches" and report["patch_size"] == [8, 8, 8]
        np.testing.assert_allclose(patches, whole, rtol=0, atol=1e-5 * _range(whole))


def test_space_to_depth_memory_estimate_counts_the_half_grid():
    """The body of a space_to_depth generator runs on an eighth of the voxels: its estimate is
    ``max((6F + 12G)/8, F/8 + 2H, 3H)`` channels per input voxel, so a whole 1 mm head of the
    shipped 32/16/8 size plans as one pass in a few GB (the plain formula, 6F + 12G, sent it
    to patches at 8× the memory)."""
    from bids_enhance.models.generator import RRDBGenerator

    model = RRDBGenerator(in_channels=2, features=32, growth=16, num_blocks=2, scale=1,
                          hr_features=8, image_skip=True, space_to_depth=True)
    assert activation_bytes_per_voxel(model, scale=1) == 48 * 4 * SAFETY
    plain = RRDBGenerator(in_channels=2, features=32, growth=16, num_blocks=2, scale=1,
                          hr_features=8, image_skip=True)
    assert activation_bytes_per_voxel(plain, scale=1) == 8 * activation_bytes_per_voxel(
        model, scale=1)
    plan = plan_inference(model, (176, 238, 168), scale=1, mem_budget_gb=4, align=2)
    assert plan.mode == "whole" and plan.estimated_gb < 3


def test_channels_last_by_default_and_the_callers_layout_restored():
    """Inference runs in ``channels_last_3d`` on the CPU too (faster with oneDNN), gives what the
    contiguous layout gives, and hands the caller's model back in the layout it came with (a
    model in training keeps its own)."""
    model = tiny_generator(boost=10.0)
    vol = smooth_volume((16, 16, 16), seed=3)
    report = {}
    fast = infer_volume(model, vol, scale=2, halo=4, report=report)
    assert report["channels_last"]
    assert all(p.is_contiguous() for p in model.parameters())
    plain = infer_volume(model, vol, scale=2, halo=4, channels_last=False)
    np.testing.assert_allclose(fast, plain, rtol=0, atol=1e-5 * _range(plain))
    model.to(memory_format=torch.channels_last_3d)  # a caller's own channels_last model
    infer_volume(model, vol, scale=2, halo=4)
    assert all(p.is_contiguous(memory_format=torch.channels_last_3d)
               for p in model.parameters() if p.dim() == 5)
