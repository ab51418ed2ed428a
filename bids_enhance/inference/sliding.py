"""Whole-volume or overlapping-patch inference of a 3D image-to-image network, with blending.

:func:`infer_volume` runs a network that maps ``(B, 1, X, Y, Z)`` to ``(B, 1, sX, sY, sZ)`` on a
whole volume when the memory estimate fits the budget, otherwise on overlapping patches:

1. the volume is mirror-padded by a **halo** of ``h`` input voxels (half-sample symmetric
   extension, ``numpy.pad(mode="symmetric")``, i.e. a mirror about the field-of-view boundary),
   in both modes, so border voxels see image content instead of the convolutions' zero padding;
2. the volume is tiled by **cores** of ``P`` voxels per axis with ``round(overlap · P)`` voxels
   of overlap between neighbours (the last core on an axis ends at the volume's edge); each patch
   sent to the network is its core plus the halo on every side, and only the core's output
   (``s·P`` voxels) is kept. :func:`plan_inference` picks the tiling (slabs, columns or boxes)
   that fits the memory budget with the least work — e.g. a 176×240×256 head in 16 GB: five
   176×240×64 cores, 1.8× the input's voxels, where the largest cubes that fit (144³) would
   need twelve and 4.6×;
3. the cores' outputs are **blended** with a separable weight window (``gaussian``: σ = P/8 as
   MONAI's importance map; ``cosine``: flat with raised-cosine ramps over the overlap, a partition
   of unity) and divided by the summed weights, so a constant network output is reproduced
   exactly. Because the tiling is a Cartesian product of per-axis starts, the summed weights are
   the outer product of three 1D sums: no weight volume is stored.

**Halo and overlap.** With ``halo`` ≥ the receptive radius
(:func:`~bids_enhance.inference.memory.receptive_radius`: 49 input voxels for the thesis'
3-RRDB generator) patch mode equals whole-volume mode to float rounding, but a 49-voxel halo
makes a 64³ core cost (162/64)³ ≈ 16 times its own work. The *effective* reach is far shorter:
running the 64/32/3 generator on a zero-padded window and comparing with the whole volume, the
error at ``d`` voxels from the window's edge falls to 4e-4 of the output range at ``d = 4`` with
the default initialisation, and with RRDB weights ten times stronger (standard Kaiming instead of
ESRGAN's 0.1 scaling — a pessimistic stand-in for trained weights) to 1e-3 at ``d = 7``, 4e-4 at
``d = 8``, 1e-5 at ``d = 11``, float noise from ``d = 14``. Blending then weights each patch's
edge voxels down (Gaussian: e⁻⁸ at a core's edge, against e⁻² for its neighbour), so with the
default :data:`HALO_CAP` = 8 and ``overlap=0.25`` the largest patch-vs-whole difference of that
pessimistic generator was 9e-7 of the output range with ``gaussian`` blending and 1e-5 with
``cosine`` (36³ input, 24³ cores; 32-feature variant: 3.7e-5; halo 4 gives 3e-3). The default
halo is therefore ``min(receptive radius, 8)``; whole-volume mode pads by the same halo, which
costs 1.4× on a 128³ input and 1.25× on a 176×240×256 head (``halo=0`` skips it).

An x2 :class:`~bids_enhance.models.RRDBGenerator` runs memory-lean (:meth:`~bids_enhance.models.RRDBGenerator.forward_lean`:
the x2 head in slabs), about half the memory of its plain forward, same result.

Precision: ``"auto"`` is bf16 autocast on CUDA (bf16-capable GPUs) and fp32 on CPU. The network
and its inputs use the ``channels_last_3d`` layout on every device (the caller's model gets its
own layout back afterwards): on the CPU, oneDNN's 3D convolutions run 1.0–1.6× faster in it
(docs/benchmarks/infer_speed.md). cuDNN runs deterministically and
``torch.use_deterministic_algorithms`` is on (warn-only) for the call; the patch order and every
sum are fixed, so results are reproducible run to run on one machine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from bids_enhance.device import resolve_device
from bids_enhance.image.volume import check_volume
from bids_enhance.inference.memory import HEAD_HALO, rrdb_head_slab
from bids_enhance.inference.planning import (
    HALO_CAP,
    MIN_PATCH,
    InferencePlan,
    default_halo,
    plan_inference,
)
from bids_enhance.inference.precision import (
    PRECISIONS,
    autocast_context,
    deterministic,
    resolve_precision,
)
from bids_enhance.inference.tiling import (
    BLEND_MODES,
    GAUSSIAN_SIGMA_SCALE,
    blend_window,
    tile_starts,
)

__all__ = [
    "BLEND_MODES",
    "GAUSSIAN_SIGMA_SCALE",
    "HALO_CAP",
    "MIN_PATCH",
    "PRECISIONS",
    "InferencePlan",
    "autocast_context",
    "blend_window",
    "default_halo",
    "deterministic",
    "infer_volume",
    "lean_forward",
    "plan_inference",
    "resolve_device",
    "resolve_precision",
    "tile_starts",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------

def _check_volume(volume: Any) -> np.ndarray:
    """float32, 3D, real, finite (sanitised inputs)."""
    return check_volume(volume, name="the volume").astype(np.float32, copy=False)


def _check_channels(volume: Any) -> np.ndarray:
    """float32 ``(C, X, Y, Z)``: a 3D volume as one channel, or a 4D stack of channels, each
    checked as :func:`_check_volume` does."""
    array = np.asarray(volume)
    if array.ndim == 4:
        return np.stack([_check_volume(channel) for channel in array])
    return _check_volume(array)[None]


def _prepare_model(model: nn.Module, device: torch.device,
                   channels_last: bool) -> tuple[nn.Module, bool]:
    """The model on ``device`` in eval mode (``channels_last_3d`` if asked), and whether its
    weights were converted to that layout here (to be converted back: the caller's model, e.g.
    one in training, keeps its own layout)."""
    model = model.to(device).eval()
    converted = False
    if channels_last:
        weights = [p for p in model.parameters() if p.dim() == 5]
        converted = not all(p.is_contiguous(memory_format=torch.channels_last_3d)
                            for p in weights)
        model = model.to(memory_format=torch.channels_last_3d)
    return model, converted


def lean_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The model's own memory-lean forward (``forward_lean``, e.g.
    :meth:`~bids_enhance.models.RRDBGenerator.forward_lean`) with the head slab of the memory
    plan, or None when it has none."""
    net = getattr(model, "_orig_mod", model)
    if not getattr(net, "supports_lean_forward", False):
        return None
    return net.forward_lean(x, slab=rrdb_head_slab(net, x.shape[2]), halo=HEAD_HALO)


def _forward(model: nn.Module, x: torch.Tensor, *, scale: int, plan: InferencePlan) -> torch.Tensor:
    if plan.channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    with autocast_context(plan.precision, plan.device):
        y = lean_forward(model, x)
        if y is None:
            y = model(x)
    expected = (x.shape[0], 1, *(scale * n for n in x.shape[2:]))
    if tuple(y.shape) != expected:
        raise ValueError(f"the model returned shape {tuple(y.shape)} for an input of shape "
                         f"{tuple(x.shape)}; expected {expected} (one output channel, scale "
                         f"{scale})")
    return y.float()


def infer_volume(model: nn.Module, volume: np.ndarray, *, scale: int,
                 patch_size: int | Sequence[int] | None = None, overlap: float = 0.25,
                 blend: str = "gaussian", device: torch.device | str = "cpu",
                 mem_budget_gb: float | None = None, batch_size: int = 1,
                 precision: str = "auto", halo: int | str = "auto",
                 channels_last: bool | None = None,
                 report: dict[str, Any] | None = None,
                 log_level: int = logging.INFO) -> np.ndarray:
    """Apply ``model`` to a 3D ``volume`` and return its ``scale``-times larger output.

    Args:
        model: maps ``(B, C, X, Y, Z)`` float32 to ``(B, 1, sX, sY, sZ)``; it is moved to
            ``device`` and runs in eval mode (its training mode is restored afterwards); with
            ``channels_last`` its parameters are in the ``channels_last_3d`` layout during the
            call (values unchanged; the layout it came with is restored).
        volume: ``(X, Y, Z)`` real array (normalised intensities, as in training), or
            ``(C, X, Y, Z)`` for a network of ``C`` input channels (e.g. a classical filter's
            output stacked with its input, :class:`~bids_enhance.degrade.Prefilter`); patches
            and padding act on the three spatial axes.
        scale: the model's upsampling factor (1 or 2 for the RRDB generator).
        patch_size: core edge in input voxels (int or three ints) forcing patch mode; None chooses
            whole-volume or patch mode from the memory budget (:func:`plan_inference`).
        overlap: overlap between neighbouring cores as a fraction of the core, in [0, 1).
        blend: ``"gaussian"`` or ``"cosine"`` (module docstring).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``.
        mem_budget_gb: memory budget in GB (``--mem`` on CPU, the GPU budget on CUDA); default a
            share of the free memory.
        batch_size: patches per forward pass.
        precision: ``"auto"`` (bf16 autocast on CUDA, fp32 on CPU), ``"fp32"``, ``"bf16"``,
            ``"fp16"``.
        halo: mirror-padded context in input voxels around the volume and each patch; ``"auto"``
            is :func:`default_halo`.
        channels_last: use ``channels_last_3d``; None = yes (on the CPU too).
        report: a dict to fill with the plan (:meth:`InferencePlan.to_dict`) and ``seconds``.
        log_level: the level of the progress lines (the plan and time, every few patches);
            ``logging.DEBUG`` for runs that are a step inside another (the learned denoiser's
            SURE crops), so they do not flood the log.

    Returns:
        float32 array of shape ``(sX, sY, sZ)``.
    """
    data = _check_channels(volume)  # (C, X, Y, Z)
    dev = resolve_device(device)
    # a body on a half grid (space_to_depth) cuts 2×2×2 cells at even voxels: run on an even
    # shape (edge-padded, cut off again) with even patch starts and an even halo, so patches
    # cut the same cells as the whole volume and the result does not depend on the tiling
    align = 2 if getattr(getattr(model, "_orig_mod", model), "space_to_depth", False) else 1
    original_shape = data.shape[1:]
    if align > 1:
        extra = [(0, n % align) for n in original_shape]
        if any(e for _, e in extra):
            data = np.pad(data, [(0, 0), *extra], mode="edge")
        if halo == "auto":
            halo = default_halo(model)
        if isinstance(halo, (int, np.integer)) and not isinstance(halo, bool) and halo % 2:
            halo = int(halo) + 1
    plan = plan_inference(model, data.shape[1:], scale=scale, patch_size=patch_size, overlap=overlap,
                          blend=blend, device=dev, mem_budget_gb=mem_budget_gb,
                          batch_size=batch_size, precision=precision, halo=halo,
                          channels_last=channels_last, align=align)
    t0 = time.perf_counter()
    was_training = model.training
    net, converted = _prepare_model(model, dev, plan.channels_last)
    try:
        with deterministic(dev), torch.inference_mode():
            out = _run_plan(net, data, plan, dev, log_level)
    finally:
        model.train(was_training)
        if converted:
            model.to(memory_format=torch.contiguous_format)
    if out.shape != tuple(scale * n for n in original_shape):
        out = np.ascontiguousarray(out[tuple(slice(0, scale * n) for n in original_shape)])
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    logger.log(log_level, "inference on %s (%s, %s): %s in %.2f s",
               "x".join(map(str, data.shape[1:])), plan.mode, plan.precision, plan.device, seconds)
    if report is not None:
        report.update(plan.to_dict())
        report["seconds"] = seconds
    return out


def _run_plan(net: nn.Module, data: np.ndarray, plan: InferencePlan,
              dev: torch.device, log_level: int = logging.INFO) -> np.ndarray:
    s, h = plan.scale, plan.halo
    padded = np.pad(data, [(0, 0)] + [(h, h)] * 3, mode="symmetric") if h else data
    x = torch.from_numpy(np.ascontiguousarray(padded)).to(dev)[None]
    if plan.mode == "whole":
        y = _forward(net, x, scale=s, plan=plan)[0, 0]
        if h:
            y = y[s * h:y.shape[0] - s * h, s * h:y.shape[1] - s * h, s * h:y.shape[2] - s * h]
        return y.cpu().numpy().copy() if dev.type != "cpu" else np.ascontiguousarray(y.numpy())

    core = plan.patch_size
    assert core is not None
    starts = plan.starts()
    windows = [blend_window(s * c, overlap=s * o, mode=plan.blend)
               for c, o in zip(core, plan.overlap, strict=True)]
    norms = []
    for n, c, w, st in zip(plan.input_shape, core, windows, starts, strict=True):
        norm = np.zeros(s * n)
        for a in st:
            norm[s * a:s * (a + c)] += w
        norms.append(norm)
    w3 = torch.from_numpy(np.einsum("i,j,k->ijk", *windows).astype(np.float32)).to(dev)
    acc = torch.zeros(tuple(s * n for n in plan.input_shape), dtype=torch.float32, device=dev)
    win = plan.window
    origins = [(i, j, k) for i in starts[0] for j in starts[1] for k in starts[2]]
    report_every = max(len(origins) // (10 * plan.batch_size), 1)
    for b0 in range(0, len(origins), plan.batch_size):
        chunk = origins[b0:b0 + plan.batch_size]
        batch = torch.cat([x[..., i:i + win[0], j:j + win[1], k:k + win[2]] for i, j, k in chunk])
        y = _forward(net, batch, scale=s, plan=plan)
        y = y[:, 0, s * h:s * (h + core[0]), s * h:s * (h + core[1]), s * h:s * (h + core[2])]
        for piece, (i, j, k) in zip(y, chunk, strict=True):
            acc[s * i:s * (i + core[0]), s * j:s * (j + core[1]), s * k:s * (k + core[2])] += \
                piece * w3
        if (b0 // plan.batch_size) % report_every == 0 or b0 + len(chunk) == len(origins):
            logger.log(log_level, "patch %d/%d", b0 + len(chunk), len(origins))
    # the summed weights are separable: divide by each axis' 1D sum (no weight volume)
    for axis, norm in enumerate(norms):
        view = [1, 1, 1]
        view[axis] = -1
        acc /= torch.from_numpy(norm.astype(np.float32)).to(dev).view(view)
    return acc.cpu().numpy() if dev.type != "cpu" else acc.numpy()
