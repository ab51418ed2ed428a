"""Validation during training measures what a participant run would produce: the same
inference path (``infer_volume``) and the same cubic baseline (``upsample_baseline``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bids_enhance.degrade import degrade
from bids_enhance.inference.sliding import infer_volume
from bids_enhance.inference.superres import upsample_baseline
from bids_enhance.metrics.quality import evaluate
from bids_enhance.models import build_model
from bids_enhance.training.seeding import numpy_generator
from bids_enhance.training.validation import SuperResolutionEvaluator
from tests.training.training_helpers import volumes


@pytest.mark.parametrize(("scale", "preset"), [(2, "sr-box-x2"), (1, "denoise-rician")])
def test_validation_uses_the_participant_inference_and_baseline(scale, preset):
    vols = volumes(1, shape=(32, 32, 32))
    torch.manual_seed(0)
    model = build_model("rrdb_generator", features=8, growth=4, num_blocks=1, scale=scale)
    evaluator = SuperResolutionEvaluator(vols, degradation=preset, scale=scale, seed=3,
                                         crop=None)
    metrics = evaluator(model)

    vol = vols[0]
    degraded, _, _ = degrade(vol.data, vol.affine, steps=preset,
                             rng=numpy_generator(3, "validation", vol.subject))
    out = infer_volume(model, degraded, scale=scale)
    mask = evaluator.items[0][3]  # the head mask of the (uncropped) reference
    expected = evaluate(vol.data, out, mask=mask)
    assert metrics["psnr"] == pytest.approx(expected["psnr"], abs=1e-4)
    if scale == 2:
        cubic, _ = upsample_baseline(degraded, np.eye(4), kind="cubic", method="box")
        base = evaluate(vol.data, cubic, mask=mask)
    else:
        base = evaluate(vol.data, degraded, mask=mask)
    assert metrics["baseline_psnr"] == pytest.approx(base["psnr"], abs=1e-4)
    assert metrics["psnr_gain"] == pytest.approx(metrics["psnr"] - metrics["baseline_psnr"])
