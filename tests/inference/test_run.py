"""run_checkpoint: dispatch on the checkpoint, geometry, intensities, provenance, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bids_enhance.degrade import downsample, upsampled_affine
from bids_enhance.inference import lowres_method_of, run_checkpoint
from bids_enhance.models import CheckpointError, build_model, save_checkpoint
from bids_enhance.training.diffusion import INTENSITY_MAP
from tests.inference.conftest import TINY, smooth_volume

NORMALISATION = {"method": "robust-max-scale", "percentile": 99.9}


def _save_generator(path, *, scale=2, preset="sr-box-x2", records=None):
    torch.manual_seed(0)
    kwargs = {**TINY, "scale": scale}
    model = build_model("rrdb_generator", **kwargs)
    return save_checkpoint(path, model=model, arch_name="rrdb_generator", arch_kwargs=kwargs,
                           degradation={"preset": preset, "records": records or []},
                           normalisation=NORMALISATION, seed=1,
                           extra={"task": "gan3p" if scale == 2 else "motion-gan"})


@pytest.fixture
def head(oblique_affine):
    hr = 800.0 * smooth_volume((16, 18, 14), seed=9)
    lr, lr_affine = downsample(hr, oblique_affine, method="box")
    return lr, lr_affine


def test_x2_generator_superresolves_with_provenance(tmp_path, head):
    lr, affine = head
    path = tmp_path / "gan3p.pt"
    digest = _save_generator(path)
    out, out_affine, info = run_checkpoint(path, lr, affine, expected_sha256=digest, halo=4)
    assert out.shape == tuple(2 * n for n in lr.shape) and out.dtype == np.float32
    np.testing.assert_allclose(out_affine, upsampled_affine(affine, method="box"))
    assert info["model"] == "gan3p" and info["sha256"] == digest
    assert info["method"] == "box" and info["mode"] == "whole" and info["precision"] == "fp32"
    assert info["halo"] == 4 and info["device"] == "cpu" and info["seconds"] > 0
    assert info["architecture"].startswith("rrdb_generator(")
    assert info["normalisation_scale"] == pytest.approx(np.percentile(lr[lr > 0], 99.9), rel=1e-5)
    assert info["consistency"]["method"] == "box" and info["consistency"]["rmse"] > 0
    json.dumps(info)  # plain data, ready for a sidecar

    projected, _, pinfo = run_checkpoint(path, lr, affine, consistency="project", halo=4,
                                         patch_size=5)
    assert pinfo["mode"] == "patches" and pinfo["patch_size"] == [5, 5, 5]
    assert pinfo["consistency_projected"]["rmse_percent"] < 1e-4
    np.testing.assert_allclose(downsample(projected, np.eye(4), method="box")[0], lr,
                               atol=1e-4 * lr.max())


def test_intensities_come_back_in_input_units(tmp_path, head):
    lr, affine = head
    path = tmp_path / "gan3p.pt"
    _save_generator(path)
    out, _, _ = run_checkpoint(path, lr, affine, halo=2, consistency=None)
    out10, _, _ = run_checkpoint(path, 10 * lr, affine, halo=2, consistency=None)
    np.testing.assert_allclose(out10, 10 * out, rtol=1e-4, atol=1e-4 * np.abs(out10).max())


def test_kspace_checkpoint_gets_kspace_geometry(tmp_path, head):
    lr, affine = head
    path = tmp_path / "k.pt"
    _save_generator(path, preset=None, records=[{"kind": "lowres", "method": "kspace"}])
    _, out_affine, info = run_checkpoint(path, lr, affine, halo=1, consistency=None)
    np.testing.assert_allclose(out_affine, upsampled_affine(affine, method="kspace"))
    assert info["method"] == "kspace" and "consistency" not in info


def test_scale_one_generator_keeps_the_grid(tmp_path, head):
    lr, affine = head
    path = tmp_path / "motion.pt"
    _save_generator(path, scale=1, preset="motion")
    out, out_affine, info = run_checkpoint(path, lr, affine, halo=2)
    assert out.shape == lr.shape and info["model"] == "motion-gan"
    np.testing.assert_array_equal(out_affine, affine)
    assert "consistency" not in info and info["consistency_mode"] is None


def test_motion_model_sees_the_phase_encoding_axis_where_it_was_trained(tmp_path, head):
    """phase_encoding_axis=a: the network runs on the volume with axis a moved to the training
    axis (the last), and the output comes back in the input's axis order; a = 2 or None runs
    the volume as it is. Other models ignore it."""
    lr, affine = head
    path = tmp_path / "motion.pt"
    _save_generator(path, scale=1, preset="motion")
    plain, _, info = run_checkpoint(path, lr, affine, halo=2)
    assert "phase_encoding_axis" not in info
    same, _, info = run_checkpoint(path, lr, affine, halo=2, phase_encoding_axis=2)
    np.testing.assert_array_equal(same, plain)
    assert info["phase_encoding_axis"] == 2
    for axis in (0, 1):
        out, out_affine, info = run_checkpoint(path, lr, affine, halo=2,
                                               phase_encoding_axis=axis)
        assert out.shape == lr.shape and info["phase_encoding_axis"] == axis
        np.testing.assert_array_equal(out_affine, affine)
        moved, _, _ = run_checkpoint(path, np.moveaxis(lr, axis, 2), affine, halo=2)
        np.testing.assert_allclose(out, np.moveaxis(moved, 2, axis), rtol=1e-5, atol=1e-5)
        assert not np.allclose(out, plain)  # the tiny network is not symmetric in its axes
    with pytest.raises(ValueError, match="phase_encoding_axis"):
        run_checkpoint(path, lr, affine, phase_encoding_axis=3)
    sr = tmp_path / "sr.pt"
    _save_generator(sr)
    a, _, _ = run_checkpoint(sr, lr, affine, halo=2)
    b, _, info = run_checkpoint(sr, lr, affine, halo=2, phase_encoding_axis=0)
    np.testing.assert_array_equal(a, b)
    assert "phase_encoding_axis" not in info


def test_diffusion_checkpoint_samples_deterministically(tmp_path, head):
    lr, affine = head
    kwargs = dict(features=8, channel_mults=(1, 2), num_res_blocks=1, norm_groups=4,
                  condition_channels=3, attention_heads=2)
    torch.manual_seed(0)
    model = build_model("diffusion_unet", **kwargs)
    path = tmp_path / "ddpm.pt"
    save_checkpoint(path, model=model, arch_name="diffusion_unet", arch_kwargs=kwargs,
                    normalisation=NORMALISATION, degradation={"preset": "motion", "records": []},
                    extra={"task": "motion-ddpm",
                           "diffusion": {"kind": "linear", "num_steps": 50},
                           "prediction": "v", "neighbours": 1, "slice_axis": 2, "ddim_steps": 3,
                           "intensity_map": dict(INTENSITY_MAP)})
    a, a_affine, info = run_checkpoint(path, lr, affine, seed=3)
    b, _, _ = run_checkpoint(path, lr, affine, seed=3)
    assert a.shape == lr.shape and info["steps"] == 3 and info["slice_axis"] == 2
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a_affine, affine)


def test_refusals(tmp_path, head):
    lr, affine = head
    path = tmp_path / "gan3p.pt"
    _save_generator(path)
    with pytest.raises(CheckpointError, match="sha256"):
        run_checkpoint(path, lr, affine, expected_sha256="0" * 64)
    with pytest.raises(ValueError, match="consistency must be one of"):
        run_checkpoint(path, lr, affine, consistency="enforce")
    critic = build_model("resnet_critic", widths=(4, 8))
    save_checkpoint(tmp_path / "critic.pt", model=critic, arch_name="resnet_critic",
                    arch_kwargs={"widths": (4, 8)})
    with pytest.raises(CheckpointError, match="not an image-to-image model"):
        run_checkpoint(tmp_path / "critic.pt", lr, affine)
    thick = tmp_path / "thick.pt"
    _save_generator(thick, preset="sr-thick-x2")
    with pytest.raises(CheckpointError, match="thick"):
        run_checkpoint(thick, lr, affine)


def test_lowres_method_of_records_and_presets():
    assert lowres_method_of({"preset": "sr-box-x2-rician"})[0].value == "box"
    assert lowres_method_of({"preset": "x", "records": [{"kind": "noise"},
                                                        {"kind": "lowres", "method": "nearest"}]}
                            )[0].value == "nearest"
    assert lowres_method_of({"preset": "motion"}) == (None, None)
    assert lowres_method_of(None) == (None, None)


def test_run_checkpoint_image_records_the_step_and_keeps_the_header(tmp_path, head):
    import nibabel as nib

    from bids_enhance.inference import run_checkpoint_image

    lr, affine = head
    path = tmp_path / "gan3p.pt"
    digest = _save_generator(path)
    img = nib.Nifti1Image(lr, affine)
    img.set_sform(affine, 2)
    img.set_qform(affine, 0)
    img.header.set_xyzt_units("mm", "sec")
    result, info = run_checkpoint_image(path, img, expected_sha256=digest, step="superres",
                                        model_summary={"name": "m"})
    out, out_affine, _ = run_checkpoint(path, lr, affine, halo="auto")
    np.testing.assert_array_equal(result.get_fdata(dtype=np.float32), out)
    np.testing.assert_allclose(result.affine, out_affine, atol=1e-6)
    assert int(result.header["sform_code"]) == 2 and int(result.header["qform_code"]) == 1
    assert result.header.get_xyzt_units() == ("mm", "sec")
    assert info["step"] == "superres" and info["kind"] == "generative"
    assert info["model_card"] == {"name": "m"} and info["sha256"] == digest
    assert info["shape_in"] == list(lr.shape) and info["shape_out"] == list(out.shape)
    assert info["voxel_size_out"] == pytest.approx([v / 2 for v in info["voxel_size_in"]])
    assert list(info)[-7:] == ["step", "kind", "model_card", "shape_in", "shape_out",
                               "voxel_size_in", "voxel_size_out"]  # the sidecar's order
    json.dumps(info)
    _, bare = run_checkpoint_image(path, img)
    assert "model_card" not in bare and bare["step"] == "generative"
