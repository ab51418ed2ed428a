"""Enhancement steps. Each ``init_*_wf`` has ``inputnode.in_file`` (normalised image) and
``outputnode.out_file`` / ``outputnode.out_info`` (JSON record of the step), so steps chain in
any order and the training workflow can reuse them."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_enhance.workflows.engine import LiterateWorkflow

_DENOISE_DESC = {
    "prinlm": (
        "was denoised with the prefiltered rotationally invariant non-local means filter "
        "(PRI-NLM) [@manjon2012]: the image was first filtered with the oracle-based 3D "
        "discrete cosine transform filter (ODCT3D) [@manjon2012], and this prefiltered image "
        "guided a rotationally invariant non-local means filter [@buades2005; @coupe2008] "
        "(search radius {radius} voxels)"
    ),
    "sanlm": (
        "was denoised with the spatially adaptive non-local means filter (SANLM) "
        "[@manjon2010; @coupe2008], which adapts the filtering strength to the local noise "
        "level (search radius {radius} voxels, patch radius 1 voxel)"
    ),
}
_NOISE_DESC = {
    "rician": "a Rician noise model (the bias of magnitude images removed from the estimate)",
    "gaussian": "a Gaussian noise model",
}


def init_denoise_wf(*, method: str = "prinlm", noise_model: str = "rician",
                    device: str = "cpu", omp_nthreads: int = 1, mem_gb: float = 1.0,
                    sloppy: bool = False, name: str = "denoise_wf") -> LiterateWorkflow:
    """Classical denoising (PRI-NLM or SANLM) with the noise level estimated from the image.

    Inputs: ``in_file``. Outputs: ``out_file``, ``out_info``, ``sigma`` (normalised units).
    """
    from bids_enhance.interfaces.denoise import ClassicalDenoise

    if method not in _DENOISE_DESC:
        raise ValueError(f"method must be one of {sorted(_DENOISE_DESC)}, got {method!r}")
    workflow = LiterateWorkflow(name=name)
    radius = 1 if sloppy else 3
    workflow.__desc__ = (
        "The image " + _DENOISE_DESC[method].format(radius=radius) + ", implemented in PyTorch "
        f"within *bids_enhance*, with {_NOISE_DESC[noise_model]}. The noise standard deviation "
        "was estimated from the image itself with the object-based wavelet estimator of "
        "@coupe2010, corrected for the Rician bias [@koay2006]. "
    )
    inputnode = pe.Node(niu.IdentityInterface(fields=["in_file"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["out_file", "out_info", "sigma"]),
                         name="outputnode")
    denoise = pe.Node(
        ClassicalDenoise(method=method, noise_model=noise_model, device=device,
                         omp_nthreads=omp_nthreads, use_gpu=device != "cpu", sloppy=sloppy),
        name="denoise", n_procs=omp_nthreads, mem_gb=mem_gb)
    workflow.connect([
        (inputnode, denoise, [("in_file", "in_file")]),
        (denoise, outputnode, [("out_file", "out_file"), ("out_info", "out_info"),
                               ("sigma", "sigma")]),
    ])
    return workflow


_MODEL_DESC = {
    "superres": (
        "The image was super-resolved by a factor of two along each axis with the generator of "
        "a three-player generative adversarial network [@wang2023threeplayer] (residual-in-"
        "residual dense blocks and a 3D voxel shuffle)"
    ),
    "superres-denoise": (
        "The image was super-resolved by a factor of two along each axis, and its noise "
        "removed, with the generator of DISGAN [@wang2023disgan], a generative adversarial "
        "network whose critic is a 3D U-Net informed by the Haar wavelet transform"
    ),
    "motion-gan": (
        "Motion artefacts were reduced with the generator of a three-player generative "
        "adversarial network [@wang2023threeplayer] trained on pairs of clean images and "
        "images with simulated rigid motion"
    ),
    "motion-ddpm": (
        "Motion artefacts were reduced with a conditional denoising diffusion model "
        "[@ho2020ddpm] trained on pairs of clean slices and slices with simulated rigid motion, "
        "sampled with DDIM [@song2021ddim]"
    ),
}
_CONSISTENCY_DESC = {
    "measure": (" The data consistency of the result was measured: the output, degraded again "
                "exactly as the training inputs had been, was compared with the input."),
    "project": (" The result was then made consistent with the input: it was corrected as "
                "little as possible (in the least-squares sense) so that degrading it as the "
                "training inputs had been gives back the input exactly."),
    "off": "",
}


def init_generative_wf(*, step: str, model: dict, consistency: str = "measure",
                       device: str = "cpu", omp_nthreads: int = 1, mem_gb: float = 1.0,
                       mem_budget_gb: float | None = None, seed: int = 0,
                       name: str | None = None) -> LiterateWorkflow:
    """A trained network (``motion``, ``superres`` or ``superres-denoise``) on the image.

    ``model``: the step's verified checkpoint
    (:meth:`bids_enhance.inference.weights.ResolvedModel.to_dict`). Runs
    :class:`~bids_enhance.interfaces.training.GenerativeEnhance` (the node the training
    workflow validates with), which checks the checkpoint's sha256 again when loading it.
    x2 steps write their output on the finer grid covering the input's field of view.

    Inputs: ``in_file``. Outputs: ``out_file``, ``out_info``.
    """
    from bids_enhance.interfaces.training import GenerativeEnhance

    if model.get("step") != step:
        raise ValueError(f"model was resolved for {model.get('step')!r}, not {step!r}")
    if consistency not in _CONSISTENCY_DESC:
        raise ValueError(f"consistency must be one of {sorted(_CONSISTENCY_DESC)}, "
                         f"got {consistency!r}")
    workflow = LiterateWorkflow(name=name or f"{step.replace('-', '_')}_wf")
    summary = model.get("summary") or {}
    key = step if step != "motion" else (model.get("task") or "motion-gan")
    text = _MODEL_DESC.get(key, _MODEL_DESC["motion-gan"])
    text += (f" (model `{summary.get('name')}`, checkpoint sha256 `{model['sha256'][:12]}…`"
             + (f", trained for the `{model['degradation']}` degradation"
                if model.get("degradation") else "") + "), implemented in PyTorch within "
             "*bids_enhance*. ")
    if step in X2_STEPS:
        text += ("The output grid covers the input's field of view with voxels half the size; "
                 "its voxel-to-world transform is the input's composed with the exact inverse "
                 f"of the `{model.get('lowres_method') or 'box'}` down-sampling geometry the "
                 "network was trained to invert, so world coordinates are preserved."
                 + _CONSISTENCY_DESC[consistency] + " ")
    workflow.__desc__ = text
    inputnode = pe.Node(niu.IdentityInterface(fields=["in_file"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["out_file", "out_info"]),
                         name="outputnode")
    enhance = pe.Node(GenerativeEnhance(
        checkpoint=model["path"], expected_sha256=model["sha256"], step=step,
        model_summary={**summary, "origin": model.get("origin"), "card": model.get("card")},
        consistency=consistency if step in X2_STEPS else "off", seed=seed, device=device,
        omp_nthreads=omp_nthreads, use_gpu=device != "cpu",
        **({"mem_gb": float(mem_budget_gb)} if mem_budget_gb else {})),
        name="enhance", n_procs=omp_nthreads, mem_gb=mem_gb)
    workflow.connect([
        (inputnode, enhance, [("in_file", "in_file")]),
        (enhance, outputnode, [("out_file", "out_file"), ("out_info", "out_info")]),
    ])
    return workflow


#: Registry of enhancement steps (``--enhance`` choices) → workflow factory.
STEPS = {
    "motion": init_generative_wf,
    "denoise": init_denoise_wf,
    "superres": init_generative_wf,
    "superres-denoise": init_generative_wf,
}
#: The order a chain applies its steps in, whatever order they were asked for.
CHAIN_ORDER = ("motion", "denoise", "superres", "superres-denoise")
#: Steps whose output lies on the x2 grid (always last in a chain).
X2_STEPS = ("superres", "superres-denoise")
#: ``desc-`` label fragment of each step (base labels listed in ``bids/dataset.py``).
DESC_LABELS = {
    "motion": "motioncorr",
    "denoise": "denoised",
    "superres": "superres",
    "superres-denoise": "superresDenoised",
}
#: ``res-`` label of images on the x2 grid (its meaning goes into the sidecar's ``Resolution``)
X2_RES_LABEL = "x2"
_STEP_PHRASES = {
    "motion": "motion artefacts reduced by a trained model",
    "denoise": "denoised with a classical non-local-means filter (PRI-NLM or SANLM)",
    "superres": "x2 super-resolved by a three-player GAN",
    "superres-denoise": "x2 super-resolved and denoised by DISGAN",
}


def order_chain(steps: list[str]) -> list[str]:
    """``steps`` in :data:`CHAIN_ORDER`, without repeats."""
    unknown = sorted(set(steps) - set(CHAIN_ORDER))
    if unknown:
        raise ValueError(f"unknown enhancement step(s) {unknown}; known: {list(CHAIN_ORDER)}")
    return [s for s in CHAIN_ORDER if s in steps]


def is_x2(steps: list[str]) -> bool:
    return any(s in X2_STEPS for s in steps)


def output_desc(steps: list[str], *, simulated: bool = False) -> str:
    """``desc-`` label of the final image of a chain: ``denoised``, ``denoisedSuperres``,
    ``motioncorrSuperresDenoised``; in simulation mode ``simDenoised``."""
    first, *rest = order_chain(steps)
    label = DESC_LABELS[first] + "".join(DESC_LABELS[s][0].upper() + DESC_LABELS[s][1:]
                                         for s in rest)
    return "sim" + label[0].upper() + label[1:] if simulated else label


def chain_description(steps: list[str], *, simulated: bool = False) -> str:
    """The ``descriptions.tsv`` sentence of :func:`output_desc`'s label."""
    steps = order_chain(steps)
    text = "The source " + ", then ".join(_STEP_PHRASES[s] for s in steps) + " (the sidecar's "
    text += "EnhancementSteps name the methods, models and parameters). "
    if is_x2(steps) and not simulated:
        text += ("On a grid twice as fine covering the same field of view (res-x2; the "
                 "sidecar's Resolution gives the voxel sizes), same intensity scale.")
    elif simulated:
        text = ("Simulation mode: the desc-simulated image " + text[len("The source "):]
                + "Its sidecar compares it with the source (ReferenceMetrics).")
    else:
        text += "Same grid and intensity scale as the source."
    return text


#: Degradation presets each same-grid step can be checked with in simulation mode.
SIMULATION_PRESETS = {
    "denoise": ("denoise-rician", "noise-rician-3", "noise-rician-6", "noise-rician-9",
                "noise-gaussian-3"),
    "motion": ("motion", "motion-ghosting"),
}


def simulation_presets(steps: list[str], *, lowres_method: str | None = None) -> list[str]:
    """Presets that fit a chain in simulation mode. A chain ending in x2 super-resolution is
    simulated by the x2 presets of the model's own low-resolution geometry
    (``lowres_method``, default box); other chains by the presets of their steps. A chain of
    motion correction and super-resolution has none."""
    from bids_enhance.degrade import PRESETS, LowResolution

    steps = order_chain(steps)
    if is_x2(steps):
        if "motion" in steps:
            return []
        method = lowres_method or "box"
        return sorted(name for name, preset in PRESETS.items()
                      if isinstance(preset[0], LowResolution)
                      and preset[0].method.value == method and preset[0].method.value != "thick")
    return sorted({p for s in steps for p in SIMULATION_PRESETS.get(s, ())})
