"""The learned denoiser (``--denoise-method learned``): a scale-1 generator trained with
``train --model denoise``, run like a classical method of :func:`bids_enhance.classical.denoise`.

A network trained on a preset that ends in a :class:`~bids_enhance.degrade.Prefilter` refines
that classical filter's output (σ as the caller gives it, else estimated); one whose prefilter
stacks also sees the noisy input and, with ``"input+sigma"``, σ. Otherwise the network is blind
to the noise level: σ is estimated by :func:`~bids_enhance.classical.denoise` for the sidecar and
the report (the same record as the classical methods).
Inference is :func:`~bids_enhance.inference.run.run_checkpoint`, the path of every generative
step (intensity normalisation recorded in the checkpoint, memory-planned patches, Gaussian
blending).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["learned_denoise"]


def learned_denoise(volume, *, sigma: float | None = None, noise_model: str = "rician",
                    device: Any = "cpu", checkpoint: str | os.PathLike[str] | None = None,
                    sha256: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Denoise a 3D volume with a trained denoiser.

    ``checkpoint``: a ``train --model denoise`` checkpoint (or the folder holding it with its
    model card); ``None`` runs the shipped default weights. ``sha256``: refuse the file unless
    it matches (the workflow passes the sha256 verified when the run started). ``sigma`` (in the
    volume's units; None: estimated) is the σ of the model's prefilter, if it has one (and the σ
    channel of an ``"input+sigma"`` stack); ``noise_model`` is accepted for the interface of the
    classical methods (Rician output is clipped at 0). Returns ``(out, model)``: the denoised volume (same container and shape,
    float32; Rician magnitudes stay ≥ 0) and a JSON-ready record of the model that ran.
    """
    import torch

    from bids_enhance.degrade import prefilter_of
    from bids_enhance.inference.run import run_checkpoint
    from bids_enhance.inference.weights import resolve_model
    from bids_enhance.steps import DENOISE

    resolved = resolve_model(DENOISE.name, checkpoint)
    if sha256 is not None and sha256 != resolved.sha256:
        raise ValueError(f"checkpoint {resolved.path} has sha256 {resolved.sha256}, not the "
                         f"{sha256} this run was started with; was it replaced?")
    as_tensor = torch.is_tensor(volume)
    data = volume.detach().cpu().numpy() if as_tensor else np.asarray(volume)
    if data.ndim != 3:
        raise ValueError(f"volume must be 3D, got shape {data.shape}")
    data = data.astype(np.float32, copy=False)
    prefilter = prefilter_of(resolved.degradation)
    # a refinement of a classical filter: run_checkpoint filters first (with this σ), as in
    # training, and hands the network the filtered volume (or it stacked with the input and σ)
    out, _, info = run_checkpoint(resolved.path, data, np.eye(4),
                                  expected_sha256=resolved.sha256, device=device,
                                  consistency=None, prefilter=True, sigma=sigma)
    if noise_model == "rician":
        np.maximum(out, 0.0, out=out)  # magnitudes
    model = {
        "name": resolved.summary.get("name"), "sha256": resolved.sha256,
        "origin": resolved.origin, "task": resolved.task, "architecture": resolved.architecture,
        "card": resolved.card, "summary": dict(resolved.summary),
        "prefilter": prefilter.method if prefilter is not None else None,
        "prefilter_stack": prefilter.stack if prefilter is not None else None,
        "mode": info.get("mode"), "patch_size": info.get("patch_size"),
        "seconds": info.get("seconds"),
    }
    out = out.astype(np.float32, copy=False)
    if as_tensor:
        return torch.from_numpy(out).to(volume.device), model
    return out, model
