"""ODCT3D: oracle-based 3D DCT denoising (Manjón et al., MedIA 2012).

Every ``4×4×4`` block of the volume (stride 1) is transformed with an orthonormal 3D DCT-II;
blocks that are entirely zero are skipped.

* Pass 1 keeps the coefficients with ``|c| >= 2.7σ``, inverts, and aggregates the overlapping
  blocks with weight ``1 / (1 + kept coefficients)``.
* Pass 2 keeps a *noisy* coefficient only where the pass-1 result (the oracle) has ``|c| >= σ``,
  with the same weighting.
* ``wiener=True`` (method ``odct3d-wiener``): pass 2 instead shrinks every noisy coefficient by
  the empirical Wiener gain ``g = o² / (o² + σ²)`` of the oracle's coefficient ``o``, and weights
  each block by ``1 / (1 + Σ g²)`` — the second stage of BM3D/BM4D (Dabov et al. 2007) without
  the block matching; the hard pass is the special case ``g ∈ {0, 1}``. Same cost.
* Rician data: the result estimates the Rician mean ``E[y]``; it is mapped through the inverse of
  the Rician mean function to the underlying amplitude. Output clipped at 0; input voxels ``<= 0``
  stay 0.

Implementation notes (measured on a 2-core CPU, see docs/benchmarks/denoise.md): PyTorch's CPU
``conv3d`` with 64 dense 4×4×4 filters, or with grouped separable 1D filters, ran at 0.4–1 µs per
voxel per transform, and allocating 64-channel tensors page-faults at every call. Here the 3D
block DCT is computed separably with the 4-point DCT butterfly (8 in-place ops per axis, no
temporaries) on *flat* contiguous views of a z-chunk — a shift along an axis is a shift of the
flat index — so every operation is a vectorised 1D ``add``/``sub`` into a workspace allocated
once per call. Flat positions whose block would wrap around a row or plane get weight 0.
Per-channel scale factors of the butterfly are folded into the thresholds and the inverse, which
is the exact adjoint (weighted overlap-add). The volume is cropped to the bounding box of its
non-zero voxels (exact, since all-zero blocks are skipped) and processed in z-chunks with a halo
of 3 slices per pass.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from bids_enhance.classical._common import (
    DEFAULT_MEMORY_BUDGET_GB,
    NOISE_MODELS,
    bounding_box,
    check_choice,
    check_sigma,
    chunk_depth_for_budget,
    iter_z_chunks,
    prepare_volume,
    restore_volume,
)

__all__ = ["odct3d", "odct3d_wiener", "rician_mean_inverse"]

#: Pass-1 hard threshold, in units of sigma (Manjón 2012).
PASS1_THRESHOLD = 2.7
#: Pass-2 oracle threshold, in units of sigma.
PASS2_THRESHOLD = 1.0
#: Block edge (the butterflies below are written for 4).
BLOCK = 4
_HALO = BLOCK - 1
#: Workspace floats per voxel of a chunk (3 × 16 + 4 stage channels, output, weights, scratch).
_FLOATS_PER_VOXEL = 60
#: Flat positions per sub-block of the 64-channel work: on the CPU 64 × 16384 floats = 4 MiB
#: per operand (measured best of 2k-64k); larger on CUDA, where each op is a kernel launch.
_SUB_BLOCK = {"cpu": 16384, "cuda": 1 << 18}


def odct3d(volume, *, sigma: float, noise_model: str = "rician", device="cpu",
           memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB):
    """Denoise a 3D volume with the two-pass oracle DCT filter (ODCT3D).

    Parameters
    ----------
    volume
        3D numpy array (any real dtype) or torch tensor ``(D, H, W)``, any intensity scale; every
        axis needs at least 4 voxels.
    sigma
        Noise standard deviation in the volume's intensity units (the σ of each Gaussian channel
        for Rician data). ``0`` returns the input unchanged (clipped at 0 for Rician).
    noise_model
        ``"rician"`` (magnitude images; bias-corrected, output >= 0) or ``"gaussian"``.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    memory_budget_gb
        Working memory for one z-chunk (about 240 bytes per voxel of the chunk); a smaller
        budget means thinner chunks and more halo recomputation (3 slices per side and pass).

    Returns
    -------
    Same container and shape as ``volume``; float input keeps its dtype, integer input gives
    float32. A tensor comes back on the input tensor's device.
    """
    return _odct3d(volume, sigma=sigma, noise_model=noise_model, device=device,
                   memory_budget_gb=memory_budget_gb, wiener=False)


def odct3d_wiener(volume, *, sigma: float, noise_model: str = "rician", device="cpu",
                  memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB):
    """ODCT3D with an empirical Wiener second pass (module docstring): the same arguments and
    result as :func:`odct3d`, the same cost."""
    return _odct3d(volume, sigma=sigma, noise_model=noise_model, device=device,
                   memory_budget_gb=memory_budget_gb, wiener=True)


def _odct3d(volume, *, sigma, noise_model, device, memory_budget_gb, wiener):
    noise_model = check_choice("noise_model", noise_model, NOISE_MODELS)
    sigma = check_sigma(sigma)
    x, spec = prepare_volume(volume, min_size=BLOCK, device=device)
    out = odct3d_tensor(x, sigma=sigma, noise_model=noise_model,
                        memory_budget_gb=memory_budget_gb, wiener=wiener)
    return restore_volume(out, spec)


def odct3d_tensor(x: torch.Tensor, *, sigma: float, noise_model: str,
                  memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB,
                  wiener: bool = False) -> torch.Tensor:
    """ODCT on a validated float32 3D tensor (no argument checks); returns a new tensor."""
    if sigma == 0:
        return x.clamp_min(0) if noise_model == "rician" else x.clone()
    out = torch.zeros_like(x)
    box = bounding_box(x != 0, margin=_HALO)
    if box is None:
        return out
    crop = x[box]
    if min(crop.shape) < BLOCK:  # foreground squeezed against a border: use the whole grid
        box, crop = (slice(None),) * 3, x
    crop = crop.contiguous()
    depth, height, width = crop.shape
    chunk = chunk_depth_for_budget(depth=depth, plane_voxels=height * width,
                                   bytes_per_voxel=4 * _FLOATS_PER_VOXEL, halo=_HALO,
                                   budget_gb=memory_budget_gb, minimum=1)
    work = _Workspace(min(depth, chunk + 2 * _HALO), height, width, crop.device)
    pass1 = torch.empty_like(crop)
    for ch in iter_z_chunks(depth, chunk, _HALO):
        pass1[ch.output] = work.filter(crop[ch.input], None, PASS1_THRESHOLD * sigma)[ch.core]
    result = torch.empty_like(crop)
    for ch in iter_z_chunks(depth, chunk, _HALO):
        result[ch.output] = work.filter(crop[ch.input], pass1[ch.input],
                                        PASS2_THRESHOLD * sigma, wiener=wiener)[ch.core]
    del pass1, work
    if noise_model == "rician":
        result = rician_mean_inverse(result, sigma)
        result.mul_(crop > 0)
    out[box] = result
    return out


# --------------------------------------------------------------------------------------------
# 4-point DCT butterflies on flat arrays
# --------------------------------------------------------------------------------------------
# Raw forward butterfly of one axis, for x_n = x[p + n*stride]:
#   s0 = x0 + x3, s1 = x1 + x2, d0 = x0 - x3, d1 = x1 - x2
#   raw2 = s0 - s1;  raw0 = s0 - raw2/2;  raw3 = d0 - (b/c) d1;  raw1 = d0 - R * raw3
# with R = (c/b)^2 / (1 + (c/b)^2); the orthonormal coefficient is SCALE[k] * raw_k.
_B = math.sqrt(0.5) * math.cos(math.pi / 8)
_C = math.sqrt(0.5) * math.cos(3 * math.pi / 8)
_R = (_C / _B) ** 2 / (1 + (_C / _B) ** 2)


def _forward_axis(src: torch.Tensor, dst: torch.Tensor, stride: int) -> None:
    """One axis of the block DCT: ``src (C, Ls)`` → ``dst (4, C, Ls − 3·stride)`` (raw)."""
    n = dst.shape[-1]
    x0, x1 = src[:, :n], src[:, stride:stride + n]
    x2, x3 = src[:, 2 * stride:2 * stride + n], src[:, 3 * stride:3 * stride + n]
    torch.add(x0, x3, out=dst[0])
    torch.add(x1, x2, out=dst[2])
    torch.sub(x0, x3, out=dst[1])
    torch.sub(x1, x2, out=dst[3])
    torch.sub(dst[0], dst[2], out=dst[2])               # raw2 = s0 - s1
    dst[0].sub_(dst[2], alpha=0.5)                      # raw0 = (s0 + s1) / 2
    torch.sub(dst[1], dst[3], alpha=_B / _C, out=dst[3])  # raw3 = d0 - (b/c) d1
    dst[1].sub_(dst[3], alpha=_R)                       # raw1 = (d0 + (c/b) d1) / (1 + (c/b)^2)


def _inverse_axis(src: torch.Tensor, dst: torch.Tensor, stride: int, coef: tuple[float, ...],
                  accumulate: bool = False) -> None:
    """Adjoint of :func:`_forward_axis` followed by the orthonormal scaling: weighted
    overlap-add of ``src (4, C, L)`` (raw-domain values) into ``dst (C, L + 3·stride)``.

    ``coef`` are the constants of the in-place butterfly (see :func:`_butterfly_constants`).
    ``src`` is overwritten. With ``accumulate`` the result is added to ``dst``.
    """
    n = src.shape[-1]
    a, g1, g2, e_w, g_w, f_w, h_w = coef
    d0, d1, d2, d3 = src[0], src[1], src[2], src[3]
    torch.sub(d0, d2, alpha=a, out=d2)       # ∝ f
    torch.sub(d0, d2, alpha=0.5, out=d0)     # ∝ e
    torch.sub(d1, d3, alpha=g1, out=d3)      # ∝ h
    torch.sub(d1, d3, alpha=g2, out=d1)      # ∝ g
    if accumulate:
        dst[:, :n].add_(d0, alpha=e_w)
    else:
        torch.mul(d0, e_w, out=dst[:, :n])
        dst[:, n:].zero_()
    dst[:, :n].add_(d1, alpha=g_w)
    dst[:, 3 * stride:].add_(d0, alpha=e_w)
    dst[:, 3 * stride:].add_(d1, alpha=-g_w)
    dst[:, stride:stride + n].add_(d2, alpha=f_w)
    dst[:, stride:stride + n].add_(d3, alpha=h_w)
    dst[:, 2 * stride:2 * stride + n].add_(d2, alpha=f_w)
    dst[:, 2 * stride:2 * stride + n].add_(d3, alpha=-h_w)


@lru_cache(maxsize=1)
def _butterfly_constants() -> tuple[np.ndarray, tuple[float, ...]]:
    """Per-frequency scales of the raw forward butterfly and constants of the inverse.

    Derived numerically from the orthonormal DCT-II matrix so the algebra cannot drift: the
    inverse applies ``y[p + n] += Σ_k C[k, n] · scale_k · D_k[p]``, decomposed as
    ``u0 = e + g, u3 = e − g, u1 = f + h, u2 = f − h`` with the even part
    ``e, f = (C'[0,0] D0 ± C'[2,0] D2)`` and odd part ``g = C'[1,0] D1 + C'[3,0] D3``,
    ``h = C'[1,1] D1 + C'[3,1] D3`` (``C' = scale · C``), each computed in place.
    """
    dct = _dct_matrix(BLOCK)
    raw = np.zeros((4, 4))
    for n in range(4):
        x = torch.zeros(1, 7, dtype=torch.float64)
        x[0, n] = 1.0
        dst = torch.empty(4, 1, 4, dtype=torch.float64)
        _forward_axis(x, dst, 1)
        raw[:, n] = dst[:, 0, 0].numpy()
    scale = dct[:, 0] / raw[:, 0]
    assert np.allclose(scale[:, None] * raw, dct, atol=1e-12)
    cp = scale[:, None] * dct                # C'[k, n]
    p0, p2 = cp[0, 0], cp[2, 0]               # e = p0 D0 + p2 D2, f = p0 D0 - p2 D2
    q1, q3 = cp[1, 0], cp[3, 0]               # g = q1 D1 + q3 D3
    r1, r3 = cp[1, 1], cp[3, 1]               # h = r1 D1 + r3 D3
    # in place: D2 <- D0 - a D2 (= f / p0 with a = p2/p0); D0 <- D0 - D2/2 ... see _inverse_axis
    a = p2 / p0
    # D0' = D0 - 0.5 (D0 - a D2) = 0.5 D0 + 0.5 a D2 = e / (2 p0)
    e_w = 2 * p0
    f_w = p0                                  # f = p0 * D2'
    # D3' = D1 - g1 D3 = h / r1 with g1 = -r3/r1
    g1 = -r3 / r1
    h_w = r1
    # D1' = D1 - g2 D3' ; want D1' ∝ g = q1 D1 + q3 D3, D3 = (D1 - D3')/g1
    #   g = (q1 + q3/g1) D1 - (q3/g1) D3'  → D1' = g / (q1 + q3/g1) with g2 = (q3/g1)/(q1 + q3/g1)
    k = q1 + q3 / g1
    g2 = (q3 / g1) / k
    g_w = k
    consts = (a, g1, g2, e_w, g_w, f_w, h_w)
    _check_inverse(consts, cp)
    return scale, consts


def _check_inverse(consts, cp) -> None:
    """Numerically confirm that :func:`_inverse_axis` applies ``C'^T`` (adjoint + scaling)."""
    for k in range(4):
        src = torch.zeros(4, 1, 1, dtype=torch.float64)
        src[k] = 1.0
        dst = torch.empty(1, 4, dtype=torch.float64)
        _inverse_axis(src, dst, 1, consts)
        assert np.allclose(dst[0].numpy(), cp[k], atol=1e-12), (k, dst, cp[k])


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``C[k, i]`` (rows = frequencies)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    mat = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    mat[0] /= math.sqrt(2.0)
    return mat


class _Workspace:
    """Buffers for one z-chunk of at most ``depth`` slices of a ``height × width`` plane.

    The z and y stages of the transform run over the whole chunk (4 and 16 channels); the x stage,
    the thresholding and the x stage of the inverse (the 64-channel work, three quarters of the
    arithmetic) run over sub-blocks of ``block`` flat positions so their operands stay in cache.
    """

    def __init__(self, depth: int, height: int, width: int, device: torch.device,
                 block: int | None = None) -> None:
        if block is None:
            block = _SUB_BLOCK.get(device.type, _SUB_BLOCK["cuda"])
        self.plane, self.width, self.block = height * width, width, block
        scale, self.consts = _butterfly_constants()
        n0 = depth * self.plane
        f32 = dict(dtype=torch.float32, device=device)
        self.a = torch.empty(4 * n0, **f32)
        self.b = torch.empty(16 * n0, **f32)
        self.b_oracle = torch.empty(16 * n0, **f32)
        self.b_inv = torch.empty(16 * n0, **f32)
        self.coef = torch.empty(64 * block, **f32)
        self.mask = torch.empty(64 * block, **f32)
        self.out = torch.empty(n0, **f32)
        self.den = torch.empty(n0, **f32)
        self.weight = torch.empty(n0, **f32)
        self.box = torch.empty(n0, **f32)
        # channel c = kx*16 + ky*4 + kz (x stage outermost)
        s = torch.as_tensor(scale, dtype=torch.float32, device=device)
        self.scale = (s[:, None, None] * s[None, :, None] * s[None, None, :]).reshape(64, 1)
        valid = torch.zeros(height, width, **f32)
        valid[: height - _HALO, : width - _HALO] = 1.0
        self.valid = valid

    def _lengths(self, n0: int) -> tuple[int, int, int]:
        n1 = n0 - _HALO * self.plane
        n2 = n1 - _HALO * self.width
        return n1, n2, n2 - _HALO

    def _forward_zy(self, x: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """z and y stages of the raw block DCT of flat ``x (n0,)`` → ``(16, n2)`` view of dst."""
        n1, n2, _ = self._lengths(x.numel())
        a = self.a[: 4 * n1].view(4, 1, n1)
        b = dst[: 16 * n2].view(4, 4, n2)
        _forward_axis(x.view(1, -1), a, self.plane)
        _forward_axis(a.view(4, n1), b, self.width)
        return b.view(16, n2)

    def _box(self, x: torch.Tensor, n0: int) -> torch.Tensor:
        """Block sums of ``x`` (length n0) → ``(n3,)``; uses ``den`` and ``box`` as scratch."""
        n1, n2, n3 = self._lengths(n0)
        t = self.den
        torch.add(x[:n1], x[self.plane:self.plane + n1], out=t[:n1])
        t[:n1].add_(x[2 * self.plane:2 * self.plane + n1]).add_(x[3 * self.plane:])
        u = self.box
        w = self.width
        torch.add(t[:n2], t[w:w + n2], out=u[:n2])
        u[:n2].add_(t[2 * w:2 * w + n2]).add_(t[3 * w:3 * w + n2])
        torch.add(u[:n3], u[1:1 + n3], out=t[:n3])
        t[:n3].add_(u[2:2 + n3]).add_(u[3:3 + n3])
        return t[:n3]

    def _box_adjoint(self, w: torch.Tensor, n0: int) -> torch.Tensor:
        """Sum of the block weights ``w (n3,)`` over the blocks covering each voxel → ``(n0,)``."""
        n1, n2, n3 = self._lengths(n0)
        u = self.b  # the stage buffers are free once the inverse is done
        u[:n2].zero_()
        for k in range(4):
            u[k:k + n3].add_(w)
        t = self.a
        t[:n1].zero_()
        for k in range(4):
            t[k * self.width:k * self.width + n2].add_(u[:n2])
        den = self.den
        den[:n0].zero_()
        for k in range(4):
            den[k * self.plane:k * self.plane + n1].add_(t[:n1])
        return den[:n0]

    def filter(self, noisy: torch.Tensor, oracle: torch.Tensor | None,
               threshold: float, wiener: bool = False) -> torch.Tensor:
        """One hard-threshold pass over a chunk ``(d, H, W)`` (``wiener``, with an oracle: the
        Wiener gain ``o² / (o² + threshold²)`` instead); returns a ``(d, H, W)`` view of the
        workspace (valid until the next call)."""
        depth = noisy.shape[0]
        n0 = noisy.numel()
        n1, n2, n3 = self._lengths(n0)
        x = noisy.reshape(-1)
        thr = threshold / self.scale
        soft = wiener and oracle is not None
        thr2 = thr * thr if soft else None
        # blocks that count: not wrapped around a row/plane, not all zero
        weight = self.weight[: (depth - _HALO) * self.plane]
        weight.view(depth - _HALO, -1).copy_(self.valid.view(1, -1))
        absx = self.out[:n0]
        torch.abs(x, out=absx)
        weight[:n3].mul_(self._box(absx, n0).gt(0))
        weight[n3:].zero_()
        b_oracle = None if oracle is None else self._forward_zy(oracle.reshape(-1),
                                                                 self.b_oracle)
        b = self._forward_zy(x, self.b)
        b_inv = self.b_inv[: 16 * n2].view(16, n2)
        b_inv.zero_()
        for p0 in range(0, n3, self.block):
            m = min(self.block, n3 - p0)
            coef = self.coef[: 64 * m].view(64, m)
            mask = self.mask[: 64 * m].view(64, m)
            _forward_axis(b[:, p0:p0 + m + _HALO], coef.view(4, 16, m), 1)
            kept = self.box[:m]
            if b_oracle is None:
                torch.abs(coef, out=mask)
            else:
                _forward_axis(b_oracle[:, p0:p0 + m + _HALO], mask.view(4, 16, m), 1)
                if not soft:
                    mask.abs_()
            if soft:  # raw units: o² / (o² + t²), t = threshold / scale
                mask.mul_(mask)
                mask.div_(mask + thr2)
                torch.sum(mask * mask, dim=0, out=kept)  # Σ g²
            else:
                torch.ge(mask, thr, out=mask)
                torch.sum(mask, dim=0, out=kept)
            w = weight[p0:p0 + m]
            w.div_(kept.add_(1.0))
            mask.mul_(w)
            coef.mul_(mask)
            _inverse_axis(coef.view(4, 16, m), b_inv[:, p0:p0 + m + _HALO], 1, self.consts,
                          accumulate=True)
        a = self.a[: 4 * n1].view(4, n1)
        out = self.out[:n0].view(1, n0)
        _inverse_axis(b_inv.view(4, 4, n2), a, self.width, self.consts)
        _inverse_axis(a.view(4, 1, n1), out, self.plane, self.consts)
        num = out[0]
        den = self._box_adjoint(weight[:n3], n0)
        den.clamp_min_(1e-30)
        num.div_(den)
        return num.view(noisy.shape)


# --------------------------------------------------------------------------------------------
# Rician mean and its inverse
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _rician_inverse_table() -> tuple[float, float, np.ndarray]:
    """Inverse Rician mean for σ = 1 on a uniform grid of the mean: ``(m0, step, snr)``.

    ``snr[k]`` is the amplitude whose Rician mean is ``m0 + k·step``; ``m0 = sqrt(π/2)`` (the
    mean at zero amplitude), up to a mean of 60. Sampled finely enough that linear interpolation
    errs by < 1e-5 σ.
    """
    from scipy.special import i0e, i1e

    snr = np.concatenate([np.linspace(0, 10, 20001), np.linspace(10, 62, 10001)[1:]])
    t = snr**2 / 4
    mean = math.sqrt(math.pi / 2) * ((1 + 2 * t) * i0e(t) + 2 * t * i1e(t))
    m0, step = float(mean[0]), 1e-3
    grid = np.arange(m0, 60.0, step)
    return m0, step, np.interp(grid, mean, snr)


def rician_mean_inverse(mean: torch.Tensor, sigma: float) -> torch.Tensor:
    """Underlying amplitude ``A`` whose Rician mean ``E|A + n|`` (noise σ) equals ``mean``.

    Means below the noise floor ``σ·sqrt(π/2)`` map to 0; above ``60σ`` the high-SNR
    approximation ``A = sqrt(mean² − σ²)`` is used (relative error < 1e-6 there).
    """
    if sigma <= 0:
        return mean.clamp_min(0)
    m0, step, table_np = _rician_inverse_table()
    table = torch.as_tensor(table_np, dtype=torch.float32, device=mean.device)
    pos = (mean / sigma - m0).div_(step)
    high = pos >= table.numel() - 1
    pos.clamp_(0, table.numel() - 1)
    idx = pos.long().clamp_(max=table.numel() - 2)
    frac = pos.sub_(idx)
    lo = table[idx]
    out = lo.add_(frac.mul_(table[idx + 1] - lo))
    if bool(high.any()):
        m = mean[high] / sigma
        out[high] = (m.square() - 1).clamp_min(0).sqrt()
    return out.mul_(sigma)
