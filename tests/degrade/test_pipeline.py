"""Pipelines, presets, records and bit-for-bit replay of every degradation kind."""

import json

import numpy as np
import pytest

from bids_enhance.degrade import (
    PRESETS,
    STEP_KINDS,
    Degradation,
    Ghosting,
    LowResolution,
    Noise,
    RandomMotion,
    RandomNoise,
    degrade,
    lowres_affine,
    replay,
    sigma_from_fraction,
)

AFFINE = np.array([[0, 0, 1.1, -20.0], [-0.9, 0, 0, 14.0], [0, 1.0, 0, 3.5], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    """An odd-shaped 3D volume: a blob on a positive background with some texture."""
    grid = np.indices((17, 16, 15), dtype=np.float64)
    r2 = ((grid - np.array([8.2, 7.6, 7.1])[:, None, None, None]) ** 2).sum(0)
    texture = np.random.default_rng(5).random((17, 16, 15))
    return (100 * np.exp(-r2 / 20) + 10 * texture).astype(np.float32)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_replays_bit_for_bit_from_json(preset, volume):
    data, affine, records = degrade(volume, AFFINE, steps=preset, rng=np.random.default_rng(11))
    text = json.dumps(records)  # records are plain JSON
    again, again_affine = replay(json.loads(text), volume, AFFINE)
    np.testing.assert_array_equal(again, data)
    np.testing.assert_array_equal(again_affine, affine)
    assert data.dtype == np.float32 and np.isfinite(data).all()
    assert all({"kind", "method"} <= set(r) for r in records)


def test_every_kind_is_replayed_by_some_preset():
    kinds = set()
    for name in PRESETS:
        _, _, records = degrade(np.ones((8, 8, 8), np.float32), np.eye(4), steps=name, rng=0)
        kinds |= {r["kind"] for r in records}
    assert kinds == set(STEP_KINDS)


def test_seeds_give_different_draws_and_equal_seeds_equal_draws(volume):
    draws = [degrade(volume, AFFINE, steps="sr-box-x2-rician", rng=np.random.default_rng(s))
             for s in (1, 1, 2)]
    assert draws[0][2] == draws[1][2] and draws[0][2] != draws[2][2]
    np.testing.assert_array_equal(draws[0][0], draws[1][0])
    assert not np.array_equal(draws[0][0], draws[2][0])


def test_noisy_preset_records_sigma_of_the_downsampled_image(volume):
    data, affine, (low, noise) = degrade(volume, AFFINE, steps="sr-box-x2-rician", rng=3)
    np.testing.assert_array_equal(affine, lowres_affine(AFFINE, method="box"))
    assert low == {"kind": "lowres", "method": "box", "axis": None,
                   "input_shape": [17, 16, 15], "cropped": [1, 0, 1]}
    assert noise["method"] == "rician" and 0.01 <= noise["fraction"] <= 0.05
    clean = LowResolution(method="box")(volume[:16, :, :14], AFFINE)[0]
    assert noise["sigma"] == pytest.approx(sigma_from_fraction(clean, noise["fraction"]))
    assert isinstance(noise["seed"], int)


def test_custom_steps_and_a_single_record(volume):
    steps = [Ghosting(num_ghosts=3, axis=0, intensity=0.5),
             RandomNoise(method="gaussian", fraction=0.02)]
    data, _, records = degrade(volume, AFFINE, steps=steps, rng=4)
    assert [r["kind"] for r in records] == ["ghosting", "noise"]
    ghosted, _ = replay(records[0], volume, AFFINE)  # a single record works too
    np.testing.assert_array_equal(replay(records[1], ghosted, AFFINE)[0], data)
    np.testing.assert_array_equal(replay(json.dumps(records), volume, AFFINE)[0], data)
    assert Degradation.from_preset("motion") == Degradation(steps=(RandomMotion(),), name="motion")


def test_log_spaced_noise_levels_spread_evenly_in_log(volume):
    """``spacing="log"``: as many draws in 1–3.46 % as in 3.46–12 % (log-uniform), inside the
    range; the record is the same deterministic Noise step as with uniform spacing."""
    step = RandomNoise(fraction=(0.01, 0.12), spacing="log")
    rng = np.random.default_rng(0)
    draws = np.array([step.sample(volume, AFFINE, rng=rng).fraction for _ in range(4000)])
    assert draws.min() >= 0.01 and draws.max() <= 0.12
    assert np.mean(draws < np.sqrt(0.01 * 0.12)) == pytest.approx(0.5, abs=0.03)
    uniform = RandomNoise(fraction=(0.01, 0.12))
    rng = np.random.default_rng(0)
    draws_u = np.array([uniform.sample(volume, AFFINE, rng=rng).fraction for _ in range(4000)])
    assert np.mean(draws_u < np.sqrt(0.01 * 0.12)) == pytest.approx(2.46 / 11, abs=0.03)
    noise = step.sample(volume, AFFINE, rng=np.random.default_rng(1))
    assert Noise.from_record(noise.to_record()) == noise


def test_noise_step_is_deterministic_given_its_seed(volume):
    step = Noise(method="rician", sigma=2.0, seed=123)
    np.testing.assert_array_equal(step(volume, AFFINE)[0], step(volume, AFFINE)[0])
    assert Noise.from_record(step.to_record()) == step


@pytest.mark.parametrize("call, match", [
    (lambda v: degrade(v, AFFINE, steps="sr-box-2x", rng=0), "did you mean 'sr-box-x2'"),
    (lambda v: degrade(v, AFFINE, steps="motion", rng=np.random), "Generator"),
    (lambda v: degrade(v, AFFINE, steps=["box"], rng=0), r"steps\[0\]"),
    (lambda v: degrade(v[0], AFFINE, steps="sr-box-x2", rng=0), "3D"),
    (lambda v: replay({"kind": "blur"}, v, AFFINE), "unknown"),
    (lambda v: replay({"kind": "noise", "method": "rician", "sigam": 1.0}, v, AFFINE),
     "unknown keys"),
    (lambda v: replay({"kind": "noise", "method": "poisson"}, v, AFFINE), "did you mean|rician"),
    (lambda v: replay([{"kind": "lowres", "method": "box", "input_shape": [8, 8, 8]}], v, AFFINE),
     "input_shape"),
    (lambda v: replay("{not json", v, AFFINE), "JSON"),
    (lambda v: RandomNoise(fraction=(0.1, 1.5)), "fraction"),
    (lambda v: RandomNoise(fraction=(0.01, 0.1), spacing="logs"), "did you mean 'log'"),
    (lambda v: RandomNoise(fraction=(0.0, 0.1), spacing="log"), "fraction > 0"),
    (lambda v: Noise(sigma=-1.0), "sigma"),
    (lambda v: Noise(seed=-3), "seed"),
])
def test_bad_inputs_raise(call, match, volume):
    with pytest.raises(ValueError, match=match):
        call(volume)
