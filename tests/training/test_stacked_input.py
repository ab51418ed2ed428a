"""Training on a stacking prefilter's preset (issue 12's guided denoiser): the patch streams
serve the filtered volume, the noisy input (and σ) as aligned channels, the generator is built
with that many input channels, and validation measures the gain over the filtered channel."""

from __future__ import annotations

import numpy as np
import torch
from training_helpers import tiny_config, volumes

from bids_enhance.degrade import degrade
from bids_enhance.training import (
    NumpyPatchStream,
    PairedPatchStream,
    PatchGeometry,
    build_trainer,
)
from bids_enhance.training.seeding import numpy_generator
from bids_enhance.training.validation import make_default_evaluator

PRESET = "denoise-rician-wide-odct-stack-sigma"
GEOMETRY = PatchGeometry(scale=1, patch_size=(12, 12, 12))


def test_both_streams_serve_aligned_channels():
    vols = volumes(1)
    whole, _, _ = degrade(vols[0].data, vols[0].affine, steps=PRESET,
                          rng=numpy_generator(5, "degrade", vols[0].subject, 0))
    for cls in (PairedPatchStream, NumpyPatchStream):
        stream = cls(vols, degradation=PRESET, geometry=GEOMETRY, seed=5,
                     samples_per_volume=2, queue_length=2)
        source, target = stream.next_batch(2)
        assert source.shape == (2, 3, 12, 12, 12) and target.shape == (2, 1, 12, 12, 12)
        for patch, clean in zip(source.numpy(), target.numpy()[:, 0], strict=True):
            # find the patch in the whole volume by its clean target, then compare the channels
            hits = [(i, j, k) for i in range(13) for j in range(13) for k in range(13)
                    if np.array_equal(vols[0].data[i:i + 12, j:j + 12, k:k + 12], clean)]
            assert hits, "target patch not found in the volume"
            i, j, k = hits[0]
            np.testing.assert_array_equal(patch, whole[:, i:i + 12, j:j + 12, k:k + 12])


def test_a_trainer_on_a_stacked_preset_takes_its_channels():
    cfg = tiny_config("denoise", degradation=PRESET, generator={
        "features": 8, "growth": 4, "num_blocks": 1, "image_skip": True,
        "space_to_depth": True})
    trainer = build_trainer(cfg)
    assert trainer.arch_kwargs["in_channels"] == 3
    stream = PairedPatchStream(volumes(1), degradation=PRESET, geometry=GEOMETRY, seed=1,
                               samples_per_volume=2, queue_length=2)
    source, target = stream.next_batch(2)
    losses = trainer.train_step(source, target, 0)
    assert np.isfinite(float(losses["l1"]))
    # validation's baseline is the filtered channel: a zeroed residual gains exactly nothing
    with torch.no_grad():
        trainer.generator.conv_last.weight.zero_()
        trainer.generator.conv_last.bias.zero_()
    metrics = make_default_evaluator(trainer, volumes(1, first_seed=7))(trainer.generator)
    assert abs(metrics["psnr_gain"]) < 1e-3
