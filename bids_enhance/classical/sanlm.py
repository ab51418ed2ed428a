"""SANLM: spatially adaptive non-local means (Manjón et al. 2010), blockwise, in torch.

The filter of CAT12's ``sanlm`` and of ITK's adaptive NLM (behind ANTs ``DenoiseImage``), written
as a vectorised shift-and-accumulate over the search cube so that the same code runs on CPU and
CUDA. No σ is needed: the smoothing strength of each block comes from its smallest
mean-subtracted patch distance, which tracks a spatially varying noise level.

Algorithm (all distances are mean squared differences over a patch of ``(2p+1)^3`` voxels)::

    y           the volume, scaled to max |y| = 1 (undone at the end)
    μ, v        mean and sample variance of the 3^3 neighbourhood of every voxel
    valid       y > 0, μ > 1e-5 and v > 1e-10 (voxel is not background and not flat)
    blocks      centres c on the stride-2 grid (0, 2, 4, ... along every axis)
    candidates  c + δ for δ in the search cube [-s, s]^3 \\ {0}, inside the volume, both valid,
                μ_c/μ_{c+δ} in (0.95, 1/0.95) and v_c/v_{c+δ} in (0.5, 2)
    d_min(c)    min over candidates of the patch distance of the mean-subtracted image y − μ
    w(c, δ)     exp(−d(c, c+δ)/d_min(c)) if d ≤ 3·d_min(c) else 0, with d the patch distance of y
    w(c, c)     max_δ w(c, δ) (1 when no candidate has a weight)
    block est.  Σ_δ w(c, δ)·z(patch at c+δ) / Σ_δ w(c, δ), z = y (Gaussian) or y² (Rician)
    voxel est.  mean of the estimates of all blocks whose patch covers the voxel
    Rician      d_min spread over each block's patch, smoothed by a masked 11^3 box mean, turned
                into a bias 2·d_min/ξ(μ/√d_min) (ξ: Koay–Basser correction factor) -- or 2σ²
                when σ is given -- and out = sqrt(max(E[y²] − bias, 0)); voxels with y <= 0 stay 0

Blocks whose centre is not valid, or that have no candidate, keep their own patch (identity).

Implementation: offsets are taken in batches ``(δz, a few δy, all δx)`` -- strided windows of
the padded volume, not copies; one ``δy`` per batch for a whole head, all of them for small
volumes -- and for each batch the squared differences of y and of y − μ are computed on the
full-resolution patch region of a chunk of block rows and summed over each block's patch by a
separable stride-2 box sum; the candidate tests run on the block grid. The distances are
kept for the chunk (offsets × blocks), so the weights can be normalised before a second loop
spreads each block's weights over its patch (the transpose of the box sum) and accumulates
``spread(w_δ) · z(x + δ)``. Chunks are slabs of block rows along the first axis reading a halo
of ``s + p`` voxels; the accumulators cover the volume. Only the box around the voxels > 0 (plus
a margin of ``s + p + 1``) is filtered, which gives the same result faster for zeroed
backgrounds. No Python loop runs over voxels; CPU and CUDA run the same code. Working memory
for a 180×214×180 head: about 1.6 GB on the CPU (chunks of 44 block rows), about 2 GB on CUDA.

Deliberate differences from CAT12's ``sanlm_float.c`` (Manjón's MABONLM3D):

* candidates need both ratio tests (as in the paper and METHODS.md); CAT12 also admits a
  candidate whose *inverted* intensity ratio ``(max − μ_c)/(max − μ_j)`` passes, without the
  variance test;
* the self weight is the block's own largest weight; CAT12 keeps a running maximum over all
  blocks of a thread;
* thresholds are relative to the image maximum (CAT12: absolute 1e-5), and an exact zero d_min
  is floored at 1e-10 (CAT12 sets it to 1 in image units);
* the raw bias map averages the d_min of all blocks covering a voxel (CAT12: the last block
  written); outside the volume patches are mirrored for averaging as well as for distances.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from bids_enhance.classical._common import (
    NOISE_MODELS,
    bounding_box,
    check_choice,
    check_positive_int,
    check_sigma,
    cube_offsets,
    prepare_volume,
    restore_volume,
)

__all__ = ["sanlm"]

LOGGER = logging.getLogger(__name__)

#: Candidate selection thresholds of Manjón et al. (2010), as in CAT12 and ITK.
MEAN_RATIO = 0.95
VARIANCE_RATIO = 0.5
#: Weights are zero beyond this multiple of the block's minimum distance.
MAX_DISTANCE_RATIO = 3.0
_W_MIN_BELOW = float(np.nextafter(np.float32(math.exp(-MAX_DISTANCE_RATIO)), np.float32(0)))
#: Background/flatness thresholds on the image scaled to max |y| = 1.
MEAN_EPS = 1e-5
VARIANCE_EPS = 1e-10
#: Floor of d_min (sum over the patch, scaled image): noise-free patches that match exactly
#: get weight 1, all others 0, so noise-free data pass nearly unchanged.
DMIN_FLOOR = 1e-10
#: Radius of the masked box mean that smooths the Rician bias map (CAT12: 5).
BIAS_SMOOTHING_RADIUS = 5
#: Voxels of one batched buffer (offsets × patch region of a chunk) on the CPU and on CUDA,
#: and the cap on a chunk's stored distances on CUDA.
_CPU_BATCH_VOXELS = 24_000_000
_CUDA_BATCH_VOXELS = 64_000_000
_CUDA_DIST_BYTES = 1 << 30
#: Filter only the box around the voxels > 0 (results are identical; off for tests).
_CROP = True


def sanlm(volume: np.ndarray | torch.Tensor, *, sigma: float | None = None,
          noise_model: str = "rician", search_radius: int = 3, patch_radius: int = 1,
          device: str | torch.device = "cpu") -> np.ndarray | torch.Tensor:
    """Denoise a 3D volume with blockwise spatially adaptive non-local means (SANLM).

    Parameters
    ----------
    volume
        3D array ``(D, H, W)``, numpy (any real dtype) or torch tensor, any intensity scale. The
        method is meant for non-negative magnitude images: blocks centred on voxels <= 0 (and on
        flat voxels) are left unchanged.
    sigma
        Optional noise standard deviation (of the Gaussian noise in each complex channel, in the
        image's intensity units). SANLM needs none: its strength comes from the local minimum
        patch distance. When given and ``noise_model="rician"``, the Rician bias removed from
        the estimate of E[y²] is the known ``2·sigma²`` everywhere instead of the map estimated
        from the local minimum distances. Ignored for ``noise_model="gaussian"``.
    noise_model
        ``"rician"`` (magnitude images: average y², remove the bias, take the square root) or
        ``"gaussian"`` (average y).
    search_radius
        Radius ``s`` of the search cube (``(2s+1)^3 - 1`` candidates per block); CAT12: 3.
    patch_radius
        Radius ``p`` >= 1 of the patches compared and of the blocks spread; CAT12: 1.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; where the arithmetic runs (float32).

    Returns
    -------
    The denoised volume in the input's container and shape (a tensor goes back to its device);
    float inputs keep their dtype, integer inputs give float32. Deterministic.

    Raises
    ------
    ValueError
        For a volume that is not 3D, shorter than ``2·patch_radius + 1`` along an axis, complex
        or non-finite; a bad radius, sigma or noise model.
    RuntimeError
        When CUDA is requested but not available.
    """
    s = check_positive_int("search_radius", search_radius)
    p = check_positive_int("patch_radius", patch_radius)
    noise_model = check_choice("noise_model", noise_model, NOISE_MODELS)
    sigma_value = None if sigma is None else check_sigma(sigma)
    y, spec = prepare_volume(volume, min_size=max(3, 2 * p + 1), device=device)

    rician = noise_model == "rician"
    with torch.no_grad():
        scale = float(y.abs().max())
        # outside the box around the voxels > 0 every block is left as it is: Rician output 0
        # (those voxels are <= 0), Gaussian output y
        out = torch.zeros_like(y) if rician else y.clone()
        box = _crop_box(y > 0, margin=s + p + 1) if scale > 0 else None
        if box is None:
            return restore_volume(out, spec)
        y = y[box] / scale
        est, dmin_map, mean = _blockwise(y, search_radius=s, patch_radius=p, rician=rician,
                                         want_bias=rician and sigma_value is None)
        if rician:
            if sigma_value is None:
                bias = _rician_bias(dmin_map, mean)
            else:
                bias = torch.full_like(est, 2.0 * (sigma_value / scale) ** 2)
            est = est.sub_(bias).clamp_min_(0.0).sqrt_()
            est[y <= 0] = 0.0
        out[box] = est.mul_(scale)
    return restore_volume(out, spec)


# ---------------------------------------------------------------------------------------------
# core
# ---------------------------------------------------------------------------------------------
def _blockwise(y: torch.Tensor, *, search_radius: int, patch_radius: int, rician: bool,
               want_bias: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Return the aggregated estimate of y (or y²), the raw d_min map (or None) and μ.

    Offsets are handled in batches ``(δz, δy in [iy0, iy1), δx = −s..s)`` that form two leading
    batch axes (windows of the padded volume, no copies), which keeps the number of tensor
    operations -- and so the Python and thread-synchronisation overhead -- low.
    """
    s, p = search_radius, patch_radius
    n = tuple(y.shape)
    halo = s + p
    padded = _mirror_pad(y, halo + 1)
    mean_p, var_p = _local_mean_var(padded)  # padded by `halo`
    y_p = padded[1:-1, 1:-1, 1:-1].contiguous()
    del padded
    inner = tuple(slice(halo, halo + k) for k in n)
    mean = mean_p[inner].clone()
    # log-ratio coordinates: a candidate passes when both |differences| are < 1; invalid voxels
    # (outside the volume, y <= 0, flat or dark) are +inf, which fails every comparison
    inside = torch.zeros_like(y_p, dtype=torch.bool)
    inside[inner] = True
    valid_p = inside & (y_p > 0) & (mean_p > MEAN_EPS) & (var_p > VARIANCE_EPS)
    del inside
    ratio_p = torch.stack([mean_p.clamp_min(MEAN_EPS).log_().div_(-math.log(MEAN_RATIO)),
                           var_p.clamp_min(VARIANCE_EPS).log_().div_(-math.log(VARIANCE_RATIO))])
    ratio_p.masked_fill_(~valid_p, math.inf)
    del valid_p, var_p
    resid_p = mean_p.neg_().add_(y_p)  # y − μ, in place of μ
    z_p = y_p * y_p if rician else y_p

    nb = tuple((k + 1) // 2 for k in n)  # blocks per axis
    width = 2 * s + 1  # offsets per axis of the search cube
    rows, dys = _plan(y.device, nb, width, p)
    groups = [(iz, iy, min(width, iy + dys)) for iz in range(width) for iy in range(0, width, dys)]
    npatch = (2 * p + 1) ** 3

    # accumulators cover the volume padded by p (blocks at the border spread into the margin)
    acc = torch.zeros(tuple(k + 2 * p for k in n), dtype=y.dtype, device=y.device)
    bias_num = torch.zeros_like(acc) if want_bias else None
    bias_den = torch.zeros_like(acc) if want_bias else None

    LOGGER.debug("sanlm: %s voxels, %d chunk(s) of %d block rows, %d offsets in batches of %d, "
                 "%s", "x".join(map(str, n)), -(-nb[0] // rows), rows, width**3 - 1,
                 dys * width, y.device)
    for b0 in range(0, nb[0], rows):
        b1 = min(nb[0], b0 + rows)
        blocks = (b1 - b0, *nb[1:])
        # padded coordinates of the chunk's block centres (taken with step 2) and of the region
        # covered by their patches
        centre = [(halo + 2 * b0, halo + 2 * b1 - 1)] + [(halo, halo + 2 * b - 1) for b in nb[1:]]
        region = [(a - p, e + p) for a, e in centre]
        r_idx = _slices(region, (0, 0, 0), 1)
        y_c = y_p[r_idx].contiguous()
        e_c = resid_p[r_idx].contiguous()
        ratio_c = ratio_p[(slice(None), *_slices(centre, (0, 0, 0), 2))][:, None, None]
        dist = torch.empty((width, width, width, *blocks), dtype=y.dtype, device=y.device)
        dmin = torch.full(blocks, math.inf, dtype=y.dtype, device=y.device)
        ws = _Workspace(blocks, p, (dys, width), y.dtype, y.device)

        # pass 1: distances of every candidate, and the minimum mean-subtracted distance
        for iz, iy0, iy1 in groups:
            k = iy1 - iy0
            diff, oz = ws.diff[:k], iz - s
            gap = ratio_c - _windows(ratio_p, centre, oz, iy0, iy1, s, 2)
            cand = (gap.abs_() < 1).all(dim=0)
            if iz == s and iy0 <= s < iy1:
                cand[s - iy0, s] = False  # the block itself is not a candidate
            cand.logical_not_()  # now: "not a candidate"
            torch.sub(e_c, _windows(resid_p, region, oz, iy0, iy1, s, 1), out=diff)
            d = ws.patch_sum(diff.square_()).masked_fill_(cand, math.inf)
            torch.minimum(dmin, d.amin(dim=(0, 1)), out=dmin)
            torch.sub(y_c, _windows(y_p, region, oz, iy0, iy1, s, 1), out=diff)
            ws.patch_sum(diff.square_(), out=dist[iz, iy0:iy1]).masked_fill_(cand, math.inf)

        # weights exp(-d/d_min) where d <= 3 d_min; own weight = the largest; normalised per block
        dist = dist.view(width**3, *blocks)
        has = torch.isfinite(dmin)
        h = torch.where(has, dmin.clamp_min(DMIN_FLOOR), torch.ones_like(dmin))
        weights = dist.div_(h).neg_().exp_()  # the zero offset (never a candidate) gets 0 here
        del dist
        # d <= 3 d_min  <=>  w >= exp(-3); threshold_ keeps w > t, so t is the next float below
        torch.nn.functional.threshold_(weights, _W_MIN_BELOW, 0.0)
        w_self = weights.amax(dim=0)
        weights[width**3 // 2] = torch.where(w_self > 0, w_self, torch.ones_like(w_self))
        weights.div_(weights.sum(dim=0))
        weights = weights.view(width, width, width, *blocks)

        # pass 2: spread each block's weights over its patch and accumulate w·z(x + δ); the
        # zero offset carries the block's own weight
        acc_batch = torch.zeros_like(ws.diff)
        for iz, iy0, iy1 in groups:
            k = iy1 - iy0
            acc_batch[:k].addcmul_(ws.spread(weights[iz, iy0:iy1]),
                                   _windows(z_p, region, iz - s, iy0, iy1, s, 1))
        out = acc_batch.sum(dim=(0, 1))
        a_idx = (slice(2 * b0, 2 * b0 + out.shape[0]), slice(0, out.shape[1]),
                 slice(0, out.shape[2]))  # `acc` is the volume padded by p
        acc[a_idx] += out
        if want_bias:
            one = _Workspace(blocks, p, (1, 1), y.dtype, y.device)
            dmin_mean = torch.where(has, dmin / npatch, torch.zeros_like(dmin))
            bias_num[a_idx] += one.spread(dmin_mean[None, None])[0, 0]
            bias_den[a_idx] += one.spread(has.to(y.dtype)[None, None])[0, 0]
        del weights, acc_batch, out, ws

    count = _cover_count(n, p, y.device, y.dtype)
    inner = tuple(slice(p, p + k) for k in n)
    est = acc[inner].div_(count)
    dmin_map = None
    if want_bias:
        den = bias_den[inner]
        dmin_map = torch.where(den > 0, bias_num[inner] / den.clamp_min(1.0),
                               torch.zeros_like(den))
    return est, dmin_map, mean


def _windows(t: torch.Tensor, bounds: list[tuple[int, int]], oz: int, iy0: int, iy1: int,
             s: int, step: int) -> torch.Tensor:
    """View ``(k, 2s+1, ...)`` of ``t`` over ``bounds`` shifted by ``(oz, δy, δx)``.

    ``δy = iy − s`` for ``iy`` in ``[iy0, iy1)`` (``k`` of them) and ``δx = −s..s``: windows of
    ``t``, no copy. ``t`` is a padded volume, optionally with leading channel axes, which stay
    first. ``step`` is applied to every spatial axis (2 for the block centres).
    """
    (z0, z1), (y0, y1), (x0, x1) = bounds
    lead = t.dim() - 3
    v = t[(slice(None),) * lead + (slice(z0 + oz, z1 + oz, step),
                                   slice(y0 - s + iy0, y1 - s + iy1 - 1),
                                   slice(x0 - s, x1 + s))]
    v = v.unfold(lead + 1, y1 - y0, 1).unfold(lead + 2, x1 - x0, 1)  # (.., nz, k, 2s+1, ly, lx)
    if step > 1:
        v = v[..., ::step, ::step]
    return v.permute(*range(lead), lead + 1, lead + 2, lead, lead + 3, lead + 4)


class _Workspace:
    """Preallocated buffers of one chunk: the stride-2 patch sum and its transpose (spread).

    Tensors carry two leading batch axes (``δy``, ``δx``) of shape ``batch``; ``blocks`` is the
    chunk's block grid; the patch region has ``2b − 1 + 2p`` voxels per axis (block ``k`` is
    centred on region index ``2k + p``). A call may use the first ``k <= batch[0]`` rows of the
    batch. Returned tensors are buffers reused by the next call.
    """

    def __init__(self, blocks: tuple[int, int, int], p: int, batch: tuple[int, int],
                 dtype: torch.dtype, device: torch.device) -> None:
        self.p = p
        reg = [2 * b - 1 + 2 * p for b in blocks]
        kw = {"dtype": dtype, "device": device}
        self.diff = torch.empty(*batch, *reg, **kw)
        # patch sum reduces the last axis, then the middle one, then the first; spread expands
        # them in the same order
        self._sum_bufs = [torch.empty(*batch, reg[0], reg[1], blocks[2], **kw),
                          torch.empty(*batch, reg[0], blocks[1], blocks[2], **kw),
                          torch.empty(*batch, *blocks, **kw)]
        self._spread_bufs = [torch.empty(*batch, blocks[0], blocks[1], reg[2], **kw),
                             torch.empty(*batch, blocks[0], reg[1], reg[2], **kw),
                             torch.empty(*batch, *reg, **kw)]

    def patch_sum(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Sum of ``x`` (batch × region) over the (2p+1)^3 patch of every block (into ``out``)."""
        k = x.shape[0]
        bufs = [b[:k] for b in self._sum_bufs[:2]]
        bufs.append(self._sum_bufs[2][:k] if out is None else out)
        for axis, buf in zip((4, 3, 2), bufs, strict=True):
            b = buf.shape[axis]
            views = [x.narrow(axis, q, 2 * b - 1)[_step2(axis)] for q in range(2 * self.p + 1)]
            torch.add(views[0], views[1], out=buf)
            for v in views[2:]:
                buf.add_(v)
            x = buf
        return x

    def spread(self, w: torch.Tensor) -> torch.Tensor:
        """Transpose of :meth:`patch_sum`: each block value (batch × blocks) added over its patch."""
        k = w.shape[0]
        for axis, buf in zip((4, 3, 2), self._spread_bufs, strict=True):
            buf = buf[:k]
            b = w.shape[axis]
            if self.p == 1:  # centres at odd indices; even index 2m lies between m − 1 and m
                buf[_step2(axis, 1)].copy_(w)
                even = buf[_step2(axis)]
                even.narrow(axis, 0, 1).copy_(w.narrow(axis, 0, 1))
                even.narrow(axis, b, 1).copy_(w.narrow(axis, b - 1, 1))
                torch.add(w.narrow(axis, 0, b - 1), w.narrow(axis, 1, b - 1),
                          out=even.narrow(axis, 1, b - 1))
            else:
                buf.zero_()
                for q in range(2 * self.p + 1):
                    buf.narrow(axis, q, 2 * b - 1)[_step2(axis)].add_(w)
            w = buf
        return w


def _rician_bias(dmin_map: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Bias of E[y²] from the local minimum distance map (CAT12's correction)."""
    smooth = _masked_box_mean(dmin_map, dmin_map > 0, BIAS_SMOOTHING_RADIUS)
    positive = smooth > 0
    snr = mean / smooth.clamp_min(1e-30).sqrt()
    xi = _rician_xi(snr)
    return torch.where(positive, 2.0 * smooth / xi, torch.zeros_like(smooth))


def _rician_xi(snr: torch.Tensor) -> torch.Tensor:
    """Koay–Basser correction factor ξ(θ) = σ_magnitude² / σ²; 1 where it is out of (1e-3, 10)."""
    t2 = snr * snr
    q = t2 / 4
    bracket = (2 + t2) * torch.special.i0e(q) + t2 * torch.special.i1e(q)
    xi = 2 + t2 - (math.pi / 8) * bracket * bracket  # exp(-θ²/2) is folded into i0e, i1e
    bad = ~torch.isfinite(xi) | (xi < 1e-3) | (xi > 10)
    return torch.where(bad, torch.ones_like(xi), xi)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _crop_box(mask: torch.Tensor, *, margin: int) -> tuple[slice, slice, slice] | None:
    """Box around ``mask`` grown by ``margin``, starting on even indices (same block grid).

    Blocks centred outside the box cannot be valid, and those inside read no voxel beyond it
    (``margin`` >= search + patch radius + 1), so filtering the box alone changes nothing.
    """
    if not _CROP:
        return (slice(None),) * 3
    box = bounding_box(mask, margin=margin)
    if box is None:
        return None
    return tuple(slice(b.start - b.start % 2, b.stop) for b in box)


def _plan(device: torch.device, nb: tuple[int, int, int], width: int, p: int) -> tuple[int, int]:
    """Block rows per chunk and ``δy`` values per batch (each batch holds ``δy × width`` offsets).

    A batch buffer holds ``batch × region`` voxels: a cache-friendly size on the CPU, a larger
    one on CUDA. Small volumes take all rows and several ``δy`` at once (few, larger tensor
    operations); large ones take one ``δy`` and as many rows as fit. The distances of a chunk
    (``width^3`` per block) are capped on CUDA.
    """
    plane = (2 * nb[1] - 1 + 2 * p) * (2 * nb[2] - 1 + 2 * p)
    budget = _CUDA_BATCH_VOXELS if device.type == "cuda" else _CPU_BATCH_VOXELS
    whole = (2 * nb[0] - 1 + 2 * p) * plane
    if width * whole <= budget:
        rows, dys = nb[0], max(1, min(width, budget // (width * whole)))
    else:
        rows, dys = max(1, budget // (2 * width * plane)), 1
    if device.type == "cuda":
        rows = min(rows, max(1, _CUDA_DIST_BYTES // (4 * width**3 * nb[1] * nb[2])))
    return int(min(nb[0], rows)), int(dys)


def _slices(bounds: list[tuple[int, int]], offset: tuple[int, int, int],
            step: int) -> tuple[slice, slice, slice]:
    return tuple(slice(a + o, e + o, step) for (a, e), o in zip(bounds, offset, strict=True))


def _mirror_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad every axis by ``pad`` with the mirror image including the edge voxel (any size)."""
    for axis, n in enumerate(x.shape):
        i = torch.arange(-pad, n + pad, device=x.device) % (2 * n)
        i = torch.where(i >= n, 2 * n - 1 - i, i)
        x = x.index_select(axis, i)
    return x


def _local_mean_var(padded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and sample variance (n − 1 = 26) of every 3^3 neighbourhood; output loses 1 per side."""
    inner = padded[1:-1, 1:-1, 1:-1]
    mean = _box3_valid(padded) / 27
    sq = torch.zeros_like(inner)
    core = tuple(inner.shape)
    for off in cube_offsets(1, include_zero=True):
        idx = tuple(slice(1 + o, 1 + o + k) for o, k in zip(off, core, strict=True))
        d = padded[idx] - mean
        sq.addcmul_(d, d)
    return mean, sq.div_(26)


def _box3_valid(x: torch.Tensor) -> torch.Tensor:
    """Sum over 3^3 neighbourhoods, 'valid' convolution (each axis loses 2)."""
    x = x[2:] + x[1:-1] + x[:-2]
    x = x[:, 2:] + x[:, 1:-1] + x[:, :-2]
    return x[..., 2:] + x[..., 1:-1] + x[..., :-2]


def _step2(axis: int, start: int = 0) -> tuple[slice, ...]:
    """Index taking every other element of ``axis`` from ``start``."""
    return (slice(None),) * axis + (slice(start, None, 2),)


def _cover_count(n: tuple[int, int, int], p: int, device: torch.device,
                 dtype: torch.dtype) -> torch.Tensor:
    """Number of blocks whose patch covers each voxel (separable product of 1D counts)."""
    counts = []
    for k in n:
        b = (k + 1) // 2
        one = torch.zeros(2 * b - 1 + 2 * p, dtype=dtype, device=device)
        for q in range(2 * p + 1):
            one[q:q + 2 * b - 1:2] += 1
        counts.append(one[p:p + k])
    return counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :]


def _masked_box_mean(values: torch.Tensor, mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean of ``values`` over the ``mask`` voxels of each (2r+1)^3 box; 0 outside ``mask``."""
    num = _box_same(torch.where(mask, values, torch.zeros_like(values)), radius)
    den = _box_same(mask.to(values.dtype), radius)
    return torch.where(mask, num / den.clamp_min(1.0), torch.zeros_like(values))


def _box_same(x: torch.Tensor, r: int) -> torch.Tensor:
    """Sum over (2r+1) voxels along every axis, zero outside the volume ('same' size).

    Window sums of doubling widths are combined by the binary digits of 2r+1 (a handful of
    additions per axis, deterministic on every device, no cumulative-sum round-off).
    """
    width = 2 * r + 1
    for axis in range(3):
        n = x.shape[axis]
        zeros = torch.zeros_like(x.narrow(axis, 0, 1)).expand(
            *[r if a == axis else k for a, k in enumerate(x.shape)])
        part = torch.cat([zeros, x, zeros], dim=axis)  # sums of `span` voxels, span = 1, 2, 4...
        out, pos, span = None, 0, 1
        while True:
            if width & span:
                piece = part.narrow(axis, pos, n)
                out = piece.clone() if out is None else out.add_(piece)
                pos += span
            if 2 * span > width:
                break
            length = part.shape[axis] - span
            part = part.narrow(axis, 0, length) + part.narrow(axis, span, length)
            span *= 2
        x = out
    return x
