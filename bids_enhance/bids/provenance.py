"""What an image sidecar records beyond the BIDS fields: the references of each enhancement step,
the reason for every metric without a value, and where the noise estimate is.

Used by :func:`bids_enhance.bids.sidecar.build_sidecar`, which builds the sidecars.

- **References.** Every entry of ``EnhancementSteps`` has ``References``: the papers of its
  method (a classical filter and its noise estimator, or the network a model was trained as),
  each ``{"Key", "Citation", "DOI"?, "URL"?}``. ``Key`` is the key of the entry in
  ``bids_enhance/data/boilerplate.bib``, the bibliography of the methods text, so it is also
  the key in the run's ``logs/CITATION.bib``.
- **Missing values.** Strict JSON has no NaN or infinity: a metric that is not a finite number
  is written as ``null``. The group that records such metrics (``QualityMetrics``,
  ``ReferenceMetrics``, a step's ``ConsistencyError``) then has a ``NotAvailable`` map that
  mirrors the path of every ``null`` and gives its reason, e.g.
  ``"QualityMetrics": {"After": {"fber": null, …}, "NotAvailable": {"After": {"fber": "…"}}}``.
- **Noise.** The noise standard deviation is recorded once, by the step that estimated it
  (``EnhancementSteps[i].NoiseSigma``, in the input's intensity units, with
  ``NoiseSigmaEstimator``): it is the noise of that step's input, which is the source only
  when nothing ran before it (a motion-corrected or simulated image has other noise).
  :func:`bids_enhance.reports.fragments.noise_sigma` reads it (and the top-level
  ``EstimatedNoiseSigma`` of sidecars written by bids_enhance 0.1.0).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any

from bids_enhance.steps import STACK_CHANNEL_METHODS, STEPS, StepRecord

__all__ = [
    "MODEL_REFERENCES",
    "NOT_AVAILABLE",
    "consistency_reasons",
    "iqm_reasons",
    "reference_metric_reasons",
    "references",
    "step_reference_keys",
]

#: Key of the map of reasons for the ``null`` values of a group of metrics.
NOT_AVAILABLE = "NotAvailable"

#: What to cite for each model task (``task`` of a checkpoint, ``Model.Task`` in the sidecar),
#: from the step registry (:attr:`bids_enhance.steps.Step.task_references`).
MODEL_REFERENCES: dict[str, tuple[str, ...]] = {
    task: keys for step in STEPS.values() for task, keys in step.task_references.items()}


# --------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------
@functools.cache
def _bibliography() -> dict:
    from bids_enhance.reports.boilerplate import load_bibliography

    return load_bibliography()


def step_reference_keys(record: Mapping[str, Any]) -> tuple[str, ...]:
    """Bibliography keys of one enhancement step, from its record (the ``out_info`` of
    :class:`~bids_enhance.interfaces.denoise.ClassicalDenoise` or of
    :class:`~bids_enhance.interfaces.generative.GenerativeEnhance`).

    A classical step cites its filter, then the noise estimator when σ was estimated; a trained
    model cites the network of its task, then the classical filter it ran first (a
    ``prefilter`` record); the learned denoiser also cites the filter its model refines. Unknown methods or tasks cite nothing.
    """
    from bids_enhance.classical import REFERENCES

    if StepRecord.from_info(record).generative:  # a trained network
        keys = [*MODEL_REFERENCES.get(str(record.get("model")), ())]
        prefilter = record.get("prefilter")
        if isinstance(prefilter, Mapping):  # the classical filter it ran first
            keys += step_reference_keys({"method": prefilter.get("method"),
                                         "sigma": prefilter.get("sigma"),
                                         "sigma_estimator": prefilter.get("sigma_estimator")})
        return tuple(dict.fromkeys(keys))
    keys = [*REFERENCES.get(str(record.get("method")), ())]
    model = record.get("model")
    if isinstance(model, Mapping) and model.get("prefilter"):  # a learned denoiser's filter
        keys += REFERENCES.get(str(model["prefilter"]), ())
        channel = STACK_CHANNEL_METHODS.get(str(model.get("prefilter_stack")))
        if channel:  # another method's output given to the network as a channel
            keys += REFERENCES.get(channel, ())
    if isinstance(model, Mapping) and isinstance(model.get("aggregate"), Mapping):
        from bids_enhance.classical.sure import REFERENCE_KEYS

        keys += REFERENCES.get(str(model["aggregate"].get("method")), ())  # averaged with it
        keys += REFERENCE_KEYS  # the weight: Stein's unbiased risk estimate
    if record.get("sigma") is not None:
        keys += REFERENCES.get(str(record.get("sigma_estimator")), ())
    return tuple(dict.fromkeys(keys))


def references(keys: Iterable[str]) -> list[dict[str, str]]:
    """``[{"Key", "Citation", "DOI"?, "URL"?}]`` of ``keys`` from the package bibliography.

    ``Citation`` is one line (authors, year, title, venue); ``URL`` is the DOI's address, or the
    arXiv page of a paper without a DOI. Raises ``KeyError`` naming a key the bibliography
    lacks (a typo in a registry, caught by the tests).
    """
    entries = _bibliography()
    out = []
    for key in dict.fromkeys(keys):
        if key not in entries:
            raise KeyError(f"{key!r} is not in bids_enhance/data/boilerplate.bib; known keys: "
                           f"{', '.join(sorted(entries))}")
        entry = entries[key]
        item = {"Key": key, "Citation": _citation(entry)}
        doi = entry.get("doi")
        if doi:
            item["DOI"] = doi
            item["URL"] = f"https://doi.org/{doi}"
        elif entry.get("eprint") and entry.get("archiveprefix").lower() == "arxiv":
            item["URL"] = f"https://arxiv.org/abs/{entry.get('eprint')}"
        out.append(item)
    return out


def _citation(entry) -> str:
    names = entry.authors()
    if len(names) > 2 or (len(names) == 2 and names[1] == "et al."):
        authors = f"{names[0]} et al."
    else:
        authors = " and ".join(names) or entry.key
    text = f"{authors} ({entry.get('year') or 'n.d.'}). {entry.get('title')}."
    venue = entry.get("journal") or entry.get("booktitle")
    if venue:
        volume, number, pages = entry.get("volume"), entry.get("number"), entry.get("pages")
        if entry.kind == "article" and volume:
            venue += f" {volume}" + (f"({number})" if number else "")
            venue += f":{pages}" if pages else ""
        elif pages:
            venue += f", {pages}"
        text += (" In " if entry.kind == "inproceedings" else " ") + f"{venue}."
    elif entry.get("publisher"):
        text += f" {entry.get('publisher')}."
    return text


# --------------------------------------------------------------------------------------------
# Reasons for null metrics
# --------------------------------------------------------------------------------------------
def _missing(value) -> bool:
    """Whether ``value`` is written as ``null`` (None, NaN or infinite)."""
    if value is None:
        return True
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def iqm_reasons(values: Mapping[str, Any]) -> dict[str, str]:
    """``{metric: reason}`` for the IQMs of ``values`` (one image's
    :func:`~bids_enhance.metrics.iqm.compute_iqms` result, or its JSON form) that are not
    finite numbers; the reasons come from :func:`bids_enhance.metrics.iqm.undefined_reason`."""
    from bids_enhance.metrics.iqm import undefined_reason

    return {key: undefined_reason(key, values) for key, value in values.items()
            if _missing(value)}


#: Why a full-reference metric (:func:`bids_enhance.metrics.quality.evaluate`) is infinite or
#: undefined.
_REFERENCE_REASONS = {
    "psnr": "infinite: the image equals the reference in the head mask (mean squared error 0)",
    "nrmse": "infinite: the reference is zero in the head mask",
    "hfen": "infinite: the reference has no detail in the head mask (its Laplacian of Gaussian "
            "is zero)",
    "ssim": "undefined: the images have no finite values in the head mask",
}


def reference_metric_reasons(comparison: Mapping[str, Any]) -> dict[str, Any]:
    """The ``NotAvailable`` map of a ``ReferenceMetrics`` record
    (:func:`~bids_enhance.metrics.comparison.compare_to_reference`): ``{"enhanced": {metric:
    reason}, "baselines": {name: {metric: reason}}}``, only where a value is missing."""
    def reasons(values) -> dict[str, str]:
        return {key: _REFERENCE_REASONS.get(key, "not a finite number")
                for key, value in (values or {}).items() if _missing(value)}

    out: dict[str, Any] = {}
    if reasons(comparison.get("enhanced")):
        out["enhanced"] = reasons(comparison.get("enhanced"))
    baselines = {name: reasons(values)
                 for name, values in (comparison.get("baselines") or {}).items()}
    if any(baselines.values()):
        out["baselines"] = {name: r for name, r in baselines.items() if r}
    return out


#: Why a value of a data-consistency record
#: (:func:`bids_enhance.inference.consistency.consistency_error`) is undefined.
_CONSISTENCY_REASONS = {
    "relative_rms_error": "undefined: the input of the step is zero everywhere (no norm to "
                          "divide by)",
    "rmse_percent": "undefined: the robust maximum of the input of the step is 0",
    "max_percent": "undefined: the robust maximum of the input of the step is 0",
}


def consistency_reasons(record: Mapping[str, Any] | None) -> dict[str, str]:
    """``{key: reason}`` for the missing values of a data-consistency record."""
    return {key: _CONSISTENCY_REASONS.get(key, "not a finite number")
            for key, value in (record or {}).items()
            if key != "method" and _missing(value)}
