"""The patch stream: exact x2 pairing, whole-volume degradation, determinism, resumption by
position, DDP sharding, isolation of torch's global RNG, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from training_helpers import head, volumes

from bids_enhance.degrade import degrade
from bids_enhance.training import PairedPatchStream, PatchGeometry, TrainingVolume
from bids_enhance.training.seeding import child_seed, numpy_generator

SR = PatchGeometry(scale=2, patch_size=(16, 16, 16))


def _stream(vols, geometry=SR, degradation="sr-box-x2", seed=3, **kw):
    kw.setdefault("samples_per_volume", 3)
    kw.setdefault("queue_length", 4)
    return PairedPatchStream(vols, degradation=degradation, geometry=geometry, seed=seed, **kw)


def test_x2_pairs_are_exact_box_averages_at_even_origins(train_volumes):
    stream = _stream(train_volumes)
    lr, hr = stream.next_batch(6)
    assert lr.shape == (6, 1, 8, 8, 8) and hr.shape == (6, 1, 16, 16, 16)
    box = hr.reshape(6, 1, 8, 2, 8, 2, 8, 2).mean((3, 5, 7))
    torch.testing.assert_close(lr, box, atol=1e-6, rtol=0)
    # and the LR patch is the matching region of the whole-volume degradation
    vol = train_volumes[0]
    whole_lr, _, _ = degrade(vol.data, vol.affine, steps="sr-box-x2", rng=0)
    stream._open_round(0)
    for _ in range(stream.round_size):
        patch = stream._pop()
        if not patch["key"].startswith(vol.subject):
            continue
        lo = patch["location"][:3].numpy() // 2
        index = tuple(slice(a, a + 8) for a in lo)
        np.testing.assert_allclose(patch["source"].data[0].numpy()[::2, ::2, ::2],
                                   whole_lr[index], atol=1e-6)


def test_patch_origins_are_even_and_inside_the_head(train_volumes):
    stream = _stream(train_volumes)
    stream._open_round(0)
    for _ in range(stream.round_size):
        patch = stream._pop()
        origin = patch["location"][:3].numpy()
        assert (origin % 2 == 0).all()
        centre = origin + 8
        key = patch["key"]
        vol = next(v for v in train_volumes if key.startswith(v.subject))
        assert vol.mask[tuple(centre)]


def test_motion_is_applied_to_the_whole_volume_before_patching(train_volumes):
    geometry = PatchGeometry(scale=1, patch_size=(16, 16, 16))
    stream = _stream(train_volumes[:1], geometry=geometry, degradation="motion")
    vol = train_volumes[0]
    expected, _, records = degrade(vol.data, vol.affine, steps="motion",
                                   rng=numpy_generator(3, "degrade", vol.subject, 0))
    assert stream.records[0]["records"] == records
    stream._open_round(0)
    patch = stream._pop()
    lo = patch["location"][:3].numpy()
    index = tuple(slice(a, a + 16) for a in lo)
    np.testing.assert_array_equal(patch["source"].data[0].numpy(), expected[index])
    np.testing.assert_array_equal(patch["target"].data[0].numpy(), vol.data[index])
    assert not np.allclose(expected, vol.data)


def test_slices_for_diffusion(train_volumes):
    geometry = PatchGeometry(scale=1, patch_size=(16, 3, 16), slice_axis=1, neighbours=1)
    stream = _stream(train_volumes, geometry=geometry, degradation="denoise-rician")
    cond, target = stream.next_batch(4)
    assert cond.shape == (4, 3, 16, 16) and target.shape == (4, 1, 16, 16)
    assert geometry.source_channels == 3


def test_stream_is_deterministic_resumable_and_leaves_global_rng_alone(train_volumes):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = _stream(train_volumes).take(10)  # spans more than one round (6 patches per round)
    assert torch.equal(before, torch.get_rng_state())
    b = _stream(train_volumes).take(10)
    for (s1, t1), (s2, t2) in zip(a, b, strict=True):
        assert torch.equal(s1, s2) and torch.equal(t1, t2)
    resumed = _stream(train_volumes)
    resumed.load_state_dict({"position": 7, "seed": 3, "round_size": resumed.round_size})
    for (s1, t1), (s2, t2) in zip(a[7:], resumed.take(3), strict=True):
        assert torch.equal(s1, s2) and torch.equal(t1, t2)
    other = _stream(train_volumes, seed=4).take(3)
    assert not all(torch.equal(x[1], y[1]) for x, y in zip(a, other, strict=False))


def test_ranks_take_disjoint_slices_of_the_global_batch(train_volumes):
    whole_src, whole_tgt = _stream(train_volumes).next_batch(4)
    parts = [_stream(train_volumes).next_batch(2, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat([p[1] for p in parts]), whole_tgt)
    assert torch.equal(torch.cat([p[0] for p in parts]), whole_src)


def test_odd_and_small_volumes_are_cropped_and_padded():
    vol = TrainingVolume(subject="odd", data=head((15, 21, 17)))
    stream = _stream([vol], background_weight=0.1)
    lr, hr = stream.next_batch(2)
    assert hr.shape == (2, 1, 16, 16, 16)
    _, clean, degraded, _ = stream._pairs[0]
    assert clean.shape == (16, 20, 16)  # odd axes lose a voxel, short ones are padded


def test_clear_errors():
    vols = volumes(1)
    with pytest.raises(ValueError, match="distinct subject"):
        _stream(vols + vols)
    with pytest.raises(ValueError, match="isotropic x2"):
        _stream(vols, degradation="sr-thick-x2")
    empty = TrainingVolume(subject="empty", data=np.zeros((20, 20, 20), np.float32))
    with pytest.raises(ValueError, match="no admissible patch centre"):
        _stream([empty])
    with pytest.raises(ValueError, match="even sizes"):
        PatchGeometry(scale=2, patch_size=(15, 16, 16))
    with pytest.raises(ValueError, match="3D"):
        TrainingVolume(subject="flat", data=np.zeros((4, 4)))


def test_child_seeds_are_stable_and_distinct():
    assert child_seed(1, "degrade", "s01", 0) == child_seed(1, "degrade", "s01", 0)
    assert child_seed(1, "degrade", "s01", 0) != child_seed(1, "degrade", "s01", 1)
    assert child_seed(1, "x") != child_seed(2, "x")
    assert 0 <= child_seed(2**62, "x") < 2**63
