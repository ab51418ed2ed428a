import gzip
import re

import nibabel as nib
import numpy as np
import pytest

from bids_enhance.image.sanitize import ImageInputError, load_and_sanitise


def _volume(shape=(16, 18, 20), rng=None):
    rng = rng or np.random.default_rng(0)
    data = np.zeros(shape, np.float32)
    data[3:-3, 3:-3, 3:-3] = 100 + rng.normal(0, 5, (shape[0] - 6, shape[1] - 6, shape[2] - 6))
    return data


def _save(tmp_path, img, name="sub-01_T1w.nii.gz"):
    path = tmp_path / name
    nib.save(img, path)
    return path


def test_clean_image_passes_unchanged(tmp_path):
    data = _volume()
    affine = np.diag([1.0, 1.0, 1.2, 1.0])
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, 1)
    img.header.set_xyzt_units("mm", "sec")
    path = _save(tmp_path, img)
    img, report = load_and_sanitise(path)
    np.testing.assert_allclose(img.get_fdata(), data, rtol=1e-6)
    np.testing.assert_allclose(img.affine, affine)
    assert report.fixes == [] and report.orientation == "RAS"
    assert img.get_data_dtype() == np.float32
    assert img.header.get_xyzt_units() == ("mm", "sec")


@pytest.mark.parametrize(("units", "expected"), [
    (("unknown", "unknown"), ("mm", "sec")),
    (("unknown", "msec"), ("mm", "msec")),
])
def test_missing_spatial_units_are_set_to_millimetres_and_reported(tmp_path, units, expected):
    img = nib.Nifti1Image(_volume(), np.eye(4))
    img.header.set_xyzt_units(*units)
    out, report = load_and_sanitise(_save(tmp_path, img))
    assert out.header.get_xyzt_units() == expected
    assert [f for f in report.fixes if "unit" in f] == [
        "the header gives no unit for the voxel sizes (xyzt_units unknown); set millimetres"
        + (" and seconds" if expected[1] == "sec" else "") + ", the units BIDS uses"]
    assert report.to_dict()["Fixes"] == report.fixes  # recorded in InputSanitising


@pytest.mark.parametrize("xyz", ["micron", "meter"])
def test_given_spatial_units_are_kept(tmp_path, xyz):
    img = nib.Nifti1Image(_volume(), np.eye(4))
    img.header.set_xyzt_units(xyz)
    out, report = load_and_sanitise(_save(tmp_path, img))
    assert out.header.get_xyzt_units()[0] == xyz
    assert not [f for f in report.fixes if "unit" in f]


def test_nifti2_units_are_carried_over(tmp_path):
    img = nib.Nifti2Image(_volume(), np.eye(4))
    img.header.set_xyzt_units("micron")
    out, report = load_and_sanitise(_save(tmp_path, img, "sub-01_T1w.nii"))
    assert isinstance(out, nib.Nifti1Image) and out.header.get_xyzt_units()[0] == "micron"


def test_qform_sform_disagreement_is_fixed_and_reported(tmp_path):
    img = nib.Nifti1Image(_volume(), np.eye(4))
    shifted = np.eye(4)
    shifted[:3, 3] = [5.0, 0, 0]
    img.set_qform(shifted, 1)
    img.set_sform(np.eye(4), 2)
    out, report = load_and_sanitise(_save(tmp_path, img))
    assert any("qform and sform disagree" in f for f in report.fixes)
    np.testing.assert_allclose(out.get_qform(), out.get_sform())
    np.testing.assert_allclose(out.affine, np.eye(4))


def test_singleton_fourth_dimension_is_dropped(tmp_path):
    path = _save(tmp_path, nib.Nifti1Image(_volume()[..., None], np.eye(4)))
    img, report = load_and_sanitise(path)
    assert img.shape == (16, 18, 20)
    assert any("singleton" in f for f in report.fixes)


def test_nan_and_inf_are_zeroed_and_counted(tmp_path):
    data = _volume()
    data[5, 5, 5] = np.nan
    data[6, 6, 6] = np.inf
    img, report = load_and_sanitise(_save(tmp_path, nib.Nifti1Image(data, np.eye(4))))
    assert np.isfinite(img.get_fdata()).all()
    assert any("2 NaN/infinite" in f for f in report.fixes)


def test_scaled_integers_are_applied(tmp_path):
    raw = np.random.default_rng(1).integers(0, 2000, (12, 12, 12)).astype(np.int16)
    path = _save(tmp_path, nib.Nifti1Image(raw, np.eye(4)), name="sub-01_T1w.nii")
    # Write scl_slope/scl_inter into the header bytes (offsets 112/116), as a scanner would.
    with open(path, "r+b") as fobj:
        fobj.seek(112)
        fobj.write(np.array([0.5, 10.0], dtype="<f4").tobytes())
    out, report = load_and_sanitise(path)
    np.testing.assert_allclose(out.get_fdata(), raw * 0.5 + 10.0)
    assert any("scl_slope=0.5" in f for f in report.fixes)


@pytest.mark.parametrize("codes", ["LPS", "PIR", "ASL"])
def test_any_orientation_is_kept_and_reported(tmp_path, codes):
    img = nib.Nifti1Image(_volume(), np.diag([1.0, 1.1, 1.2, 1.0]))
    transform = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(img.affine), nib.orientations.axcodes2ornt(tuple(codes)))
    img = img.as_reoriented(transform)
    out, report = load_and_sanitise(_save(tmp_path, img))
    assert report.orientation == codes
    np.testing.assert_allclose(out.affine, img.affine)


@pytest.mark.parametrize(("shape", "message"), [
    ((16, 18, 20, 3), "4D with 3 volumes"),
    ((16, 18), "2D"),
    ((16, 18, 1), "only 1 voxel"),
])
def test_unusable_shapes_fail_with_one_line_naming_the_file(tmp_path, shape, message):
    path = _save(tmp_path, nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4)))
    with pytest.raises(ImageInputError, match=message) as info:
        load_and_sanitise(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_constant_image_fails(tmp_path):
    path = _save(tmp_path, nib.Nifti1Image(np.zeros((10, 10, 10), np.float32), np.eye(4)))
    with pytest.raises(ImageInputError, match="no signal"):
        load_and_sanitise(path)


def test_truncated_file_fails(tmp_path):
    path = _save(tmp_path, nib.Nifti1Image(_volume((32, 32, 32)), np.eye(4)))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) // 2])
    with pytest.raises(ImageInputError, match="truncated or corrupt|cannot read"):
        load_and_sanitise(path)


@pytest.mark.parametrize("content", [b"", b"this is not a nifti file at all" * 20])
def test_empty_or_corrupt_file_fails(tmp_path, content):
    path = tmp_path / "sub-01_T1w.nii.gz"
    path.write_bytes(content)
    with pytest.raises(ImageInputError, match="empty|cannot read"):
        load_and_sanitise(path)


def test_missing_file_fails(tmp_path):
    with pytest.raises(ImageInputError, match="does not exist"):
        load_and_sanitise(tmp_path / "nope.nii.gz")


def test_non_finite_affine_fails(tmp_path):
    img = nib.Nifti1Image(_volume(), np.eye(4))
    path = _save(tmp_path, img)
    hdr_img = nib.load(path)
    hdr_img.header["pixdim"][1] = np.nan
    hdr_img.header.set_sform(None, 0)
    hdr_img.header["qform_code"] = 1
    bad = tmp_path / "sub-02_T1w.nii.gz"
    nib.save(nib.Nifti1Image(hdr_img.get_fdata(), None, hdr_img.header), bad)
    with pytest.raises(ImageInputError):
        load_and_sanitise(bad)


def test_negative_voxels_are_clipped_to_zero_and_counted(tmp_path):
    data = _volume()
    data[0, 0, :3] = [-1.5, -40.0, -0.25]  # e.g. ringing of a sinc interpolation
    img, report = load_and_sanitise(_save(tmp_path, nib.Nifti1Image(data, np.eye(4))))
    out = img.get_fdata()
    assert out.min() == 0.0
    np.testing.assert_array_equal(out[0, 0, :3], 0.0)
    np.testing.assert_allclose(out[data >= 0], data[data >= 0], rtol=1e-6)
    (fix,) = [f for f in report.fixes if "negative" in f]
    assert fix.startswith("clipped 3 negative voxel(s) to 0 (minimum -40;")
    assert report.to_dict()["Fixes"] == report.fixes


def test_negative_scaled_integers_are_clipped_after_scaling(tmp_path):
    raw = np.full((12, 12, 12), 100, np.int16)
    raw[0, 0, 0] = 2  # 2 * 1.0 - 5 = -3 once the scaling is applied
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(1.0, -5.0)
    out, report = load_and_sanitise(_save(tmp_path, img))
    assert out.get_fdata()[0, 0, 0] == 0.0
    assert any(f.startswith("clipped 1 negative voxel(s) to 0 (minimum -3;") for f in report.fixes)


def test_an_image_without_positive_voxels_is_refused(tmp_path):
    data = -_volume()
    path = _save(tmp_path, nib.Nifti1Image(data, np.eye(4)))
    with pytest.raises(ImageInputError, match="every voxel is zero or negative") as info:
        load_and_sanitise(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def _write_huge_header(path, cls=nib.Nifti1Image, dims=(30000, 30000, 30000), gz=False):
    """A NIfTI whose header claims ``dims`` followed by only 1000 voxels of data."""
    header = cls(np.ones((8, 8, 8), np.int16), np.eye(4)).header.copy()
    header.set_data_shape(dims)
    offset = header.single_vox_offset  # 352 (NIfTI-1) or 544 (NIfTI-2): no extensions
    header.set_data_offset(offset)
    raw = header.binaryblock.ljust(offset, b"\0") + np.ones(1000, np.int16).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.mark.parametrize(("cls", "dims", "name"), [
    (nib.Nifti1Image, (30000, 30000, 30000), "sub-01_T1w.nii"),
    (nib.Nifti1Image, (30000, 30000, 30000), "sub-01_T1w.nii.gz"),
    (nib.Nifti2Image, (100000, 100000, 100000), "sub-01_T1w.nii"),
    (nib.Nifti1Image, (64, 64, 64), "sub-01_T1w.nii"),  # plausible dims, 1000 voxels of data
])
def test_header_dimensions_that_cannot_fit_in_the_file_are_refused_before_reading(
        tmp_path, monkeypatch, cls, dims, name):
    path = _write_huge_header(tmp_path / name, cls, dims, gz=name.endswith(".gz"))

    def no_data(*args, **kwargs):
        raise AssertionError("the data were read")

    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "__array__", no_data)
    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "_get_scaled", no_data)
    with pytest.raises(ImageInputError, match="implausible image header") as info:
        load_and_sanitise(path)
    message = str(info.value)
    n = int(np.prod(dims, dtype=np.float64))
    assert message.startswith(f"{path}: implausible image header: dimensions "
                              f"{'×'.join(map(str, dims))} ({n:,} voxels, ")
    assert "GiB of int16 data" in message and "\n" not in message
    assert ("gzip file" in message) == name.endswith(".gz")
    # the CLI keeps the innermost "SomethingError: message" line of a nipype crash file
    crash_line = f"bids_enhance.image.sanitize.ImageInputError: {message}"
    match = re.match(r"^\s*([\w.]*(?:Error|Exception|Exit)\w*): (.+)$", crash_line)
    assert match and "implausible image header" in match.group(2)


def test_gzip_bound_accepts_highly_compressible_real_data(tmp_path):
    data = np.zeros((96, 96, 96), np.float32)  # compresses ~1000:1, yet is a valid file
    data[40:56, 40:56, 40:56] = 1.0
    path = _save(tmp_path, nib.Nifti1Image(data, np.eye(4)))
    assert path.stat().st_size * 100 < data.nbytes
    img, _ = load_and_sanitise(path)
    assert img.shape == data.shape


def test_out_of_memory_while_reading_is_one_line_not_unknown(tmp_path, monkeypatch):
    path = _save(tmp_path, nib.Nifti1Image(_volume(), np.eye(4)))

    def oom(self, *args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(nib.Nifti1Image, "get_fdata", oom)
    with pytest.raises(ImageInputError, match=r"not enough memory to read the image data "
                                              r"\(16×18×20 = 5,760 voxels"):
        load_and_sanitise(path)
