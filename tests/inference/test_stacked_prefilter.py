"""A prefilter that stacks its output with its input (and σ): the network of the learned
denoiser sees what ODCT3D removed (issue 12). Degradation, patch stream, generator skip,
sliding inference and ``--denoise-method learned`` all carry the channels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bids_enhance.classical import denoise
from bids_enhance.degrade import (
    Prefilter,
    add_rician_noise,
    degrade,
    input_channels,
    prefilter_of,
    step_from_record,
)
from bids_enhance.degrade.prefilter import SIGMA_GAIN
from bids_enhance.inference import run_checkpoint
from bids_enhance.inference.sliding import infer_volume
from bids_enhance.models import build_model
from tests.generative_helpers import save_tiny_generator
from tests.inference.conftest import smooth_volume


@pytest.fixture()
def noisy():
    clean = smooth_volume((24, 24, 24))
    return add_rician_noise(clean, sigma=0.04, rng=np.random.default_rng(0)).astype(np.float32)


def test_stacks_are_filtered_input_and_sigma_in_that_order(noisy):
    filtered = Prefilter().apply(noisy, sigma=0.04)
    two, record = Prefilter(stack="input").apply_with_record(noisy, sigma=0.04)
    assert two.shape == (2, *noisy.shape) and two.dtype == np.float32
    np.testing.assert_array_equal(two[0], filtered)
    np.testing.assert_array_equal(two[1], noisy)
    assert record["stack"] == "input" and record["sigma"] == pytest.approx(0.04)
    three = Prefilter(stack="input+sigma").apply(noisy)  # σ estimated
    assert three.shape == (3, *noisy.shape)
    assert np.ptp(three[2]) == 0 and 0.02 < three[2, 0, 0, 0] / SIGMA_GAIN < 0.06
    # the record replays, and the presets say how many channels a network gets
    step = Prefilter(stack="input+sigma")
    assert step_from_record(step.to_record()) == step
    assert input_channels("denoise-rician-wide-odct-stack") == 2
    assert input_channels("denoise-rician-wide-odct-stack-sigma") == 3
    assert input_channels("denoise-rician-wide-odct") == input_channels("motion") == 1
    with pytest.raises(ValueError, match="stack must be one of"):
        Prefilter(stack="sigma")


def test_the_prinlm_stack_adds_pri_nlm_with_the_same_sigma(noisy):
    """``input+prinlm``: the Wiener-filtered volume, the input and PRI-NLM's output, all with
    the σ the first filter used (estimated once)."""
    step = Prefilter(method="odct3d-wiener", stack="input+prinlm")
    three, record = step.apply_with_record(noisy)
    assert three.shape == (3, *noisy.shape) and three.dtype == np.float32
    np.testing.assert_array_equal(three[0], Prefilter(method="odct3d-wiener").apply(
        noisy, sigma=record["sigma"]))
    np.testing.assert_array_equal(three[1], noisy)
    nlm, _ = denoise(noisy, method="prinlm", noise_model="rician", sigma=record["sigma"])
    np.testing.assert_array_equal(three[2], np.asarray(nlm, dtype=np.float32))
    assert input_channels("denoise-rician-wide-odct-wiener-stack-prinlm") == 3
    assert step_from_record(step.to_record()) == step


def test_a_stacked_preset_degrades_to_channels():
    clean = smooth_volume((20, 20, 20))
    out, _, records = degrade(clean, np.eye(4), steps="denoise-rician-wide-odct-stack", rng=3)
    assert out.shape == (2, 20, 20, 20)
    assert records[-1]["kind"] == "prefilter" and records[-1]["stack"] == "input"


def test_the_image_skip_carries_the_first_channel():
    net = build_model("rrdb_generator", in_channels=3, features=8, growth=4, num_blocks=1,
                      scale=1, image_skip=True, space_to_depth=True)
    with torch.no_grad():
        net.conv_last.weight.zero_()
        net.conv_last.bias.zero_()
        x = torch.rand(1, 3, 8, 8, 8)
        torch.testing.assert_close(net(x), x[:, :1])
    with pytest.raises(ValueError, match="in_channels >= out_channels"):
        build_model("rrdb_generator", in_channels=1, out_channels=2, image_skip=True)


def test_patches_of_several_channels_equal_the_whole_volume(noisy):
    torch.manual_seed(0)
    net = build_model("rrdb_generator", in_channels=2, features=8, growth=4, num_blocks=1,
                      scale=1, image_skip=True, space_to_depth=True)
    stack = np.stack([noisy, noisy ** 2])[:, :, :23, :22]  # odd sizes too
    whole = infer_volume(net, stack, scale=1, halo=8)
    patches = infer_volume(net, stack, scale=1, patch_size=12, halo=8)
    assert whole.shape == (24, 23, 22)
    np.testing.assert_allclose(patches, whole, atol=1e-4)


def test_a_stacked_denoiser_runs_as_the_learned_method(tmp_path, noisy):
    path = tmp_path / "checkpoint.pt"
    save_tiny_generator(path, task="denoise", scale=1, in_channels=2, zero=True,
                        image_skip=True, preset="denoise-rician-wide-odct-stack")
    volume = noisy * 250.0  # the caller's units
    out, info = denoise(volume, method="learned", sigma=10.0, checkpoint=str(path),
                        aggregate=None)  # the network alone, not averaged with PRI-NLM
    # a zero residual returns the filtered channel: ODCT3D with the σ given, clipped at 0
    expected, _ = denoise(volume, method="odct3d", sigma=10.0)
    np.testing.assert_allclose(out, np.maximum(expected, 0), rtol=1e-4, atol=1e-3)
    assert info["model"]["prefilter"] == "odct3d"
    assert info["model"]["prefilter_stack"] == "input"
    assert prefilter_of("denoise-rician-wide-odct-stack").channels == 2


def test_a_stacked_prefilter_before_an_x2_model_is_refused(tmp_path, noisy):
    from bids_enhance.models import CheckpointError

    path = tmp_path / "checkpoint.pt"
    save_tiny_generator(path, task="denoise", scale=2, in_channels=2,
                        preset="denoise-rician-wide-odct-stack")
    with pytest.raises(CheckpointError, match="only a scale-1 generator"):
        run_checkpoint(path, noisy, np.eye(4))
