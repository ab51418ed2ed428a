"""Classical (non-learned) denoising of 3D structural MRI, in torch (CPU or CUDA), Rician-aware.

Public API::

    sigma = estimate_noise_sigma(volume, noise_model="rician", mask=None)        # Coupé 2010
    sigma = estimate_noise_pseudo_residual(volume, noise_model="rician", mask=None)
    out = odct3d(volume, sigma=sigma, noise_model="rician", device="cpu")
    out = prinlm(volume, sigma=sigma, noise_model="rician", search_radius=3, guide=None,
                 device="cpu")
    out, info = denoise(volume, method="prinlm", noise_model="rician", sigma=None,
                        device="cpu", **params)

``volume`` is a 3D numpy array (any real dtype) or torch tensor in any intensity scale; σ is in the
same units. Outputs keep the container and shape; float inputs keep their dtype, integer inputs
give float32. SANLM is reached through :func:`denoise` or ``bids_enhance.classical.sanlm.sanlm``
(the submodule is imported lazily, so it is not re-exported here). See METHODS.md ("Classical denoisers") and docs/benchmarks/denoise.md.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from bids_enhance.classical._common import (
    NOISE_MODELS,
    check_choice,
    check_sigma,
    resolve_device,
)
from bids_enhance.classical.noise import estimate_noise_pseudo_residual, estimate_noise_sigma
from bids_enhance.classical.odct import odct3d
from bids_enhance.classical.prinlm import prinlm
from bids_enhance.steps import DEFAULT_DENOISE_METHOD, DENOISE_METHODS
from bids_enhance.utils import json_safe

__all__ = [
    "METHODS",
    "NOISE_MODELS",
    "REFERENCES",
    "denoise",
    "estimate_noise_pseudo_residual",
    "estimate_noise_sigma",
    "odct3d",
    "prinlm",
]

#: Methods understood by :func:`denoise`.
METHODS: tuple[str, ...] = tuple(DENOISE_METHODS)

#: What to cite for each method of :data:`METHODS` and each noise estimator (the
#: ``sigma_estimator`` of :func:`denoise`'s record): keys of ``bids_enhance/data/boilerplate.bib``,
#: the bibliography of the methods text (``logs/CITATION.md``), the method's own paper first.
REFERENCES: dict[str, tuple[str, ...]] = {
    **{name: method.reference_keys for name, method in DENOISE_METHODS.items()},
    "coupe2010": ("coupe2010", "koay2006"),
    "user": (),
}


def _method_function(method: str):
    """The function of ``method``, named in the registry (imported lazily: SANLM is a separate
    module)."""
    module, _, name = DENOISE_METHODS[method].function.partition(":")
    return getattr(importlib.import_module(module), name)


def denoise(volume, *, method: str = DEFAULT_DENOISE_METHOD, noise_model: str = "rician",
            sigma: float | None = None, device: Any = "cpu", **params) -> tuple[Any, dict]:
    """Denoise a 3D volume with one of the classical methods and describe what was done.

    Parameters
    ----------
    volume
        3D numpy array (any real dtype) or torch tensor ``(D, H, W)``, any intensity scale.
    method
        ``"odct3d"`` (default; the oracle DCT filter), ``"prinlm"`` (ODCT-guided
        rotation-invariant NLM), ``"sanlm"`` (spatially adaptive NLM, as CAT12) or ``"learned"`` (the
        trained denoiser of :mod:`bids_enhance.inference.learned`; its record adds ``model``).
    noise_model
        ``"rician"`` (magnitude images) or ``"gaussian"``.
    sigma
        Noise standard deviation in the volume's units. ``None``: estimated with
        :func:`estimate_noise_sigma` (Coupé et al. 2010). SANLM's smoothing strength adapts
        locally whatever σ is; σ sets its Rician bias correction (2σ²).
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    **params
        Method-specific keyword arguments (e.g. ``search_radius``, ``h_factor``,
        ``patch_radius``); unknown names raise ``TypeError`` listing the accepted ones.

    Returns
    -------
    ``(out, info)``: the denoised volume (same container/shape; dtype as for the method) and a
    JSON-serialisable dict ``{"method", "noise_model", "sigma", "sigma_estimator",
    "parameters", "device", "elapsed_s"}``: ``sigma`` is the float σ used, ``sigma_estimator``
    ``"user"`` or ``"coupe2010"``, ``elapsed_s`` includes the estimation.
    """
    start = time.perf_counter()
    method = check_choice("method", method, METHODS)
    noise_model = check_choice("noise_model", noise_model, NOISE_MODELS)
    dev = resolve_device(device)
    func = _method_function(method)
    defaults = dict(DENOISE_METHODS[method].parameters)  # the signature's (tests/test_steps.py)
    accepted = list(defaults)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"denoise(method={method!r}) got unexpected parameter(s) "
                        f"{', '.join(unknown)}; accepted: {', '.join(accepted)}")
    if sigma is not None:
        sigma, estimator = check_sigma(sigma), "user"
    else:
        sigma, estimator = estimate_noise_sigma(volume, noise_model=noise_model), "coupe2010"
    model = None
    if DENOISE_METHODS[method].learned:  # a trained network: it also says which model ran
        out, model = func(volume, sigma=sigma, noise_model=noise_model, device=dev, **params)
    else:
        out = func(volume, sigma=sigma, noise_model=noise_model, device=dev, **params)
    used = {**defaults, **params}
    if "guide" in used:
        used["guide"] = "user" if used["guide"] is not None else "odct3d"
    if model is not None:  # the record names the model by name and sha256, not by local path
        used = {k: v for k, v in used.items() if k not in ("checkpoint", "sha256")}
    info = {
        "method": method,
        "noise_model": noise_model,
        "sigma": None if sigma is None else float(sigma),
        "sigma_estimator": estimator,
        "parameters": json_safe(dict(used)),
        "device": str(dev),
        "elapsed_s": round(time.perf_counter() - start, 3),
    }
    if model is not None:
        info["model"] = json_safe(model)
    return out, info
