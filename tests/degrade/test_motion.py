"""Rigid motion and ghosting (TorchIO deterministic twins) with our seeded samplers."""

import logging

import numpy as np
import pytest
from scipy import ndimage

from bids_enhance.degrade import Ghosting, Motion, RandomGhosting, RandomMotion, add_motion
from bids_enhance.degrade.motion import torchio_version

AFFINE = np.diag([1.2, 1.2, 1.2, 1.0])


@pytest.fixture(scope="module")
def head() -> tuple[np.ndarray, np.ndarray]:
    """32³ head phantom (ellipsoid shell + brighter core, zero background) and a dilated mask."""
    grid = np.indices((32, 32, 32), dtype=np.float64) - 15.5
    r = np.sqrt((grid[0] / 9) ** 2 + (grid[1] / 10) ** 2 + (grid[2] / 8) ** 2)
    data = (np.where(r < 1, 60.0, 0.0) + np.where(r < 0.6, 40.0, 0.0)).astype(np.float32)
    mask = ndimage.binary_dilation(data > 0, iterations=2)
    return data, mask


def outside_energy(data: np.ndarray, mask: np.ndarray) -> float:
    return float((data[~mask].astype(np.float64) ** 2).sum() / (data.astype(np.float64) ** 2).sum())


def test_motion_puts_ghosting_energy_outside_the_head(head):
    data, mask = head
    moved = add_motion(data, AFFINE, degrees=[[0, 0, 8], [4, 0, 0]],
                       translation=[[5, 0, 0], [0, -4, 2]], times=[0.3, 0.7])
    assert moved.shape == data.shape and moved.dtype == np.float32
    assert outside_energy(moved, mask) > 1e-3


def test_zero_motion_changes_nothing(head):
    data, mask = head
    still = add_motion(data, AFFINE, degrees=np.zeros((2, 3)), translation=np.zeros((2, 3)),
                       times=[0.3, 0.7])
    assert outside_energy(still, mask) < 1e-10
    np.testing.assert_allclose(still, data, atol=1e-4)


def test_ghosting_puts_energy_outside_and_zero_intensity_does_not(head):
    data, mask = head
    ghosted, affine = Ghosting(num_ghosts=4, axis=1, intensity=0.8)(data, AFFINE)
    np.testing.assert_array_equal(affine, AFFINE)
    assert outside_energy(ghosted, mask) > 1e-3
    clean, _ = Ghosting(num_ghosts=4, axis=1, intensity=0.0)(data, AFFINE)
    np.testing.assert_array_equal(clean, data)


def test_random_motion_draws_are_seeded_and_within_ranges():
    vol = np.zeros((4, 4, 4))
    sampler = RandomMotion(degrees=5, translation=(1, 3), num_transforms=(2, 4))
    a = sampler.sample(vol, AFFINE, rng=np.random.default_rng(1))
    b = sampler.sample(vol, AFFINE, rng=np.random.default_rng(1))
    c = sampler.sample(vol, AFFINE, rng=np.random.default_rng(2))
    assert a == b and a.to_record() != c.to_record()
    degrees, translation = np.array(a.degrees), np.array(a.translation)
    assert 2 <= len(a.times) <= 4 and degrees.shape == translation.shape == (len(a.times), 3)
    assert np.all(np.abs(degrees) <= 5) and np.all((translation >= 1) & (translation <= 3))
    assert np.all(np.diff(a.times) > 0) and 0 < a.times[0] and a.times[-1] < 1
    assert a.to_record()["torchio_version"] == torchio_version()


def test_random_ghosting_draws_are_seeded_and_within_ranges():
    vol = np.zeros((4, 4, 4))
    sampler = RandomGhosting(num_ghosts=(2, 3), axes=(0, 2), intensity=(0.2, 0.4), restore=0.5)
    draws = [sampler.sample(vol, AFFINE, rng=np.random.default_rng(s)) for s in range(8)]
    assert draws[0] == sampler.sample(vol, AFFINE, rng=np.random.default_rng(0))
    assert len({d.to_record()["intensity"] for d in draws}) == 8
    for d in draws:
        assert d.num_ghosts in (2, 3) and d.axis in (0, 2) and 0.2 <= d.intensity <= 0.4
        assert 0 <= d.restore <= 0.5


def test_replaying_with_another_torchio_version_warns(caplog):
    record = Motion().to_record() | {"torchio_version": "0.0.1"}
    with caplog.at_level(logging.WARNING):
        Motion.from_record(record)
    assert "TorchIO 0.0.1" in caplog.text


@pytest.mark.parametrize("make, match", [
    (lambda: Motion(degrees=[[0, 0]], translation=[[0, 0, 0]], times=[0.5]), r"shape \(num_transforms, 3\)"),
    (lambda: Motion(degrees=np.zeros((2, 3)), translation=np.zeros((2, 3)), times=[0.7, 0.3]), "increasing"),
    (lambda: Motion(degrees=np.zeros((2, 3)), translation=np.zeros((1, 3)), times=[0.5]), "same number"),
    (lambda: Motion(interpolation="linaer"), "did you mean 'linear'"),
    (lambda: RandomMotion(num_transforms=0), "num_transforms"),
    (lambda: RandomMotion(degrees=(5, 1)), "low <= high"),
    (lambda: RandomMotion(perturbation=0.5), "perturbation"),
    (lambda: Ghosting(axis=3), "axis"),
    (lambda: Ghosting(num_ghosts=-1), "num_ghosts"),
    (lambda: Ghosting(restore=1.5), "restore"),
    (lambda: RandomGhosting(axes=()), "axes"),
    (lambda: RandomGhosting(restore=(0.2, 1.5)), "restore"),
])
def test_bad_parameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("shape", [(16, 16), (16, 1, 16), (2, 8, 8, 8)])
def test_motion_needs_a_true_3d_volume(shape):
    with pytest.raises(ValueError, match="3D"):
        Motion()(np.zeros(shape), AFFINE)
    with pytest.raises(ValueError, match="3D"):
        RandomMotion().sample(np.zeros(shape), AFFINE, rng=np.random.default_rng(0))
