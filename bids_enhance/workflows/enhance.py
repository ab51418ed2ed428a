"""Enhancement steps. Each ``init_*_wf`` has ``inputnode.in_file`` (normalised image) and
``outputnode.out_file`` / ``outputnode.out_info`` (JSON record of the step), so steps chain in
any order and the training workflow can reuse them."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_enhance import steps as registry
from bids_enhance.workflows.engine import LiterateWorkflow

# The chain vocabulary lives with the chain spec (no nipype there); re-exported here.
from bids_enhance.workflows.spec import DESC_LABELS as DESC_LABELS
from bids_enhance.workflows.spec import X2_RES_LABEL as X2_RES_LABEL
from bids_enhance.workflows.spec import is_x2 as is_x2
from bids_enhance.workflows.spec import order_chain as order_chain
from bids_enhance.workflows.spec import output_desc as output_desc

_NOISE_DESC = {
    "rician": "a Rician noise model (the bias of magnitude images removed from the estimate)",
    "gaussian": "a Gaussian noise model",
}


def init_denoise_wf(*, method: str = registry.DEFAULT_DENOISE_METHOD,
                    noise_model: str = "rician", device: str = "cpu", omp_nthreads: int = 1,
                    mem_gb: float = 1.0, sloppy: bool = False, model: dict | None = None,
                    name: str = "denoise_wf") -> LiterateWorkflow:
    """Denoising (a classical filter, or the learned denoiser) with the noise level estimated
    from the image.

    ``model``: the learned method's verified checkpoint
    (:meth:`bids_enhance.inference.weights.ResolvedModel.to_dict`; None: the shipped weights).
    Inputs: ``in_file``. Outputs: ``out_file``, ``out_info``, ``sigma`` (normalised units).
    """
    from bids_enhance.interfaces.denoise import ClassicalDenoise

    if method not in registry.PIPELINE_METHODS:
        raise ValueError(f"method must be one of {sorted(registry.PIPELINE_METHODS)}, "
                         f"got {method!r}")
    workflow = LiterateWorkflow(name=name)
    spec = registry.DENOISE_METHODS[method]
    params = {**spec.parameters, **(spec.sloppy if sloppy else {})}
    if spec.learned:
        from bids_enhance.degrade import prefilter_of

        summary = (model or {}).get("summary") or {}
        named = (f" (model *{summary.get('name')}*, sha256 {model['sha256'][:12]}…)"
                 if model else "")
        prefilter = prefilter_of((model or {}).get("degradation"))
        sigma_use = "For the report, the noise standard deviation"
        refine = ""
        if prefilter is not None:
            first = registry.DENOISE_METHODS[prefilter.method]
            given = {"input": " It is given both that output and the noisy image, as two "
                              "channels.",
                     "input+sigma": " It is given that output, the noisy image and a map of the "
                                    "noise standard deviation, as three channels.",
                     "input+prinlm": " It is given that output, the noisy image and the output "
                                     "of PRI-NLM with the same noise level, as three channels."}
            cite = "; ".join(f"@{key}" for key in first.reference_keys)
            refine = (f" The network refines the output of {first.abbreviation} "
                      f"[{cite}], which was applied first, as in training."
                      + given.get(prefilter.stack, ""))
            sigma_use = f"For {first.abbreviation} and the report, the noise standard deviation"
        if params.get("aggregate"):  # learned_denoise(aggregate=...): a SURE-weighted average
            from bids_enhance.classical.sure import REFERENCE_KEYS
            from bids_enhance.inference.learned import SURE_CUBE, SURE_OCTANTS

            other = registry.DENOISE_METHODS[params["aggregate"]]
            cite = "; ".join(f"@{key}" for key in (*other.reference_keys, *REFERENCE_KEYS))
            least = float(params.get("min_gain_db") or 0.0)
            skip = (f"; where that estimate put the average's gain over the network alone "
                    f"below {least:g} dB, the network's output was used" if least > 0 else "")
            refine += (f" The network's output was then averaged with that of {other.abbreviation}"
                       f" (same noise level) [{cite}], with the weight that minimised Stein's "
                       f"unbiased risk estimate of the error, computed by Monte Carlo on "
                       f"{len(SURE_OCTANTS)} cubes of {SURE_CUBE}³ voxels spread over the "
                       f"head{skip} (the weights are recorded in the sidecar).")
        from bids_enhance.inference.learned import CROP_BELOW, HEAD_MARGIN

        refine += (f" Where the head filled less than {CROP_BELOW:.0%} of the field of view, "
                   f"the denoising ran on the head's bounding box grown by {HEAD_MARGIN} voxels, "
                   "and the background outside it was set to a local mean (recorded in the "
                   "sidecar).")
        workflow.__desc__ = (
            "The image " + spec.methods_text + named + ", in PyTorch within *bids_enhance*."
            + refine + f" {sigma_use} of its input was estimated with the object-based wavelet "
            "estimator of @coupe2010, corrected for the Rician bias [@koay2006]. ")
    else:
        workflow.__desc__ = (
            "The image " + spec.methods_text.format(**params) + ", implemented in PyTorch "
            f"within *bids_enhance*, with {_NOISE_DESC[noise_model]}. The noise standard "
            "deviation was estimated from the image itself with the object-based wavelet "
            "estimator of @coupe2010, corrected for the Rician bias [@koay2006]. "
        )
    inputnode = pe.Node(niu.IdentityInterface(fields=["in_file"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["out_file", "out_info", "sigma"]),
                         name="outputnode")
    denoise = pe.Node(
        ClassicalDenoise(method=method, noise_model=noise_model, device=device,
                         omp_nthreads=omp_nthreads, use_gpu=device != "cpu", sloppy=sloppy),
        name="denoise", n_procs=omp_nthreads, mem_gb=mem_gb)
    if spec.learned and model:
        denoise.inputs.checkpoint = model["path"]
        denoise.inputs.checkpoint_sha256 = model["sha256"]
    workflow.connect([
        (inputnode, denoise, [("in_file", "in_file")]),
        (denoise, outputnode, [("out_file", "out_file"), ("out_info", "out_info"),
                               ("sigma", "sigma")]),
    ])
    return workflow


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
                       phase_encoding: tuple[int, str] | None = None,
                       name: str | None = None) -> LiterateWorkflow:
    """A trained network (``motion``, ``superres`` or ``superres-denoise``) on the image.

    ``model``: the step's verified checkpoint
    (:meth:`bids_enhance.inference.weights.ResolvedModel.to_dict`). Runs
    :class:`~bids_enhance.interfaces.generative.GenerativeEnhance` (the node the training
    workflow validates with), which checks the checkpoint's sha256 again when loading it.
    x2 steps write their output on the finer grid covering the input's field of view.

    ``phase_encoding``: ``motion`` only, ``(voxel axis, where it came from)`` of the image's
    phase encoding, along which its motion ghosts run (see
    :func:`bids_enhance.bids.metadata.motion_phase_encoding`).

    Inputs: ``in_file``. Outputs: ``out_file``, ``out_info``.
    """
    from bids_enhance.degrade import prefilter_of
    from bids_enhance.interfaces.generative import GenerativeEnhance

    if model.get("step") != step:
        raise ValueError(f"model was resolved for {model.get('step')!r}, not {step!r}")
    if consistency not in _CONSISTENCY_DESC:
        raise ValueError(f"consistency must be one of {sorted(_CONSISTENCY_DESC)}, "
                         f"got {consistency!r}")
    workflow = LiterateWorkflow(name=name or f"{step.replace('-', '_')}_wf")
    summary = model.get("summary") or {}
    spec = registry.STEPS[step]  # methods text by training task, else the step's first task's
    text = spec.methods_text.get(model.get("task") or "", spec.methods_text[spec.tasks[0]])
    text += (f" (model `{summary.get('name')}`, checkpoint sha256 `{model['sha256'][:12]}…`"
             + (f", trained for the `{model['degradation']}` degradation"
                if model.get("degradation") else "") + "), implemented in PyTorch within "
             "*bids_enhance*. ")
    prefilter = prefilter_of(model.get("degradation"))
    if prefilter is not None:
        first = registry.DENOISE_METHODS[prefilter.method]
        text += (f"The network was trained on, and given, the output of {first.abbreviation} "
                 f"[@{first.reference_keys[0]}] applied to its input first (the noise standard "
                 "deviation estimated from the image with the object-based wavelet estimator of "
                 "@coupe2010, corrected for the Rician bias [@koay2006]). ")
    if step in registry.X2_STEPS:
        text += ("The output grid covers the input's field of view with voxels half the size; "
                 "its voxel-to-world transform is the input's composed with the exact inverse "
                 f"of the `{model.get('lowres_method') or 'box'}` down-sampling geometry the "
                 "network was trained to invert, so world coordinates are preserved."
                 + _CONSISTENCY_DESC[consistency] + " ")
    if phase_encoding is not None:
        letter = "ijk"[phase_encoding[0]]
        if phase_encoding[1].startswith("assumed"):
            text += ("No phase-encoding direction was given in the image's metadata; its motion "
                     f"ghosts were assumed to run along the last voxel axis ({letter}), the one "
                     "the network saw them along in training. ")
        elif phase_encoding[1].startswith("simulated"):
            text += ("The simulated motion ghosts run along the voxel axis the network saw them "
                     f"along in training ({letter}). ")
        else:
            text += (f"The image's phase-encoding axis ({letter}, its PhaseEncodingDirection), "
                     "along which motion ghosts run, was shown to the network as the axis it "
                     "saw them along in training. ")
    workflow.__desc__ = text
    inputnode = pe.Node(niu.IdentityInterface(fields=["in_file"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["out_file", "out_info"]),
                         name="outputnode")
    enhance = pe.Node(GenerativeEnhance(
        checkpoint=model["path"], expected_sha256=model["sha256"], step=step,
        model_summary={**summary, "origin": model.get("origin"), "card": model.get("card")},
        consistency=consistency if step in registry.X2_STEPS else "off", seed=seed, device=device,
        omp_nthreads=omp_nthreads, use_gpu=device != "cpu",
        **({"mem_gb": float(mem_budget_gb)} if mem_budget_gb else {}),
        **({"phase_encoding_axis": int(phase_encoding[0]),
            "phase_encoding_source": phase_encoding[1]} if phase_encoding else {})),
        name="enhance", n_procs=omp_nthreads, mem_gb=mem_gb)
    workflow.connect([
        (inputnode, enhance, [("in_file", "in_file")]),
        (enhance, outputnode, [("out_file", "out_file"), ("out_info", "out_info")]),
    ])
    return workflow


#: The order a chain applies its steps in, whatever order they were asked for.
CHAIN_ORDER = registry.CHAIN_ORDER
#: Steps whose output lies on the x2 grid (always last in a chain).
X2_STEPS = registry.X2_STEPS
#: Enhancement steps (``--enhance`` choices) → workflow factory.
STEPS = {name: init_generative_wf if step.generative else init_denoise_wf
         for name, step in registry.STEPS.items()}
_STEP_PHRASES = {name: step.phrase for name, step in registry.STEPS.items()}


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
SIMULATION_PRESETS = {name: step.presets for name, step in registry.STEPS.items()
                      if step.presets}


def simulation_presets(steps: list[str], *, lowres_method: str | None = None) -> list[str]:
    """Presets that fit a chain in simulation mode. A chain ending in x2 super-resolution is
    simulated by the x2 presets of the model's own low-resolution geometry
    (``lowres_method``, default box); other chains by the presets of their steps. A chain of
    motion correction and super-resolution has none."""
    from bids_enhance.degrade import PRESETS, LowResolution

    steps = order_chain(steps)
    if is_x2(steps):
        if registry.MOTION.name in steps:
            return []
        method = lowres_method or "box"
        return sorted(name for name, preset in PRESETS.items()
                      if isinstance(preset[0], LowResolution)
                      and preset[0].method.value == method and preset[0].method.value != "thick")
    return sorted({p for s in steps for p in SIMULATION_PRESETS.get(s, ())})
