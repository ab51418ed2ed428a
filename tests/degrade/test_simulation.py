"""simulate(): the degraded image, its replayable records, and the reference on the compared
grid (no nipype)."""

from __future__ import annotations

import numpy as np
import pytest

from bids_enhance.degrade import crop_reference, degrade, replay, simulate


def _clean(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_odd_axes_lose_their_last_voxel_in_the_reference():
    clean = _clean((9, 8, 7))
    sim = simulate(clean, np.eye(4), preset="sr-box-x2", seed=3)
    assert sim.degraded.shape == (4, 4, 3) and sim.degraded.dtype == np.float32
    assert sim.reference.shape == (8, 8, 6) and sim.reference.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(sim.reference, clean[:8, :8, :6])
    assert sim.records[0]["cropped"] == [1, 0, 1]


def test_same_grid_presets_keep_the_clean_image_as_reference():
    clean = _clean((8, 8, 8))
    sim = simulate(clean, np.eye(4), preset="noise-rician-6", seed=3)
    assert sim.degraded.shape == clean.shape
    np.testing.assert_array_equal(sim.reference, clean)


def test_the_simulation_is_the_seeded_degradation_and_replays():
    clean, affine = _clean((10, 8, 6)), np.diag([1.0, 1.0, 2.0, 1.0])
    sim = simulate(clean, affine, preset="sr-box-x2-rician", seed=11)
    data, out_affine, records = degrade(clean, affine, steps="sr-box-x2-rician",
                                        rng=np.random.default_rng(11))
    np.testing.assert_array_equal(sim.degraded, data)
    np.testing.assert_array_equal(sim.affine, out_affine)
    assert sim.records == records
    np.testing.assert_array_equal(replay(sim.records, clean, affine)[0], sim.degraded)
    assert sim.record() == {"Simulation": {"Preset": "sr-box-x2-rician", "Seed": 11,
                                           "Records": records}}
    other = simulate(clean, affine, preset="sr-box-x2-rician", seed=12)
    assert not np.array_equal(other.degraded, sim.degraded)


def test_crop_reference_applies_every_records_crop():
    clean = _clean((9, 9, 9))
    out = crop_reference(clean, [{"cropped": [1, 0, 0]}, {"kind": "noise"}, {"cropped": [0, 1, 0]}])
    assert out.shape == (8, 8, 9)
    assert crop_reference(clean, []) is clean


def test_an_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown degradation preset"):
        simulate(_clean((8, 8, 8)), np.eye(4), preset="sr-boxx2", seed=0)


def test_a_prefilter_is_not_part_of_the_simulated_acquisition():
    from bids_enhance.degrade import simulate

    clean = np.zeros((16, 16, 16), np.float32)
    clean[4:12, 4:12, 4:12] = 1.0
    sim = simulate(clean, np.eye(4), preset="denoise-rician-wide-odct-stack", seed=0)
    plain = simulate(clean, np.eye(4), preset="denoise-rician-wide", seed=0)
    assert sim.degraded.shape == clean.shape
    assert [r["kind"] for r in sim.records] == ["noise"]
    # the same noise as the preset without the filter: the image a scanner would give
    np.testing.assert_array_equal(sim.degraded, plain.degraded)
    assert sim.record()["Simulation"]["Preset"] == "denoise-rician-wide-odct-stack"
