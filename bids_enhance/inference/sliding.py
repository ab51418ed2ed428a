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

Precision: ``"auto"`` is bf16 autocast on CUDA (bf16-capable GPUs) and fp32 on CPU. On CUDA the
network and its inputs use the ``channels_last_3d`` layout. cuDNN runs deterministically and
``torch.use_deterministic_algorithms`` is on (warn-only) for the call; the patch order and every
sum are fixed, so results are reproducible run to run on one machine.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bids_enhance.device import resolve_device
from bids_enhance.inference.memory import (
    FIXED_OVERHEAD_GB,
    HEAD_HALO,
    InferenceMemoryError,
    activation_bytes,
    memory_budget_gb,
    receptive_radius,
    rrdb_head_slab,
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
    "plan_inference",
    "resolve_device",
    "resolve_precision",
    "lean_forward",
    "tile_starts",
]

logger = logging.getLogger(__name__)

BLEND_MODES = ("gaussian", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: σ of the Gaussian window as a fraction of the core length (MONAI's ``sigma_scale``)
GAUSSIAN_SIGMA_SCALE = 0.125
#: default halo cap in input voxels (see :func:`default_halo`)
HALO_CAP = 8
#: smallest core edge (input voxels) patch mode accepts when choosing from a memory budget
MIN_PATCH = 8
_WEIGHT_FLOOR = 1e-6
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


# ---------------------------------------------------------------------------------------------
# devices, precision, determinism
# ---------------------------------------------------------------------------------------------

def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"auto"`` → ``"bf16"`` on a bf16-capable CUDA device, ``"fp32"`` otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    return precision


def autocast_context(precision: str, device: torch.device | str
                     ) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``bf16``/``fp16``; a null context for ``fp32``."""
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])


@contextlib.contextmanager
def deterministic(device: torch.device | str) -> Iterator[None]:
    """Deterministic kernels for the duration of the block (cuDNN deterministic, no benchmark
    autotuning, ``torch.use_deterministic_algorithms(True, warn_only=True)``); the previous
    settings are restored afterwards."""
    device = torch.device(device)
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if device.type == "cuda":
        # cuBLAS is deterministic with a fixed workspace; torch checks this variable per call
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic = saved[2]
        torch.backends.cudnn.benchmark = saved[3]


# ---------------------------------------------------------------------------------------------
# tiling and blending
# ---------------------------------------------------------------------------------------------

def blend_window(length: int, *, overlap: int, mode: str = "gaussian") -> np.ndarray:
    """1D blending weights (float64, positive, peak 1) for a core of ``length`` output voxels.

    ``gaussian``: ``exp(-½((i + ½ − L/2)/σ)²)`` with ``σ = GAUSSIAN_SIGMA_SCALE · L``.
    ``cosine``: 1 in the middle, ``sin²`` ramps over the first and last ``overlap`` voxels, so
    that two neighbours overlapping by exactly ``overlap`` voxels sum to 1 there.
    Weights are floored at 1e-6 so every voxel keeps a positive weight.
    """
    if mode not in BLEND_MODES:
        raise ValueError(f"blend must be one of {list(BLEND_MODES)}, got {mode!r}")
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    centres = np.arange(length) + 0.5
    if mode == "gaussian":
        sigma = GAUSSIAN_SIGMA_SCALE * length
        w = np.exp(-0.5 * ((centres - length / 2) / sigma) ** 2)
    else:
        w = np.ones(length)
        ov = int(min(max(overlap, 0), length))
        if ov:
            ramp = np.sin(0.5 * np.pi * (np.arange(ov) + 0.5) / ov) ** 2
            w[:ov] = np.minimum(w[:ov], ramp)
            w[length - ov:] = np.minimum(w[length - ov:], ramp[::-1])
    return np.maximum(w, _WEIGHT_FLOOR)


def tile_starts(length: int, core: int, stride: int) -> list[int]:
    """Start indices of cores of ``core`` voxels covering ``[0, length)`` with ``stride``; the
    last core ends at ``length`` (so it may overlap its neighbour by more than the others)."""
    if core >= length:
        return [0]
    stride = max(int(stride), 1)
    starts = list(range(0, length - core, stride))
    if not starts or starts[-1] != length - core:
        starts.append(length - core)
    return starts


def _triple(value: int | Sequence[int], name: str) -> tuple[int, int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values = (int(value),) * 3
    else:
        values = tuple(int(v) for v in value)
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"{name} must be a positive int or three positive ints, got {value!r}")
    return values  # type: ignore[return-value]


def _axis_core(length: int, tiles: int, overlap: float) -> int:
    """Smallest core that covers ``length`` voxels with ``tiles`` cores overlapping by
    ``round(overlap · core)``."""
    if tiles <= 1:
        return length
    core = max(min(MIN_PATCH, length), math.ceil(length / (tiles - (tiles - 1) * overlap)))
    while core < length:
        ov = min(int(round(overlap * core)), core - 1)
        if len(tile_starts(length, core, core - ov)) <= tiles:
            break
        core += 1
    return min(core, length)


def _cheapest_tiling(shape: tuple[int, int, int], *, overlap: float, halo: int,
                     batch_size: int, fits: Any) -> tuple[int, int, int] | None:
    """The core size (per axis) whose tiling fits the memory budget (``fits(window)``) and makes
    the network process the fewest voxels (cores + halos, overlaps counted), fewest patches on
    ties; None when not even :data:`MIN_PATCH` cores fit."""
    options = []
    for n in shape:
        cores: dict[int, int] = {}
        for tiles in range(1, max(1, math.ceil(n / MIN_PATCH)) + 1):
            core = _axis_core(n, tiles, overlap)
            count = len(tile_starts(n, core, core - min(int(round(overlap * core)), core - 1)))
            cores.setdefault(core, count)
            if core <= MIN_PATCH:
                break
        options.append(sorted(cores.items(), reverse=True))  # (core, tiles), largest first
    best: tuple[float, int, tuple[int, int, int]] | None = None
    for cx, kx in options[0]:
        for cy, ky in options[1]:
            for cz, kz in options[2]:
                core = (cx, cy, cz)
                window = tuple(c + 2 * halo for c in core)
                work = kx * ky * kz * math.prod(window)
                if best is not None and (work, kx * ky * kz) >= best[:2]:
                    continue
                if fits(window):
                    best = (work, kx * ky * kz, core)
    return None if best is None else best[2]


def default_halo(model: nn.Module) -> int:
    """``min(receptive_radius(model), HALO_CAP)`` input voxels."""
    return min(receptive_radius(model), HALO_CAP)


# ---------------------------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InferencePlan:
    """What :func:`infer_volume` does for one volume (plain data; ``to_dict`` for sidecars)."""

    mode: str                       # "whole" or "patches"
    input_shape: tuple[int, int, int]
    scale: int
    halo: int                       # input voxels of context on each side (mirror padding)
    patch_size: tuple[int, int, int] | None   # core size in input voxels (None: whole volume)
    overlap: tuple[int, int, int]   # overlap between neighbouring cores, input voxels
    num_patches: int
    batch_size: int
    blend: str
    precision: str
    device: str
    channels_last: bool
    budget_gb: float
    estimated_gb: float             # estimated peak memory of the chosen mode

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("input_shape", "patch_size", "overlap"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    @property
    def window(self) -> tuple[int, int, int]:
        """Input voxels per patch along each axis (core plus halos)."""
        core = self.patch_size or self.input_shape
        return tuple(c + 2 * self.halo for c in core)  # type: ignore[return-value]

    def starts(self) -> list[list[int]]:
        """Per-axis start indices of the cores."""
        core = self.patch_size or self.input_shape
        return [tile_starts(n, c, c - o) for n, c, o
                in zip(self.input_shape, core, self.overlap, strict=True)]


def plan_inference(model: nn.Module, shape: Sequence[int], *, scale: int,
                   patch_size: int | Sequence[int] | None = None, overlap: float = 0.25,
                   blend: str = "gaussian", device: torch.device | str = "cpu",
                   mem_budget_gb: float | None = None, batch_size: int = 1,
                   precision: str = "auto", halo: int | str = "auto",
                   channels_last: bool | None = None, align: int = 1) -> InferencePlan:
    """Decide between whole-volume and patch inference and choose the patch size.

    ``align``: patch cores and overlaps are multiples of it (so, on a shape that is one too,
    every patch starts on a multiple of it): 2 for networks whose body runs on a half grid they
    cut at even input voxels (``space_to_depth``), which patches at odd offsets would shift.

    Memory model (GB): fixed = mirror-padded input + output accumulator (float32, on the device)
    + :data:`~bids_enhance.inference.memory.FIXED_OVERHEAD_GB`; per forward =
    :func:`~bids_enhance.inference.memory.activation_bytes` of a batch of windows (core + halos).
    Whole volume when ``patch_size`` is None and fixed + one whole forward fits the budget;
    otherwise, among tilings with 1, 2, 3 … cores per axis (each core as small as covers the axis
    with the overlap), the one that fits and makes the network process the fewest voxels
    (halos and overlaps included). ``patch_size`` forces patch mode with that core.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected a 3D shape, got {shape}")
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if blend not in BLEND_MODES:
        raise ValueError(f"blend must be one of {list(BLEND_MODES)}, got {blend!r}")
    overlap = float(overlap)
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    if halo == "auto":
        halo = default_halo(model)
    elif isinstance(halo, bool) or not isinstance(halo, (int, np.integer)) or halo < 0:
        raise ValueError(f"halo must be 'auto' or a non-negative integer, got {halo!r}")
    halo = int(halo)
    if channels_last is None:
        channels_last = device.type == "cuda"

    budget = memory_budget_gb(device, mem_budget_gb)
    gb = float(2**30)
    padded_shape = tuple(n + 2 * halo for n in shape)
    fixed = (4 * math.prod(padded_shape) + 4 * scale**3 * math.prod(shape)) / gb \
        + FIXED_OVERHEAD_GB

    def forward_gb(window: Sequence[int], batch: int) -> float:
        return activation_bytes(model, tuple(window), scale=scale, precision=precision,
                                batch_size=batch) / gb

    whole = fixed + forward_gb(padded_shape, 1)

    common = dict(input_shape=shape, scale=scale, halo=halo, blend=blend, precision=precision,
                  device=str(device), channels_last=bool(channels_last), budget_gb=budget)
    if patch_size is None and whole <= budget:
        return InferencePlan(mode="whole", patch_size=None, overlap=(0, 0, 0), num_patches=1,
                             batch_size=1, estimated_gb=whole, **common)

    if patch_size is not None:
        core = tuple(min(p, n) for p, n in zip(_triple(patch_size, "patch_size"), shape,
                                                strict=True))
    else:
        core = _cheapest_tiling(shape, overlap=overlap, halo=halo, batch_size=batch_size,
                                fits=lambda window: fixed + forward_gb(window, batch_size)
                                <= budget)
        if core is None:
            need = fixed + forward_gb(tuple(min(MIN_PATCH, n) + 2 * halo for n in shape),
                                      batch_size)
            raise InferenceMemoryError(
                f"a memory budget of {budget:.2f} GB is too small for inference on a "
                f"{'x'.join(map(str, shape))} volume: even {MIN_PATCH}^3 patches with a halo of "
                f"{halo} voxels and batch size {batch_size} need about {need:.2f} GB; raise the "
                "budget (--mem, or the GPU budget), lower the batch size or the halo")
    if align > 1:
        core = tuple(min(-(-c // align) * align, n) for c, n in zip(core, shape, strict=True))
    if core == shape:
        return InferencePlan(mode="whole", patch_size=None, overlap=(0, 0, 0), num_patches=1,
                             batch_size=1, estimated_gb=whole, **common)
    ov = tuple(0 if c >= n else min(int(round(overlap * c)), c - 1)
               for c, n in zip(core, shape, strict=True))
    if align > 1:
        ov = tuple(o // align * align for o in ov)
    num = math.prod(len(tile_starts(n, c, c - o)) for n, c, o in zip(shape, core, ov, strict=True))
    batch = min(batch_size, num)
    estimate = fixed + forward_gb(tuple(c + 2 * halo for c in core), batch)
    return InferencePlan(mode="patches", patch_size=core, overlap=ov, num_patches=num,
                         batch_size=batch, estimated_gb=estimate, **common)


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------

def _check_volume(volume: Any) -> np.ndarray:
    data = np.asarray(volume)
    if data.ndim != 3:
        raise ValueError(f"expected a 3D volume (X, Y, Z), got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ValueError(f"expected a real-valued volume, got dtype {data.dtype}")
    data = data.astype(np.float32, copy=False)
    if not np.isfinite(data).all():
        raise ValueError("the volume contains NaN or infinite values; sanitise it first")
    return data


def _prepare_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    return model


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
                 report: dict[str, Any] | None = None) -> np.ndarray:
    """Apply ``model`` to a 3D ``volume`` and return its ``scale``-times larger output.

    Args:
        model: maps ``(B, 1, X, Y, Z)`` float32 to ``(B, 1, sX, sY, sZ)``; it is moved to
            ``device`` and runs in eval mode (its training mode is restored afterwards); on CUDA
            its parameters are converted to the ``channels_last_3d`` layout (values unchanged).
        volume: ``(X, Y, Z)`` real array (normalised intensities, as in training).
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
        channels_last: use ``channels_last_3d``; None = on CUDA only.
        report: a dict to fill with the plan (:meth:`InferencePlan.to_dict`) and ``seconds``.

    Returns:
        float32 array of shape ``(sX, sY, sZ)``.
    """
    data = _check_volume(volume)
    dev = resolve_device(device)
    # a body on a half grid (space_to_depth) cuts 2×2×2 cells at even voxels: run on an even
    # shape (edge-padded, cut off again) with even patch starts and an even halo, so patches
    # cut the same cells as the whole volume and the result does not depend on the tiling
    align = 2 if getattr(getattr(model, "_orig_mod", model), "space_to_depth", False) else 1
    original_shape = data.shape
    if align > 1:
        extra = [(0, n % align) for n in data.shape]
        if any(e for _, e in extra):
            data = np.pad(data, extra, mode="edge")
        if halo == "auto":
            halo = default_halo(model)
        if isinstance(halo, (int, np.integer)) and not isinstance(halo, bool) and halo % 2:
            halo = int(halo) + 1
    plan = plan_inference(model, data.shape, scale=scale, patch_size=patch_size, overlap=overlap,
                          blend=blend, device=dev, mem_budget_gb=mem_budget_gb,
                          batch_size=batch_size, precision=precision, halo=halo,
                          channels_last=channels_last, align=align)
    t0 = time.perf_counter()
    was_training = model.training
    net = _prepare_model(model, dev, plan.channels_last)
    try:
        with deterministic(dev), torch.inference_mode():
            out = _run_plan(net, data, plan, dev)
    finally:
        model.train(was_training)
    if out.shape != tuple(scale * n for n in original_shape):
        out = np.ascontiguousarray(out[tuple(slice(0, scale * n) for n in original_shape)])
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    logger.info("inference on %s (%s, %s): %s in %.2f s", "x".join(map(str, data.shape)),
                plan.mode, plan.precision, plan.device, seconds)
    if report is not None:
        report.update(plan.to_dict())
        report["seconds"] = seconds
    return out


def _run_plan(net: nn.Module, data: np.ndarray, plan: InferencePlan,
              dev: torch.device) -> np.ndarray:
    s, h = plan.scale, plan.halo
    padded = np.pad(data, h, mode="symmetric") if h else data
    x = torch.from_numpy(np.ascontiguousarray(padded)).to(dev)[None, None]
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
            logger.info("patch %d/%d", b0 + len(chunk), len(origins))
    # the summed weights are separable: divide by each axis' 1D sum (no weight volume)
    for axis, norm in enumerate(norms):
        view = [1, 1, 1]
        view[axis] = -1
        acc /= torch.from_numpy(norm.astype(np.float32)).to(dev).view(view)
    return acc.cpu().numpy() if dev.type != "cpu" else acc.numpy()
