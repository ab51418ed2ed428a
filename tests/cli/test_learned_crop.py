"""The learned denoiser on a head that fills little of its field of view (issue 12): the
network, its BM-DCT prefilter and PRI-NLM run on the head's bounding box plus a margin, with
the whole image's σ and normalisation, and the air outside takes a local mean — the head's
voxels get what the whole image would have given them."""

from __future__ import annotations

import numpy as np
import pytest

from bids_enhance.inference import learned
from bids_enhance.inference.learned import (
    HEAD_MARGIN,
    _head_mask,
    head_box,
    learned_denoise,
    outside_fill,
)
from tests.conftest import phantom
from tests.generative_helpers import save_tiny_generator, write_model_card


def small_head_in_air(shape=(90, 84, 78), head=(36, 40, 34), at=(20, 30, 24), sigma=3.0,
                      seed=0) -> np.ndarray:
    """A phantom head in a wide field of view, Rician noise of ``sigma`` everywhere."""
    rng = np.random.default_rng(seed)
    clean = np.zeros(shape, np.float32)
    clean[tuple(slice(a, a + n) for a, n in zip(at, head, strict=True))] = phantom(head)
    noisy = np.hypot(clean + rng.normal(0, sigma, shape), rng.normal(0, sigma, shape))
    return noisy.astype(np.float32)


@pytest.fixture(scope="module")
def stack_denoiser(tmp_path_factory):
    """A tiny random refinement of BM-DCT that also sees the noisy input (the shipped design)."""
    folder = tmp_path_factory.mktemp("stack") / "tiny_stack"
    folder.mkdir()
    sha = save_tiny_generator(folder / "checkpoint.pt", task="denoise", scale=1, in_channels=2,
                              preset="denoise-rician-wide-blockmatch-stack", image_skip=True)
    write_model_card(folder, name="tiny_stack", sha256=sha, task="denoise")
    return folder / "checkpoint.pt"


def test_head_box_is_the_head_plus_a_margin_on_bm_dcts_grid():
    mask = np.zeros((90, 84, 78), bool)
    mask[20:56, 30:70, 24:58] = True
    box = head_box(mask)
    assert box is not None
    for b, lo, hi, n in zip(box, (20, 30, 24), (56, 70, 58), mask.shape, strict=True):
        assert b.start % 3 == 0 and lo - HEAD_MARGIN - 2 <= b.start <= lo - HEAD_MARGIN
        assert b.stop == min(hi + HEAD_MARGIN, n)
    # a head that fills its field of view runs whole (no crop to gain from)
    full = np.zeros((60, 60, 60), bool)
    full[5:55, 4:56, 6:54] = True
    assert head_box(full) is None
    assert head_box(np.ones((40, 40, 40), bool)) is None


def test_outside_fill_is_near_zero_in_noise_and_keeps_a_plateau():
    rng = np.random.default_rng(1)
    sigma = 2.0
    air = np.hypot(rng.normal(0, sigma, (40, 40, 40)), rng.normal(0, sigma, (40, 40, 40)))
    fill = outside_fill(air.astype(np.float32), sigma=sigma, noise_model="rician")
    assert fill.dtype == np.float32 and (fill >= 0).all()
    assert fill.mean() < 0.35 * sigma < air.mean() / 3  # the Rayleigh floor (1.25σ) is gone
    plateau = np.hypot(50 + rng.normal(0, sigma, (30,) * 3), rng.normal(0, sigma, (30,) * 3))
    filled = outside_fill(plateau.astype(np.float32), sigma=sigma, noise_model="rician")
    assert abs(float(filled.mean()) - 50.0) < 0.2
    gauss = outside_fill(np.full((20,) * 3, 7.0, np.float32), sigma=sigma, noise_model="gaussian")
    np.testing.assert_allclose(gauss, 7.0, rtol=1e-6)


def test_cropped_run_gives_the_head_what_the_whole_image_gives(stack_denoiser, monkeypatch):
    """BM-DCT's grid, the network and the whole image's normalisation: inside the head the
    cropped run gives what the whole-image run gives; outside the box, the local-mean fill."""
    noisy = small_head_in_air()
    cropped, model = learned_denoise(noisy, checkpoint=stack_denoiser, aggregate=None, sigma=3.0)
    monkeypatch.setattr(learned, "CROP_BELOW", 0.0)  # never crop: the whole image runs
    whole, plain = learned_denoise(noisy, checkpoint=stack_denoiser, aggregate=None, sigma=3.0)
    assert "region" not in plain
    region = model["region"]
    box = tuple(slice(a, b) for a, b in region["box"])
    assert region["shape"] == list(noisy.shape) and region["margin"] == HEAD_MARGIN
    assert np.prod([b.stop - b.start for b in box]) < 0.5 * noisy.size
    assert cropped.shape == noisy.shape and cropped.dtype == np.float32
    head = _head_mask(noisy)
    assert head[box].sum() == head.sum()  # the whole head lies in the box
    # the same up to BM-DCT's near-tie groups near the box's faces: a mean difference of 2e-5
    # of the range here; scaling the box by its own percentiles (2e-3) or moving BM-DCT's grid
    # off the image's (5e-3) is a hundred times that
    diff = np.abs(cropped - whole)[head] / float(whole.max())
    assert diff.mean() < 1e-4 and diff.max() < 5e-3
    outside = np.ones(noisy.shape, bool)
    outside[box] = False
    fill = outside_fill(noisy, sigma=3.0, noise_model="rician")
    np.testing.assert_array_equal(cropped[outside], fill[outside])


def test_a_dim_head_the_mask_misses_still_lies_in_the_box():
    """At high noise a head mask can miss dim tissue; the box also holds wherever the local
    signal exceeds SIGNAL_ABOVE·σ, so that tissue is denoised, not filled with a local mean."""
    from bids_enhance.inference.learned import _signal_mask

    rng = np.random.default_rng(2)
    shape, sigma = (96, 90, 84), 3.0
    clean = np.zeros(shape, np.float32)
    clean[30:60, 30:62, 28:56] = phantom((30, 32, 28))       # the bright head
    clean[8:30, 30:62, 28:56] = 6.0                           # a dim slab (2σ) beside it
    noisy = np.hypot(clean + rng.normal(0, sigma, shape), rng.normal(0, sigma, shape))
    noisy = noisy.astype(np.float32)
    mask = _head_mask(noisy)
    assert not mask[8:22].any()  # the mask misses most of the slab …
    box = head_box(mask | _signal_mask(noisy, sigma=sigma, noise_model="rician"))
    assert box is not None and box[0].start <= 8  # … the box holds it all
    # … and pure noise never counts as signal
    assert not _signal_mask(noisy[:, :, 70:], sigma=sigma, noise_model="rician")[:, :20].any()


def test_participant_run_records_the_region_in_sidecar_report_and_methods(tmp_path,
                                                                         stack_denoiser):
    import json

    from bids_enhance.cli.run import main
    from tests.conftest import write_bids

    noisy = small_head_in_air()
    bids = write_bids(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": noisy})
    out = tmp_path / "out"
    assert main([str(bids), str(out), "participant", "-w", str(tmp_path / "w"), "--nprocs",
                 "1", "--skip-bids-validation", "--denoise-method", "learned",
                 "--checkpoint", f"denoise={stack_denoiser.parent}"]) == 0
    meta = json.loads((out / "sub-01/anat/sub-01_desc-denoised_T1w.json").read_text())
    region = meta["EnhancementSteps"][0]["NetworkRegion"]
    assert region["Shape"] == list(noisy.shape) and region["Margin"] == HEAD_MARGIN
    assert all(0 <= a < b <= n for (a, b), n in zip(region["Box"], noisy.shape, strict=True))
    assert "local mean" in region["Outside"]
    edges = "×".join(str(b - a) for a, b in region["Box"])
    report = (out / "sub-01.html").read_text()
    assert f"the head's bounding box plus {HEAD_MARGIN} voxels ({edges} of 90×84×78" in report
    methods = (out / "logs" / "CITATION.md").read_text()
    assert f"bounding box grown by {HEAD_MARGIN} voxels" in methods
