"""Memory budgets, activation-memory estimates and receptive fields for volume inference.

Everything here is arithmetic on a model's structure and on the machine's free memory; nothing
runs the model. The estimates decide between whole-volume and patch inference
(:func:`bids_enhance.inference.sliding.plan_inference`).

**Activation memory of the RRDB generator** (no autograd, one input voxel, ``F`` features, ``G``
growth, scale ``s``), counted as live tensor channels at the peak of each phase:

- RRDB body: the global-skip input, the RRDB's and the dense block's inputs, ``x1…x4``, their
  concatenation (``F + 4G``), oneDNN's reordered copy of it and ``conv5``'s output:
  ``6F + 12G``;
- ×2 upsampling: trunk output ``F``, the ``8F``-channel conv output and its voxel-shuffled copy:
  ``17F``;
- high-resolution head (``s³`` output voxels per input voxel): the shuffled features, ``conv_hr``'s
  output and its LeakyReLU: ``3F·s³`` (``24F`` at ``s = 2``).

Measured on CPU (fp32, oneDNN, torch 2.13) for the default 64/32/3 generator: 6.1–6.6 kB per
input voxel at ``s = 2`` (24³–64³ inputs) against 6.1 kB predicted (``24F`` × 4 bytes); 2.7 kB at
``s = 1`` and 3.5 kB for the memory-lean x2 forward against 3.1 kB (``6F + 12G``).
With ``space_to_depth`` (the scale-1 motion and denoising generators: the body on the half grid,
an x2 head back to the input grid) the body's channels count an eighth per input voxel: for the
shipped 32/16/8 networks the plan for a whole 176×238×168 head with two input channels stays
under 3 GB (tests/inference/test_sliding.py), and the whole process peaked at 1.9–2.0 GiB RSS
(``benchmarks/default_weights_speed.py --steps denoise-network``) — 8× less than the plain
formula, which sent such heads to patches.
:data:`SAFETY` covers allocator slack, :data:`FIXED_OVERHEAD_GB` the libraries' one-off buffers.

The x2 head dominates (``24F`` against ``6F + 12G``), but its receptive field is only two input
voxels, so the memory-lean forward (:meth:`bids_enhance.models.RRDBGenerator.forward_lean`)
runs the body on the whole input and the head in slabs: about ``6F + 12G`` channels per voxel,
half the memory for the default generator (measured 3.5 against 6.6 kB per voxel at 64³), which
lets whole volumes run where patches would otherwise be needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from bids_enhance.models.generator import RRDBGenerator

__all__ = [
    "FIXED_OVERHEAD_GB",
    "SAFETY",
    "HEAD_HALO",
    "InferenceMemoryError",
    "activation_bytes",
    "activation_bytes_per_voxel",
    "available_cpu_memory_gb",
    "available_gpu_memory_gb",
    "dtype_bytes",
    "memory_budget_gb",
    "receptive_radius",
    "rrdb_head_slab",
]

#: multiplicative margin on the analytic activation estimate (allocator slack, conv workspaces)
SAFETY = 1.3
#: one-off memory of the libraries (oneDNN/cuDNN workspaces, CUDA context excluded), GB
FIXED_OVERHEAD_GB = 0.25
#: input voxels of context on each side of a head slab: the upsampling conv (1 voxel) and the
#: two high-resolution convs (2 output voxels = 1 input voxel) need 2 trunk voxels each side
HEAD_HALO = 2
#: smallest head slab of the memory-lean forward (input voxels)
MIN_HEAD_SLAB = 24
#: share of the free memory used when no budget is given
DEFAULT_FREE_FRACTION = {"cpu": 0.5, "cuda": 0.85}


class InferenceMemoryError(MemoryError):
    """The memory budget is too small for even the smallest useful patch."""


def dtype_bytes(precision: str) -> int:
    """Bytes per activation element: 4 for ``fp32``, 2 for ``bf16``/``fp16``."""
    return 4 if precision == "fp32" else 2


# ---------------------------------------------------------------------------------------------
# structure of a model
# ---------------------------------------------------------------------------------------------

def _rrdb_dims(model: RRDBGenerator) -> tuple[int, int, int]:
    features = model.conv_first.out_channels
    blocks = len(model.body)
    growth = model.body[0].rdb1.conv1.out_channels if blocks else 0
    return features, growth, blocks


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)


def receptive_radius(model: nn.Module) -> int:
    """Radius of the receptive field in *input* voxels: an output voxel depends on inputs at most
    this far away (along each axis), so a halo of this size makes patch inference exact.

    RRDB generator: ``1 + 15·num_blocks + 1`` LR convs (stem, five convs in each of the three
    dense blocks of every RRDB, trunk) plus the upsampling conv and the two high-resolution convs
    (one input voxel at ``s = 2``; two at ``s = 1``): ``15·num_blocks + 4`` — 49 for the thesis'
    three blocks. Other models: the sum of the radii of all 3D convolutions (an upper bound for a
    chain of stride-1 convs).
    """
    model = _unwrap(model)
    if isinstance(model, RRDBGenerator):
        _, _, blocks = _rrdb_dims(model)
        if getattr(model, "space_to_depth", False):
            # body (stem, RRDBs, trunk, upsampling conv) on the half grid: two fine voxels per
            # coarse one, one more for the position inside a 2×2×2 cell, two fine head convs
            return 2 * (15 * blocks + 3) + 3
        return 15 * blocks + 4
    radius = 0
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            k = module.kernel_size
            d = module.dilation
            radius += max((kk - 1) // 2 * dd for kk, dd in zip(k, d, strict=True))
    return radius


def rrdb_head_slab(model: RRDBGenerator, depth: int) -> int:
    """Depth (input voxels along axis 2 of ``(B, C, D, H, W)``) of the slabs in which the
    memory-lean forward (:meth:`bids_enhance.models.RRDBGenerator.forward_lean`) runs the x2
    head: as deep as keeps the head's ``16F`` channels per voxel of a slab (plus its 2-voxel
    halos) within the body's ``4F + 8G``, but at least :data:`MIN_HEAD_SLAB` (so the halos cost
    little), and ``depth`` itself (one pass) when that is smaller."""
    f, g, _ = _rrdb_dims(model)
    slab = max(MIN_HEAD_SLAB, depth * (4 * f + 8 * g) // (16 * f) - 2 * HEAD_HALO)
    return min(slab, depth)


def activation_bytes(model: nn.Module, shape: tuple[int, ...], *, scale: int,
                     precision: str = "fp32", batch_size: int = 1) -> float:
    """Estimated peak memory (bytes) of one forward pass on a ``(batch_size, 1, *shape)`` input:
    activations (with :data:`SAFETY`) plus the float32 output.

    An x2 RRDB generator runs memory-lean (its head in slabs, see :func:`rrdb_head_slab`): the
    larger of the body's ``6F + 12G`` channels per input voxel and, in the head phase, the trunk
    features (``F``) plus ``16F`` per voxel of one head slab.
    Otherwise ``activation_bytes_per_voxel`` times the voxels.
    """
    d, h, w = (int(n) for n in shape)
    voxels = d * h * w
    out = 4.0 * scale**3 * voxels * batch_size
    net = _unwrap(model)
    b = dtype_bytes(precision)
    if getattr(net, "supports_lean_forward", False):
        f, g, _ = _rrdb_dims(net)
        slab = rrdb_head_slab(net, d)
        head_depth = d if slab >= d else slab + 2 * HEAD_HALO
        # body phase, then the head phase (trunk features + one slab's 16F intermediates)
        act = max(voxels * (6 * f + 12 * g), voxels * f + head_depth * h * w * 16 * f)
        return SAFETY * b * act * batch_size + out
    return activation_bytes_per_voxel(model, scale=scale, precision=precision) \
        * voxels * batch_size + out


def activation_bytes_per_voxel(model: nn.Module, *, scale: int, precision: str = "fp32") -> float:
    """Peak activation memory of a plain forward pass in bytes per *input* voxel, including
    :data:`SAFETY` (the input and output arrays themselves are not included).

    RRDB generator: ``max(6F + 12G, 17F if s = 2, 3F·s³)`` elements (module docstring); with
    ``space_to_depth`` (body on the half grid, x2 head of ``H`` features back to the input grid)
    ``max((6F + 12G)/8, F/8 + 2H, 3H)``. Other models: three times the widest convolution's
    ``in + out`` channels, times ``s³``.
    """
    model = _unwrap(model)
    if isinstance(model, RRDBGenerator) and getattr(model, "space_to_depth", False):
        f, g, _ = _rrdb_dims(model)
        h = model.hr_features
        # the body on the half grid (an eighth of the voxels), the x2 head on the input's
        channels = max((6 * f + 12 * g) / 8, f / 8 + 2 * h, 3 * h)
    elif isinstance(model, RRDBGenerator):
        f, g, _ = _rrdb_dims(model)
        s3 = model.scale ** 3
        channels = max(6 * f + 12 * g, 17 * f if model.scale > 1 else 0, 3 * f * s3)
    else:
        widest = max((m.in_channels + m.out_channels for m in model.modules()
                      if isinstance(m, nn.Conv3d)), default=8)
        channels = 3 * widest * scale ** 3
    return float(channels * dtype_bytes(precision) * SAFETY)


# ---------------------------------------------------------------------------------------------
# how much memory there is
# ---------------------------------------------------------------------------------------------

def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _cgroup_free_bytes() -> int | None:
    """Room left under a cgroup memory limit (containers, SLURM), or None without a limit."""
    v2 = Path("/sys/fs/cgroup")
    limit = _read_int(v2 / "memory.max")
    usage = _read_int(v2 / "memory.current")
    if limit is None:
        v1 = v2 / "memory"
        limit = _read_int(v1 / "memory.limit_in_bytes")
        usage = _read_int(v1 / "memory.usage_in_bytes")
        if limit is not None and limit >= 1 << 60:  # "unlimited" in cgroup v1
            limit = None
    if limit is None:
        return None
    return max(limit - (usage or 0), 0)


def available_cpu_memory_gb() -> float:
    """Memory this process can still use: ``MemAvailable`` of /proc/meminfo (free pages on
    other systems), capped by a cgroup limit when one applies."""
    free = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = 4 << 30
    capped = _cgroup_free_bytes()
    if capped is not None:
        free = min(free, capped)
    return free / 2**30


def available_gpu_memory_gb(device: torch.device | str) -> float:
    """Free memory of a CUDA device plus what PyTorch's caching allocator holds unused, in GB."""
    device = torch.device(device)
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return (free + max(cached, 0)) / 2**30


def memory_budget_gb(device: torch.device | str, mem_budget_gb: float | None = None) -> float:
    """The budget for inference on ``device``: ``mem_budget_gb`` when given (``--mem`` on CPU,
    the GPU budget flag on CUDA), else a share of the free memory
    (:data:`DEFAULT_FREE_FRACTION`)."""
    device = torch.device(device)
    if mem_budget_gb is not None:
        value = float(mem_budget_gb)
        if not value > 0:
            raise ValueError(f"mem_budget_gb must be a positive number of GB, got {mem_budget_gb!r}")
        return value
    if device.type == "cuda":
        return DEFAULT_FREE_FRACTION["cuda"] * available_gpu_memory_gb(device)
    return DEFAULT_FREE_FRACTION["cpu"] * available_cpu_memory_gb()
