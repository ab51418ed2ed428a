"""Stein's unbiased risk estimate (SURE) of a denoiser's error, measured on the image itself.

For an image ``y = x + n`` with white Gaussian noise of standard deviation σ and a denoiser
``f``, Stein (1981) showed that

    SURE(f) = ‖f(y) − y‖² − Nσ² + 2σ² div f(y)

is an unbiased estimate of the squared error ‖f(y) − x‖² over N voxels, without knowing ``x``.
``div f(y) = Σᵢ ∂fᵢ/∂yᵢ`` of a black-box denoiser is estimated by Monte Carlo (Ramani et al.
2008): ``bᵀ (f(y + εb) − f(y)) / ε`` for one standard normal probe ``b``. Magnitude images carry
Rician, not Gaussian, noise; inside the head (signal well above σ) Rician noise is close to
Gaussian, which is why the estimate is taken there only.

:func:`sure_blend_weight` uses it to average two denoisers' outputs with the weight that
minimises SURE: the learned denoiser and PRI-NLM (``learned_denoise(aggregate="prinlm")``), so
that the network's residual cannot make an image of a contrast it never saw worse than the
classical filter. docs/benchmarks/denoise.md ("SURE-weighted average") has the measurements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["REFERENCE_KEYS", "SureBlend", "mc_divergence", "sure_blend", "sure_blend_weight", "sure_mse"]

#: What to cite for the estimate (keys of ``bids_enhance/data/boilerplate.bib``).
REFERENCE_KEYS: tuple[str, ...] = ("stein1981", "ramani2008")

#: The Monte-Carlo step ε as a fraction of σ (Ramani et al. 2008 use a small fraction of the
#: noise level; at 0.05σ the estimate of PRI-NLM's and the network's divergence is stable).
EPS_FRACTION = 0.05


def mc_divergence(denoiser: Callable[[np.ndarray], np.ndarray], volume: np.ndarray,
                  out: np.ndarray, *, sigma: float, mask: np.ndarray | None = None,
                  seed: int = 0) -> float:
    """Monte-Carlo estimate of ``Σᵢ∈mask ∂fᵢ/∂yᵢ`` of ``denoiser`` at ``volume``.

    ``out`` is ``denoiser(volume)``; one more call runs on ``volume + εb`` (``b`` standard
    normal from ``seed``, ε = :data:`EPS_FRACTION` σ). ``mask`` (boolean, like ``volume``):
    the voxels the sum runs over; ``None``: all.
    """
    b = np.random.default_rng(seed).standard_normal(volume.shape).astype(np.float32)
    eps = EPS_FRACTION * float(sigma)
    moved = denoiser((volume + eps * b).astype(volume.dtype, copy=False))
    change = (np.asarray(moved, dtype=np.float64) - out) * b
    return float((change[mask] if mask is not None else change).sum() / eps)


def _sure(squares: float, n: float, divergence: float, sigma: float) -> float:
    """SURE of the mean squared error from its sums: ‖f(y) − y‖², N and div f over N voxels."""
    return (squares - n * sigma ** 2 + 2 * sigma ** 2 * divergence) / n


def _best_weight(dd: float, dr: float, div_change: float, sigma: float) -> float:
    """The minimiser in [0, 1] of SURE(w) ∝ ‖r + w·d‖² + 2σ² w·div_change (a parabola in w):
    ``dd`` = ‖d‖², ``dr`` = ⟨d, r⟩; 0 when ``d`` is 0 (the two outputs are the same)."""
    if dd <= 0.0:
        return 0.0
    return float(np.clip(-(dr + sigma ** 2 * div_change) / dd, 0.0, 1.0))


def sure_mse(volume: np.ndarray, out: np.ndarray, divergence: float, *, sigma: float,
             mask: np.ndarray | None = None) -> float:
    """SURE of the mean squared error of ``out`` over ``mask`` (``divergence`` over the same
    voxels, from :func:`mc_divergence`), in the volume's units squared."""
    diff = np.asarray(out, dtype=np.float64) - volume
    if mask is not None:
        diff = diff[mask]
    return float(_sure(float((diff ** 2).sum()), diff.size, divergence, sigma))


def sure_blend_weight(volume: np.ndarray, out_a: np.ndarray, out_b: np.ndarray,
                      div_a: float, div_b: float, *, sigma: float,
                      mask: np.ndarray | None = None) -> float:
    """The weight ``w`` in [0, 1] for which ``w·out_a + (1 − w)·out_b`` has the smallest SURE.

    SURE of the average is a parabola in ``w`` (the divergence is linear in it), so the minimum
    is closed-form, clipped to [0, 1]; 0 when the two outputs are identical.
    """
    d = np.asarray(out_a, dtype=np.float64) - out_b
    r = np.asarray(out_b, dtype=np.float64) - volume
    if mask is not None:
        d, r = d[mask], r[mask]
    return _best_weight(float((d * d).sum()), float((d * r).sum()), div_a - div_b, sigma)


@dataclass(frozen=True)
class SureBlend:
    """What :func:`sure_blend` measured: the weight of the second denoiser and SURE's root mean
    squared error (volume units) of each output and of their average, over ``voxels``."""

    weight: float
    rmse_first: float
    rmse_second: float
    rmse_blend: float
    voxels: int
    region: str

    @property
    def gain_db(self) -> float:
        """SURE's estimate of what the average gains over the first denoiser alone, in dB of
        RMSE (``20·log10(rmse_first / rmse_blend)``; ≥ 0, as the weight minimises SURE; 0
        when the estimate of either is 0)."""
        if self.rmse_blend <= 0.0 or self.rmse_first <= 0.0:
            return 0.0
        return float(max(20.0 * np.log10(self.rmse_first / self.rmse_blend), 0.0))

    def to_dict(self) -> dict:
        return asdict(self)


def _rmse(mse: float) -> float:
    return float(np.sqrt(max(mse, 0.0)))


def sure_blend(first: Callable[[np.ndarray], np.ndarray],
               second: Callable[[np.ndarray], np.ndarray],
               pieces: Iterable[tuple[np.ndarray, np.ndarray | None]], *, sigma: float,
               region: str = "", seed: int = 0) -> SureBlend:
    """Weigh ``second`` against ``first`` on ``pieces`` of an image (``(volume, mask)`` pairs:
    crops, and the voxels of each that count): both denoisers run twice on every piece (on it
    and on a probe of it), and the weight ``w`` of ``second`` in ``(1 − w)·first + w·second``
    is the one that minimises SURE summed over all the pieces' masks."""
    n = dd = dr = ra = rb = div_a = div_b = 0.0
    for k, (volume, mask) in enumerate(pieces):
        volume = np.ascontiguousarray(volume, dtype=np.float32)
        out_a = np.asarray(first(volume), dtype=np.float32)
        out_b = np.asarray(second(volume), dtype=np.float32)
        div_a += mc_divergence(first, volume, out_a, sigma=sigma, mask=mask, seed=seed + k)
        div_b += mc_divergence(second, volume, out_b, sigma=sigma, mask=mask, seed=seed + k)
        r = np.asarray(out_a, dtype=np.float64) - volume  # first's residual
        d = np.asarray(out_b, dtype=np.float64) - out_a   # what moving to second changes
        if mask is not None:
            r, d = r[mask], d[mask]
        n += r.size
        dd += float((d * d).sum())
        dr += float((d * r).sum())
        ra += float((r * r).sum())
        rb += float(((r + d) ** 2).sum())
    if n == 0:
        raise ValueError("sure_blend needs at least one voxel")
    w = _best_weight(dd, dr, div_b - div_a, sigma)
    return SureBlend(
        weight=w,
        rmse_first=_rmse(_sure(ra, n, div_a, sigma)),
        rmse_second=_rmse(_sure(rb, n, div_b, sigma)),
        rmse_blend=_rmse(_sure(ra + 2 * w * dr + w * w * dd, n,
                               (1.0 - w) * div_a + w * div_b, sigma)),
        voxels=int(n),
        region=region,
    )
