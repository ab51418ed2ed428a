"""Training-patch augmentation by symmetries of the cube (``TrainConfig.augment``): the same
patches as without it, each pair turned by one of the 48 symmetries, source and target alike,
drawn from the seed and the patch's position (so resuming stays exact)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from training_helpers import tiny_config, volumes

from bids_enhance.training import NumpyPatchStream, PairedPatchStream, PatchGeometry, TrainConfig
from bids_enhance.training.data import cube_symmetry
from bids_enhance.training.seeding import numpy_generator


def _symmetries(x: np.ndarray, lead: int):
    """All 48 flips+permutations of the last three axes of ``x`` (``lead`` leading axes)."""
    for order in itertools.permutations(range(3)):
        for flips in itertools.product((False, True), repeat=3):
            y = x
            axes = tuple(lead + a for a, f in enumerate(flips) if f)
            if axes:
                y = np.flip(y, axes)
            yield np.transpose(y, (*range(lead), *(lead + a for a in order)))


@pytest.mark.parametrize("cls", [PairedPatchStream, NumpyPatchStream])
@pytest.mark.parametrize("scale,preset", [(1, "denoise-rician-wide-odct-stack"),
                                          (2, "sr-box-x2")])
def test_augmented_pairs_are_one_symmetry_of_the_plain_pairs(cls, scale, preset):
    geometry = PatchGeometry(scale=scale, patch_size=(12, 12, 12))
    kw = dict(degradation=preset, geometry=geometry, seed=3, samples_per_volume=3,
              queue_length=3)
    plain = cls(volumes(1), **kw).take(6)
    turned = cls(volumes(1), augment=True, **kw).take(6)
    changed = 0
    for (ps, pt), (ts, tt) in zip(plain, turned, strict=True):
        assert ts.shape == ps.shape and tt.shape == pt.shape
        ps_full = ps.numpy()
        if scale == 2:  # compare on the HR grid: the LR patch repeated 2×2×2
            ps_full = np.repeat(np.repeat(np.repeat(ps_full, 2, 1), 2, 2), 2, 3)
            ts_full = np.repeat(np.repeat(np.repeat(ts.numpy(), 2, 1), 2, 2), 2, 3)
        else:
            ts_full = ts.numpy()
        matches = [k for k, (s, t) in enumerate(zip(_symmetries(ps_full, 1),
                                                     _symmetries(pt.numpy(), 1), strict=True))
                   if np.array_equal(s, ts_full) and np.array_equal(t, tt.numpy())]
        assert matches, "the augmented pair is not a common symmetry of the plain pair"
        changed += not np.array_equal(tt.numpy(), pt.numpy())
    assert changed >= 3  # 47 of 48 symmetries change a generic patch


@pytest.mark.parametrize("scale,preset,extra", [
    (1, "denoise-rician-wide", {}),
    (2, "sr-box-x2", {"intensity_augment": True}),  # symmetries and a random gamma
])
def test_augmentation_is_a_function_of_seed_and_position(scale, preset, extra):
    geometry = PatchGeometry(scale=scale, patch_size=(12, 12, 12))
    kw = dict(degradation=preset, geometry=geometry, seed=9,
              samples_per_volume=2, queue_length=2, augment=True, **extra)
    run = NumpyPatchStream(volumes(2), **kw)
    first = run.take(7)
    resumed = NumpyPatchStream(volumes(2), **kw)
    resumed.load_state_dict({"position": 4, "seed": 9, "round_size": run.round_size})
    for (a, b), (c, d) in zip(first[4:], resumed.take(3), strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)


def test_non_cubic_patches_are_only_flipped():
    rng = numpy_generator(1, "t")
    target = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    for _ in range(10):
        source, out = cube_symmetry(target[None].clone(), target, rng)
        assert out.shape == (2, 3, 4) and torch.equal(source[0], out)


def test_augment_is_refused_for_slices():
    with pytest.raises(ValueError, match="augment"):
        tiny_config("motion-ddpm", augment=True)
    with pytest.raises(ValueError, match="augment"):
        TrainConfig(task="gan3p", augment="yes")
    geometry = PatchGeometry(scale=1, patch_size=(1, 16, 16), slice_axis=0, neighbours=0)
    with pytest.raises(ValueError, match="augment"):
        NumpyPatchStream(volumes(1), degradation="motion", geometry=geometry, seed=0,
                         samples_per_volume=1, queue_length=1, augment=True)


# --- intensity augmentation (``TrainConfig.intensity_augment``) -------------------------------

@pytest.mark.parametrize("cls", [PairedPatchStream, NumpyPatchStream])
def test_gamma_pairs_still_obey_the_box_average(cls):
    """Same patch positions as without it; the target is a monotone (sign·|t|^γ) map of the
    plain target, and the source is exactly the new target's 2×2×2 box average."""
    geometry = PatchGeometry(scale=2, patch_size=(12, 12, 12))
    kw = dict(degradation="sr-box-x2", geometry=geometry, seed=5, samples_per_volume=3,
              queue_length=3)
    plain = cls(volumes(1), **kw).take(6)
    bright = cls(volumes(1), intensity_augment=True, **kw).take(6)
    gammas = []
    for (ps, pt), (gs, gt) in zip(plain, bright, strict=True):
        assert gs.shape == ps.shape and gt.shape == pt.shape
        t, g = pt.numpy().astype(np.float64), gt.numpy().astype(np.float64)
        inside = np.abs(t) > 0.05
        gamma = np.median(np.log(np.abs(g[inside])) / np.log(np.abs(t[inside])))
        assert np.allclose(np.sign(t) * np.abs(t) ** gamma, g, atol=1e-4)
        gammas.append(gamma)
        box = g.reshape(1, 6, 2, 6, 2, 6, 2).mean(axis=(2, 4, 6))
        assert np.allclose(gs.numpy(), box, atol=1e-5)
    assert all(np.exp(-0.3) - 1e-3 <= x <= np.exp(0.3) + 1e-3 for x in gammas)
    assert np.ptp(gammas) > 0.05  # a different γ per patch


@pytest.mark.parametrize("option", ["intensity_augment", "phase_augment"])
def test_recomputed_sources_are_refused_where_the_source_is_not_the_box_average(option):
    """Both augmentations recompute each source as the box average of its target: refused for
    any other degradation, for non-x2 patches and tasks, and for non-boolean values."""
    geometry = PatchGeometry(scale=2, patch_size=(12, 12, 12))
    with pytest.raises(ValueError, match=f"{option} .*box average"):
        NumpyPatchStream(volumes(1), degradation="sr-box-x2-rician-wide", geometry=geometry,
                         seed=0, samples_per_volume=1, queue_length=1, **{option: True})
    with pytest.raises(ValueError, match=option):
        NumpyPatchStream(volumes(1), degradation="denoise-rician-wide",
                         geometry=PatchGeometry(scale=1, patch_size=(12, 12, 12)), seed=0,
                         samples_per_volume=1, queue_length=1, **{option: True})
    for task in ("denoise", "motion-gan"):
        with pytest.raises(ValueError, match=option):
            tiny_config(task, **{option: True})
    with pytest.raises(ValueError, match=option):
        TrainConfig(task="gan3p", **{option: 1})


# --- phase augmentation (``TrainConfig.phase_augment``) ---------------------------------------

def _origin_in(volume: np.ndarray, patch: np.ndarray) -> tuple[int, ...]:
    """The one origin at which ``patch`` is a crop of ``volume``."""
    size = patch.shape
    ranges = (range(n - s + 1) for n, s in zip(volume.shape, size, strict=True))
    hits = [o for o in itertools.product(*ranges)
            if np.array_equal(volume[tuple(slice(a, a + s)
                                           for a, s in zip(o, size, strict=True))], patch)]
    assert len(hits) == 1, f"patch found at {len(hits)} origins"
    return hits[0]


@pytest.mark.parametrize("cls", [PairedPatchStream, NumpyPatchStream])
def test_phase_pairs_are_cut_at_any_voxel_and_obey_the_box_average(cls):
    """Without it every x2 patch starts on even voxels; with it the origins take both parities
    on every axis, and each source is exactly its own target's 2×2×2 box average (not a crop
    of the whole volume's box average, which is misaligned at odd origins)."""
    geometry = PatchGeometry(scale=2, patch_size=(8, 8, 8))
    kw = dict(degradation="sr-box-x2", geometry=geometry, seed=4, samples_per_volume=20,
              queue_length=20)
    vols = volumes(1, shape=(20, 20, 20))
    plain_stream = cls(vols, **kw)
    clean = plain_stream._pairs[0][1]
    plain = [_origin_in(clean, t[0].numpy()) for _, t in plain_stream.take(20)]
    assert all(o % 2 == 0 for origin in plain for o in origin)
    stream = cls(vols, phase_augment=True, **kw)
    origins = []
    for source, target in stream.take(20):
        assert source.shape == (1, 4, 4, 4) and target.shape == (1, 8, 8, 8)
        origins.append(_origin_in(clean, target[0].numpy()))
        box = target.numpy().reshape(1, 4, 2, 4, 2, 4, 2).mean(axis=(2, 4, 6))
        assert np.allclose(source.numpy(), box, atol=1e-6)
    for axis in range(3):
        assert {o[axis] % 2 for o in origins} == {0, 1}

