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


#: Registry of enhancement steps (``--enhance`` choices) → workflow factory.
STEPS = {
    "denoise": init_denoise_wf,
}
#: ``desc-`` label fragment of each step (listed in ``bids/dataset.py:DESCRIPTIONS``).
DESC_LABELS = {
    "denoise": "denoised",
}


def output_desc(steps: list[str], *, simulated: bool = False) -> str:
    """``desc-`` label of the final image of a chain: ``denoised``, later e.g. ``denoisedSr``;
    in simulation mode ``simDenoised``."""
    first, *rest = steps
    label = DESC_LABELS[first] + "".join(DESC_LABELS[s].capitalize() for s in rest)
    return "sim" + label[0].upper() + label[1:] if simulated else label


#: Degradation presets each chain can be checked with in simulation mode (same-grid presets).
SIMULATION_PRESETS = {
    "denoise": ("denoise-rician", "noise-rician-3", "noise-rician-6", "noise-rician-9",
                "noise-gaussian-3"),
}
