"""Rician and Gaussian noise simulation.

Rician magnitude noise: ``|x + n1 + i*n2|`` with ``n1, n2 ~ N(0, sigma^2)`` (METHODS.md). ``sigma``
is absolute; use :func:`sigma_from_fraction` to express it as a fraction of the robust maximum.
Randomness comes only from the ``numpy.random.Generator`` passed in, so a draw is replayable from
its seed. :class:`Noise` / :class:`RandomNoise` are the pipeline steps (deterministic / random twin).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bids_enhance.degrade._base import (
    DegradationStep,
    Step,
    check_affine,
    check_volume,
    did_you_mean,
    parse_range,
    register,
)
from bids_enhance.image.intensity import robust_max


def sigma_from_fraction(volume: np.ndarray, fraction: float, *, mask: np.ndarray | None = None) -> float:
    """Absolute noise level for ``fraction`` (e.g. 0.03 for 3 %) of the robust maximum."""
    if not 0 <= fraction < 1:
        raise ValueError(f"noise fraction must be in [0, 1), got {fraction}")
    return fraction * robust_max(volume, mask=mask)


def _check(volume: np.ndarray, sigma: float) -> np.ndarray:
    data = np.asarray(volume)
    if data.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {data.shape}")
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite non-negative number, got {sigma}")
    return data


def add_rician_noise(volume: np.ndarray, *, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Return ``|volume + n1 + i n2|`` (float32), ``n1, n2 ~ N(0, sigma^2)`` drawn from ``rng``."""
    data = _check(volume, sigma).astype(np.float32)
    real = data + rng.normal(0.0, sigma, size=data.shape).astype(np.float32)
    imag = rng.normal(0.0, sigma, size=data.shape).astype(np.float32)
    return np.hypot(real, imag)


def add_gaussian_noise(volume: np.ndarray, *, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Return ``volume + n`` (float32), ``n ~ N(0, sigma^2)`` drawn from ``rng``."""
    data = _check(volume, sigma).astype(np.float32)
    return data + rng.normal(0.0, sigma, size=data.shape).astype(np.float32)


class NoiseMethod(enum.StrEnum):
    """Noise model of a :class:`Noise` step."""

    RICIAN = "rician"
    GAUSSIAN = "gaussian"

    @classmethod
    def parse(cls, value: Any, *, name: str = "method") -> NoiseMethod:
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            options = [m.value for m in cls]
            raise ValueError(f"{name} must be one of {options}, got {value!r}"
                             f"{did_you_mean(value, options)}") from None


_ADD = {NoiseMethod.RICIAN: add_rician_noise, NoiseMethod.GAUSSIAN: add_gaussian_noise}


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


@register
@dataclass(frozen=True)
class Noise(DegradationStep):
    """Deterministic noise step: absolute ``sigma``, noise field drawn from ``default_rng(seed)``.

    ``fraction`` (σ as a fraction of the input's robust maximum) is informational: it is what
    :class:`RandomNoise` drew; replay uses ``sigma`` so it never depends on the input's statistics.
    Output: float32, same shape and affine.
    """

    kind: ClassVar[str] = "noise"

    method: NoiseMethod | str = NoiseMethod.RICIAN
    sigma: float = 0.0
    seed: int = 0
    fraction: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "method", NoiseMethod.parse(self.method))
        sigma = float(self.sigma)
        if not np.isfinite(sigma) or sigma < 0:
            raise ValueError(f"sigma must be a finite non-negative number, got {self.sigma!r}")
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "seed", _check_seed(self.seed))
        if self.fraction is not None:
            object.__setattr__(self, "fraction", float(self.fraction))

    def __call__(self, data, affine):
        data = check_volume(data)
        noisy = _ADD[self.method](data, sigma=self.sigma, rng=np.random.default_rng(self.seed))
        return noisy, check_affine(affine)


#: how :class:`RandomNoise` spreads its draws over the fraction range
NOISE_SPACINGS = ("uniform", "log")


@dataclass(frozen=True)
class RandomNoise(Step):
    """Draw a :class:`Noise` step: ``fraction ~ U(low, high)`` of the input's robust maximum.

    ``fraction`` is a number (fixed) or a pair ``(low, high)`` within ``[0, 1)``; ``sigma`` is
    ``fraction · robust_max(data)`` of the data *reaching this step* (after any low-resolution
    step), and the noise field's seed is drawn from the same generator. ``spacing="log"`` draws
    ``log(fraction)`` uniformly instead (as many draws in 1–3 % as in 3–9 %; ``low`` must then
    be > 0).
    """

    method: NoiseMethod | str = NoiseMethod.RICIAN
    fraction: float | tuple[float, float] = (0.01, 0.05)
    spacing: str = "uniform"

    def __post_init__(self):
        object.__setattr__(self, "method", NoiseMethod.parse(self.method))
        object.__setattr__(self, "fraction", parse_range(
            self.fraction, name="fraction", symmetric=False, low=0.0, high=0.999999))
        if self.spacing not in NOISE_SPACINGS:
            raise ValueError(f"spacing must be one of {NOISE_SPACINGS}, got {self.spacing!r}"
                             f"{did_you_mean(str(self.spacing), NOISE_SPACINGS)}")
        if self.spacing == "log" and self.fraction[0] <= 0:
            raise ValueError(f"spacing 'log' needs fraction > 0, got {self.fraction!r}")

    def sample(self, data, affine, *, rng: np.random.Generator) -> Noise:
        low, high = self.fraction
        if self.spacing == "log":
            fraction = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        else:
            fraction = float(rng.uniform(low, high))
        sigma = sigma_from_fraction(check_volume(data), fraction)
        seed = int(rng.integers(0, 2**63 - 1))
        return Noise(method=self.method, sigma=sigma, seed=seed, fraction=fraction)
