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

By default (``aggregate="prinlm"``) the network's output is then averaged with PRI-NLM's, with
the weight that minimises Stein's unbiased risk estimate of the error on 2 cubes of
:data:`SURE_CUBE`³ voxels spread over the head (:mod:`bids_enhance.classical.sure`): on contrasts the
network never saw (proton density) PRI-NLM takes most of the weight, on T1w little. Where
SURE estimates that the average would gain less than :data:`BLEND_MIN_GAIN_DB` over the network
alone, PRI-NLM is not run on the whole head and the network's output is returned (its weight
is recorded as 0, SURE's weight beside it): on most T1w, T2w and FLAIR heads that saves a
whole-head PRI-NLM (about a fifth of the time) for a few hundredths of a dB.

Where the head fills less of the field of view (:func:`head_box`), all of this runs on the
head's bounding box plus :data:`HEAD_MARGIN` voxels, with the whole image's σ and intensity
normalisation, and the air outside the box takes :func:`outside_fill` (a local mean): the time
follows the head's size, not the field of view's.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from bids_enhance.steps import DENOISE_METHODS, LEARNED_AGGREGATES, LEARNED_METHODS

LOGGER = logging.getLogger(__name__)

__all__ = ["BLEND_MIN_GAIN_DB", "CROP_BELOW", "HEAD_MARGIN", "OUTSIDE_WINDOW", "SIGNAL_ABOVE",
           "SURE_CUBE", "SURE_HALO", "SURE_MARGIN", "SURE_OCTANTS", "head_box",
           "learned_denoise", "outside_fill"]

#: The network, its prefilter and PRI-NLM run on the bounding box of the head, grown by this
#: many voxels … (the head: the head mask, and wherever a local estimate of the signal exceeds
#: SIGNAL_ABOVE · σ; with the head mask alone, the noisy 256³ T2w's mask shrank at 6–12 % noise
#: and a box grown by 8 voxels left 23–26 thousand head voxels outside, −0.08 dB; with both,
#: none on the benchmark volumes, and the head's PSNR within ±0.0008 dB of the whole image's:
#: docs/benchmarks/denoise.md, "The head's box")
HEAD_MARGIN = 8
#: … when that box holds less than this fraction of the image's voxels (else the whole image:
#: most 1 mm heads fill their field of view; a 256³ T2w holds its head in 40 %)
CROP_BELOW = 0.85
#: the local signal (:func:`outside_fill`) above which a voxel counts as head for the box, in σ
SIGNAL_ABOVE = 1.5
#: The air outside the box: a local estimate over this many voxels along each axis
OUTSIDE_WINDOW = 5
OUTSIDE_DESCRIPTION = (f"the local mean over {OUTSIDE_WINDOW}³ voxels (Rician: the square root "
                       "of the local mean of the squares less 2σ², clipped at 0)")

#: SURE weighs the two outputs on cubes of this edge at the centres of SURE_OCTANTS of the head
#: (both run twice on each, with a margin of SURE_MARGIN voxels that does not count: the
#: network's output near a crop's faces is not what it is inside the head, and with a margin of 4
#: SURE gave PRI-NLM too little weight on the MNI PD stand-in). A whole head costs one PRI-NLM
#: more and both denoisers twice on 2 crops of 64³ voxels (2 cubes of 40³ since 2026-12-07,
#: evening; 4 cubes before, 8 of 32³ before those: −0.008 dB on average over 21 cases for about
#: −8 s; docs/benchmarks/denoise.md, "Speed of the learned denoiser").
SURE_CUBE = 40
SURE_MARGIN = 12
#: the octants (corners of the 2×2×2 split of the head's bounding box) that hold a cube: two
#: opposite ones, so every half of the head (left/right, front/back, top/bottom) holds one
SURE_OCTANTS: tuple[tuple[int, int, int], ...] = ((0, 0, 0), (1, 1, 1))
#: the average with PRI-NLM is applied only where SURE estimates it gains at least this much
#: (dB of RMSE, 20·log10(network / average)) over the network alone; else PRI-NLM does not run
#: on the whole head (``min_gain_db``'s default; docs/benchmarks/denoise.md, "Skipping PRI-NLM
#: where it cannot pay": SURE's estimate on its two cubes is rough, so the 8 held-out cases of
#: 15 it skips cost 0.004–0.036 dB of head PSNR; at 0.05 dB a low-noise T1wGd brain lost 0.14)
BLEND_MIN_GAIN_DB: float = DENOISE_METHODS[LEARNED_METHODS[0]].parameters["min_gain_db"]
#: mirror-padded context of the network's runs on the crops: none, the margin is real context
#: (the inference default, 8 voxels, gave the same weight on the otsu head and 2.1× the voxels
#: per crop run)
SURE_HALO: int | str = 0


def learned_denoise(volume, *, sigma: float | None = None, noise_model: str = "rician",
                    device: Any = "cpu", checkpoint: str | os.PathLike[str] | None = None,
                    sha256: str | None = None, aggregate: str | None = LEARNED_AGGREGATES[0],
                    min_gain_db: float = BLEND_MIN_GAIN_DB) -> tuple[Any, dict[str, Any]]:
    """Denoise a 3D volume with a trained denoiser.

    ``checkpoint``: a ``train --model denoise`` checkpoint (or the folder holding it with its
    model card); ``None`` runs the shipped default weights. ``sha256``: refuse the file unless
    it matches (the workflow passes the sha256 verified when the run started). ``sigma`` (in the
    volume's units; None: estimated) is the σ of the model's prefilter, if it has one (and the σ
    channel of an ``"input+sigma"`` stack); ``noise_model`` is accepted for the interface of the
    classical methods (Rician output is clipped at 0). ``aggregate``: ``"prinlm"`` averages the
    network's output with PRI-NLM's (same σ) with the SURE-optimal weight; ``None``: the network
    alone. ``min_gain_db``: the average is applied only where SURE estimates that it gains at
    least this much over the network alone (else PRI-NLM does not run on the whole image);
    0: whenever PRI-NLM's weight is above 0.
    Returns ``(out, model)``: the denoised volume (same container and shape, float32;
    Rician magnitudes stay ≥ 0) and a JSON-ready record of the model that ran (with
    ``aggregate``: the method, its weight and SURE's RMSE of each output, in volume units).
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
    if aggregate is not None and aggregate not in LEARNED_AGGREGATES:
        raise ValueError(f"aggregate must be one of {list(LEARNED_AGGREGATES)} or None, got "
                         f"{aggregate!r}")
    if isinstance(min_gain_db, bool) or not (isinstance(min_gain_db, (int, float))
                                             and np.isfinite(min_gain_db) and min_gain_db >= 0):
        raise ValueError(f"min_gain_db must be a finite number >= 0 (dB), got {min_gain_db!r}")
    as_tensor = torch.is_tensor(volume)
    data = volume.detach().cpu().numpy() if as_tensor else np.asarray(volume)
    if data.ndim != 3:
        raise ValueError(f"volume must be 3D, got shape {data.shape}")
    data = data.astype(np.float32, copy=False)
    prefilter = prefilter_of(resolved.degradation)
    # a refinement of a classical filter: run_checkpoint filters first (with this σ), as in
    # training, and hands the network the filtered volume (or it stacked with the input and σ)
    def network(vol: np.ndarray, scale: float | None = None, halo: int | str = "auto",
                log_level: int = logging.DEBUG) -> tuple[np.ndarray, dict]:
        # scale: the whole image's normalisation, for a crop of it (its own percentiles would
        # scale it, and so change what the network does, differently); a crop's run inside
        # SURE logs its progress at DEBUG
        own = scale is None
        result, _, record = run_checkpoint(
            resolved.path, vol if own else vol / np.float32(scale), np.eye(4),
            expected_sha256=resolved.sha256, device=device, consistency=None, normalise=own,
            prefilter=True, sigma=sigma if own or sigma is None else sigma / scale, halo=halo,
            log_level=logging.INFO if own else log_level)
        if not own:
            result *= np.float32(scale)
        if noise_model == "rician":
            np.maximum(result, 0.0, out=result)  # magnitudes (PRI-NLM's are too, and so
        return result, record                    # their average)

    if sigma is None:
        from bids_enhance.classical import estimate_noise_sigma

        sigma = estimate_noise_sigma(data, noise_model=noise_model)  # the whole image's σ
    mask = _head_mask(data)
    box = head_box(mask | _signal_mask(data, sigma=sigma, noise_model=noise_model))
    if box is None:
        work, given_scale = data, None
    else:  # the head's box: the whole image's σ and normalisation, so the head is as before
        from bids_enhance.inference.run import normalisation_scale

        work = np.ascontiguousarray(data[box])
        given_scale = normalisation_scale(resolved.path, data, expected_sha256=resolved.sha256)
        LOGGER.info("learned denoiser: the head's bounding box plus %d voxels (%s of %s voxels) "
                    "runs; the air outside it takes %s", HEAD_MARGIN,
                    "×".join(str(b.stop - b.start) for b in box), "×".join(map(str, data.shape)),
                    OUTSIDE_DESCRIPTION)
    out, info = network(work, given_scale, log_level=logging.INFO)
    blend = None
    if aggregate is not None:
        from bids_enhance.classical import prinlm

        def classical(vol: np.ndarray) -> np.ndarray:
            return prinlm(vol, sigma=sigma, noise_model=noise_model, device=device)

        scale = given_scale if box is not None else float(info.get("normalisation_scale") or 1.0)
        blend = _sure_weight(data, lambda vol: network(vol, scale, SURE_HALO)[0], classical,
                             sigma=sigma, mask=mask)  # its own crops of the whole image
        gain_db = blend.gain_db  # SURE's estimate of the average's gain over the network
        applied = blend.weight > 0.0 and gain_db >= min_gain_db
        if applied:
            out = (1.0 - blend.weight) * out + blend.weight * classical(work)
        elif blend.weight > 0.0:
            LOGGER.info("learned denoiser: the average would gain an estimated %.3f dB < %.2f dB "
                        "over the network alone; PRI-NLM is not run on the whole image and the "
                        "network's output is kept", gain_db, min_gain_db)
    if box is not None:
        full = outside_fill(data, sigma=sigma, noise_model=noise_model)
        full[box] = out
        out = full
    model = {
        "name": resolved.summary.get("name"), "sha256": resolved.sha256,
        "origin": resolved.origin, "task": resolved.task, "architecture": resolved.architecture,
        "card": resolved.card, "summary": dict(resolved.summary),
        "prefilter": prefilter.method if prefilter is not None else None,
        "prefilter_stack": prefilter.stack if prefilter is not None else None,
        "mode": info.get("mode"), "patch_size": info.get("patch_size"),
        "seconds": info.get("seconds"),
    }
    if blend is not None:
        model["aggregate"] = {
            "method": aggregate, "weight": blend.weight if applied else 0.0,
            "sure_weight": blend.weight, "estimated_gain_db": gain_db,
            "min_gain_db": float(min_gain_db), "applied": applied,
            "sure_rmse": {"network": blend.rmse_first, aggregate: blend.rmse_second,
                          "average": blend.rmse_blend},
            "voxels": blend.voxels, "region": blend.region,
        }
    if box is not None:
        model["region"] = {"box": [[b.start, b.stop] for b in box], "shape": list(data.shape),
                           "margin": HEAD_MARGIN, "outside": OUTSIDE_DESCRIPTION}
    out = out.astype(np.float32, copy=False)
    if as_tensor:
        return torch.from_numpy(out).to(volume.device), model
    return out, model


def _coarse_step(shape: tuple[int, ...]) -> int:
    """Masks are computed on every other voxel of a volume of 128 voxels or more along every
    axis (fast), then repeated back to the full grid."""
    return 2 if min(shape) >= 128 else 1


def _full_grid(coarse: np.ndarray, step: int, shape: tuple[int, ...]) -> np.ndarray:
    full = np.repeat(np.repeat(np.repeat(coarse, step, 0), step, 1), step, 2)
    return full[:shape[0], :shape[1], :shape[2]]


def _head_mask(data: np.ndarray) -> np.ndarray:
    """:func:`~bids_enhance.image.mask.head_mask` of ``data`` (on the coarse grid of
    :func:`_coarse_step`); all of it when no head is found."""
    from bids_enhance.image.mask import head_mask

    step = _coarse_step(data.shape)
    mask = _full_grid(head_mask(data[::step, ::step, ::step]), step, data.shape)
    if not mask.any():
        mask = np.ones(data.shape, dtype=bool)
    return mask


def _signal_mask(data: np.ndarray, *, sigma: float, noise_model: str) -> np.ndarray:
    """Where :func:`outside_fill`'s local estimate of the signal exceeds
    :data:`SIGNAL_ABOVE` · σ (on the coarse grid of :func:`_coarse_step`): tissue that a noisy
    image's head mask can miss (a dim scalp at high noise), never pure noise (the mean of
    :data:`OUTSIDE_WINDOW`³ squared magnitudes of noise alone is 2σ² ± 0.18σ²)."""
    step = _coarse_step(data.shape)
    coarse = np.ascontiguousarray(data[::step, ::step, ::step])
    local = outside_fill(coarse, sigma=sigma, noise_model=noise_model)
    return _full_grid(local > SIGNAL_ABOVE * sigma, step, data.shape)


def _extent(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of ``mask``'s voxels along each axis (``mask`` not empty), from
    :func:`~bids_enhance.classical._common.bounding_box`."""
    import torch

    from bids_enhance.classical._common import bounding_box

    box = bounding_box(torch.from_numpy(np.ascontiguousarray(mask)))
    return np.array([b.start for b in box]), np.array([b.stop - 1 for b in box])


def head_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Where the network runs: the bounding box of the head ``mask`` grown by
    :data:`HEAD_MARGIN` voxels, its start on BM-DCT's reference grid (a multiple of
    :data:`~bids_enhance.classical.blockmatch.STRIDE`, so the blocks inside are the whole
    image's); None (the whole volume) when that box holds :data:`CROP_BELOW` of the voxels or
    more."""
    from bids_enhance.classical.blockmatch import STRIDE

    lo, hi = _extent(mask)
    box = tuple(slice(max(int(a) - HEAD_MARGIN, 0) // STRIDE * STRIDE,
                      min(int(b) + 1 + HEAD_MARGIN, n))
                for a, b, n in zip(lo, hi, mask.shape, strict=True))
    if np.prod([b.stop - b.start for b in box]) >= CROP_BELOW * mask.size:
        return None
    return box


def outside_fill(data: np.ndarray, *, sigma: float, noise_model: str) -> np.ndarray:
    """The denoised air outside :func:`head_box`: the local mean over
    :data:`OUTSIDE_WINDOW`³ voxels, for Rician magnitudes of the squares, less the noise's
    2σ², clipped at 0 (the second-moment estimator of the underlying signal)."""
    from scipy.ndimage import uniform_filter

    if noise_model == "rician":
        moment = uniform_filter(np.square(data), OUTSIDE_WINDOW, mode="mirror")
        moment -= np.float32(2.0 * sigma * sigma)
        np.maximum(moment, 0.0, out=moment)
        return np.sqrt(moment, out=moment)
    return uniform_filter(data, OUTSIDE_WINDOW, mode="mirror")


def _sure_weight(data: np.ndarray, network, classical, *, sigma: float, mask: np.ndarray):
    """PRI-NLM's weight against the network (:func:`~bids_enhance.classical.sure.sure_blend`),
    SURE summed over cubes of :data:`SURE_CUBE`³ voxels spread over the head ``mask`` (at the
    centres of :data:`SURE_OCTANTS` of its bounding box: cortex, white matter and ventricles
    alike), each run with a margin of :data:`SURE_MARGIN` voxels that does not count, and over
    the head's voxels only (Rician noise is near Gaussian in them)."""
    from bids_enhance.classical.sure import sure_blend

    lo, hi = _extent(mask)
    boxes = {}  # crop → the cube in it that counts (one per SURE_OCTANTS, fewer on a small volume)
    for corner in SURE_OCTANTS:
        centre = lo + (hi - lo) * (0.25 + 0.5 * np.array(corner))
        core = [int(np.clip(round(c) - SURE_CUBE // 2, 0, max(n - SURE_CUBE, 0)))
                for c, n in zip(centre, data.shape, strict=True)]
        crop = tuple(slice(max(c - SURE_MARGIN, 0), min(c + SURE_CUBE + SURE_MARGIN, n))
                     for c, n in zip(core, data.shape, strict=True))
        inner = tuple(slice(c - b.start, c - b.start + SURE_CUBE)
                      for c, b in zip(core, crop, strict=True))
        boxes[tuple((b.start, b.stop) for b in crop)] = (crop, inner)

    def pieces():
        for crop, inner in boxes.values():
            counted = np.zeros(data[crop].shape, dtype=bool)
            counted[inner] = True
            yield data[crop], counted & mask[crop]

    region = (f"{len(boxes)} cube(s) of {SURE_CUBE}³ voxels at the centres of "
              f"{len(SURE_OCTANTS)} of the 8 octants of the head")
    blend = sure_blend(network, classical, pieces(), sigma=sigma, region=region)
    LOGGER.info("learned denoiser: PRI-NLM weight %.3f by SURE on %s (estimated RMSE: network "
                "%.4g, PRI-NLM %.4g, average %.4g)", blend.weight, region, blend.rmse_first,
                blend.rmse_second, blend.rmse_blend)
    return blend
