"""x2 low-resolution methods: values, exact affines, world positions, odd shapes, bad inputs."""

import numpy as np
import pytest
from scipy import ndimage

from bids_enhance.degrade import (
    LowResMethod,
    LowResolution,
    downsample,
    lowres_affine,
    upsampled_affine,
    upsampled_shape,
)

# an oblique, anisotropic, shifted voxel->world map: geometry errors cannot hide in a diagonal
_C, _S = np.cos(0.3), np.sin(0.3)
OBLIQUE = np.array([[_C, -_S, 0, 0], [_S, _C, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]) @ np.array(
    [[0.9, 0, 0, -12.0], [0, 1.1, 0, 7.5], [0, 0, 1.3, 3.25], [0, 0, 0, 1]])


def blob(shape=(32, 32, 32), centre=(15.3, 16.7, 14.2), sigma=3.0) -> np.ndarray:
    """Smooth Gaussian blob centred off-grid (HR voxel coordinates)."""
    grid = np.indices(shape, dtype=np.float64)
    r2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    return np.exp(-r2 / (2 * sigma**2))


def com_world(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Centre of mass of ``data`` in world (mm) coordinates."""
    data = np.asarray(data, dtype=np.float64)
    idx = np.array([(g * data).sum() / data.sum() for g in np.indices(data.shape)])
    return affine[:3, :3] @ idx + affine[:3, 3]


def hr_voxels(distance_mm: np.ndarray, affine: np.ndarray) -> float:
    """A world-space error expressed in HR voxels (through the inverse of the affine)."""
    return float(np.linalg.norm(np.linalg.solve(affine[:3, :3], distance_mm)))


def test_box_values_exact_on_hand_made_array():
    x = np.arange(64, dtype=np.float32).reshape(4, 4, 4)  # x[a, b, c] = 16a + 4b + c
    low, _ = downsample(x, np.eye(4), method="box")
    i, j, k = np.indices((2, 2, 2))
    # mean over a in {2i, 2i+1} etc.: 16(2i + .5) + 4(2j + .5) + (2k + .5)
    np.testing.assert_array_equal(low, 32 * i + 8 * j + 2 * k + 10.5)
    assert low.dtype == np.float32 and low.shape == (2, 2, 2)


def test_thick_and_nearest_values_exact():
    x = np.arange(64, dtype=np.int16).reshape(4, 4, 4)
    thick, _ = downsample(x, np.eye(4), method="thick", axis=1)
    np.testing.assert_array_equal(thick, (x[:, 0::2] + x[:, 1::2]) / 2)
    assert thick.shape == (4, 2, 4)
    nearest, _ = downsample(x, np.eye(4), method="nearest")
    np.testing.assert_array_equal(nearest, x[::2, ::2, ::2])


def test_affines_are_exactly_the_documented_matrices():
    box = np.array([[2, 0, 0, .5], [0, 2, 0, .5], [0, 0, 2, .5], [0, 0, 0, 1]])
    np.testing.assert_array_equal(lowres_affine(OBLIQUE, method="box"), OBLIQUE @ box)
    for method in ("kspace", "nearest"):
        np.testing.assert_array_equal(lowres_affine(OBLIQUE, method=method),
                                      OBLIQUE @ np.diag([2.0, 2, 2, 1]))
    thick = np.eye(4)
    thick[0, 0], thick[0, 3] = 2.0, 0.5
    np.testing.assert_array_equal(lowres_affine(OBLIQUE, method="thick", axis=0), OBLIQUE @ thick)
    # the affine returned with the data is the same matrix
    _, affine = downsample(np.zeros((6, 6, 6)), OBLIQUE, method="box")
    np.testing.assert_array_equal(affine, OBLIQUE @ box)


@pytest.mark.parametrize("method, axis", [("box", None), ("kspace", None), ("nearest", None),
                                          ("thick", 0), ("thick", 2)])
def test_upsampled_affine_inverts_lowres_affine(method, axis):
    lr = lowres_affine(OBLIQUE, method=method, axis=axis)
    np.testing.assert_allclose(upsampled_affine(lr, method=method, axis=axis), OBLIQUE,
                               atol=1e-12)
    expected = (10, 12, 14) if method != "thick" else tuple(
        2 * n if a == axis else n for a, n in enumerate((5, 6, 7)))
    assert upsampled_shape((5, 6, 7), method=method, axis=axis) == expected


def test_box_upsampled_affine_maps_hr_voxel_j_to_lr_coordinate_j_over_2_minus_quarter():
    lr = lowres_affine(OBLIQUE, method="box")
    up = upsampled_affine(lr, method="box")
    np.testing.assert_allclose(np.linalg.solve(lr, up), np.array(
        [[.5, 0, 0, -.25], [0, .5, 0, -.25], [0, 0, .5, -.25], [0, 0, 0, 1]]), atol=1e-12)


@pytest.mark.parametrize("method, axis", [("box", None), ("kspace", None), ("thick", 1)])
def test_centre_of_mass_in_world_is_preserved(method, axis):
    hr = blob()
    low, lr_affine = downsample(hr, OBLIQUE, method=method, axis=axis)
    assert hr_voxels(com_world(low, lr_affine) - com_world(hr, OBLIQUE), OBLIQUE) < 0.01
    # the test can tell a half-voxel mistake: toggling the 0.5 offset moves the centre by 0.5
    scale = lowres_affine(np.eye(4), method=method, axis=axis)
    toggled = scale.copy()
    toggled[:3, 3] = np.where(np.diag(scale)[:3] == 2, 0.5 - scale[:3, 3], 0.0)
    wrong = OBLIQUE @ toggled
    assert hr_voxels(com_world(low, wrong) - com_world(hr, OBLIQUE), OBLIQUE) > 0.4


def test_nearest_keeps_a_landmark_at_an_even_index_in_place():
    hr = np.zeros((12, 10, 8), np.float32)
    hr[6, 4, 2] = 1.0
    low, lr_affine = downsample(hr, OBLIQUE, method="nearest")
    (idx,) = np.argwhere(low == 1.0)
    np.testing.assert_allclose(lr_affine @ [*idx, 1], OBLIQUE @ [6, 4, 2, 1], atol=1e-12)


def _zero_fill_upsample(low: np.ndarray) -> np.ndarray:
    """Sinc interpolation x2 by zero-padding the centred spectrum (test helper)."""
    spectrum = np.fft.fftshift(np.fft.fftn(low.astype(np.float64)))
    pad = [(n // 2, n - n // 2) for n in low.shape]
    return np.fft.ifftn(np.fft.ifftshift(np.pad(spectrum, pad))).real * 8


def test_kspace_truncation_of_a_band_limited_signal_is_near_lossless():
    n, rng = 24, np.random.default_rng(3)
    spectrum = np.zeros((n, n, n), complex)
    band = slice(n // 2 - 5, n // 2 + 6)  # |k| <= 5 < n/4 = 6: strictly inside the LR band
    spectrum[band, band, band] = rng.normal(size=(11, 11, 11)) + 1j * rng.normal(size=(11, 11, 11))
    signal = np.fft.ifftn(np.fft.ifftshift(spectrum)).real  # real part: conjugate-symmetric band
    low, lr_affine = downsample(signal, np.eye(4), method="kspace")
    np.testing.assert_array_equal(lr_affine, np.diag([2.0, 2, 2, 1]))
    restored = _zero_fill_upsample(low)
    assert np.abs(restored - signal).max() < 1e-5 * np.abs(signal).max()
    # and LR sample m is the signal itself at HR index 2m (no half-voxel offset)
    np.testing.assert_allclose(low, signal[::2, ::2, ::2], atol=1e-5 * np.abs(signal).max())


def test_box_down_then_cubic_up_keeps_a_landmark_in_world():
    hr = blob(sigma=2.5)
    low, lr_affine = downsample(hr, OBLIQUE, method="box")
    up_affine = upsampled_affine(lr_affine, method="box")
    shape = upsampled_shape(low.shape, method="box")
    # LR continuous coordinates of every upsampled voxel, read off the two affines
    to_lr = np.linalg.solve(lr_affine, up_affine)
    grid = np.indices(shape, dtype=np.float64).reshape(3, -1)
    coords = to_lr[:3, :3] @ grid + to_lr[:3, 3:]
    up = ndimage.map_coordinates(low, coords, order=3, mode="nearest").reshape(shape)
    assert hr_voxels(com_world(up, up_affine) - com_world(hr, OBLIQUE), OBLIQUE) < 0.05
    # ignoring the half-voxel offset (sampling LR at j/2) moves the landmark by half an HR voxel
    naive = ndimage.map_coordinates(low, grid / 2, order=3, mode="nearest").reshape(shape)
    assert hr_voxels(com_world(naive, up_affine) - com_world(hr, OBLIQUE), OBLIQUE) > 0.4


@pytest.mark.parametrize("method, axis", [("box", None), ("kspace", None), ("nearest", None),
                                          ("thick", 0)])
def test_odd_axes_lose_their_last_voxel_and_the_record_says_so(method, axis):
    x = np.random.default_rng(0).random((9, 10, 11))
    low, affine = downsample(x, OBLIQUE, method=method, axis=axis)
    ref, ref_affine = downsample(x[:8, :, :10] if method != "thick" else x[:8], OBLIQUE,
                                 method=method, axis=axis)
    np.testing.assert_array_equal(low, ref)
    np.testing.assert_array_equal(affine, ref_affine)  # origin unchanged by the crop
    step = LowResolution(method=method, axis=axis).sample(x, OBLIQUE)
    assert step.to_record()["cropped"] == ([1, 0, 1] if method != "thick" else [1, 0, 0])
    assert step.to_record()["input_shape"] == [9, 10, 11]


def test_method_enum_and_strings_are_interchangeable():
    assert LowResMethod.parse("BOX") is LowResMethod.BOX
    a = downsample(np.ones((4, 4, 4)), np.eye(4), method=LowResMethod.KSPACE)
    b = downsample(np.ones((4, 4, 4)), np.eye(4), method="kspace")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[0], 1.0, atol=1e-6)  # constants keep their value


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="boxx"), "did you mean 'box'"),
    (dict(method="box", axis=0), "axis only applies"),
    (dict(method="thick", axis=3), "axis must be 0, 1 or 2"),
    (dict(method="box", data=np.zeros((4, 4))), "3D volume"),
    (dict(method="box", data=np.zeros((4, 1, 4))), "at least 2 voxels"),
    (dict(method="box", data=np.full((4, 4, 4), np.nan)), "NaN"),
    (dict(method="box", affine=np.eye(3)), "4x4"),
    (dict(method="box", affine=np.diag([1.0, 0.0, 1.0, 1.0])), "singular"),
    (dict(method="box", affine=np.full((4, 4), np.inf)), "affine contains NaN"),
])
def test_bad_inputs_raise(kwargs, match):
    data = kwargs.pop("data", np.zeros((4, 4, 4)))
    affine = kwargs.pop("affine", np.eye(4))
    with pytest.raises(ValueError, match=match):
        downsample(data, affine, **kwargs)


def test_bound_step_refuses_an_input_of_another_shape():
    step = LowResolution(method="box").sample(np.zeros((8, 8, 8)), np.eye(4))
    with pytest.raises(ValueError, match="input_shape"):
        step(np.zeros((8, 8, 6)), np.eye(4))
    with pytest.raises(ValueError, match="inconsistent"):
        LowResolution(method="box", input_shape=(9, 8, 8), cropped=(0, 0, 0))
