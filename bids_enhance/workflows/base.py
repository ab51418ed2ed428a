"""The participant workflow: one sub-workflow per subject, one per image inside it.

Every builder takes the run-wide settings as one :class:`~bids_enhance.workflows.spec.ChainSpec`;
what differs per subject or image (its files, its seed) is an argument of its own. Outputs are
written by the ``init_ds_*_wf`` builders of :mod:`bids_enhance.workflows.outputs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_enhance.bids.naming import suffix_of
from bids_enhance.workflows.engine import LiterateWorkflow
from bids_enhance.workflows.enhance import STEPS, X2_STEPS, init_denoise_wf, init_generative_wf
from bids_enhance.workflows.outputs import (
    init_ds_enhanced_wf,
    init_ds_reportlets_wf,
    init_ds_simulated_wf,
    init_ds_subject_reportlets_wf,
)
from bids_enhance.workflows.spec import ChainSpec

#: Bytes of memory per voxel a classical denoising node needs (image, guide, accumulators,
#: a z-chunk of 64 DCT channels); measured on a 1 mm head, rounded up.
_BYTES_PER_VOXEL = 120
#: the same for an x2 generative node per *input* voxel: 8 output voxels of float32/float64
#: arrays (output, consistency check and projection), the model's activations are budgeted
#: separately (patches) within ``--mem`` / ``--gpu-mem``
_GENERATIVE_BYTES_PER_VOXEL = 400

#: An output of a node: ``(node, field)``.
Port = tuple[pe.Node, str]


def workflow_name() -> str:
    """Top workflow name with the major.minor version: caches of other versions are not reused."""
    from bids_enhance import __version__

    major, minor = (__version__.split(".") + ["0"])[:2]
    return f"bids_enhance_{major}_{minor}_wf"


def estimate_mem_gb(path: Path | str, *, bytes_per_voxel: int = _BYTES_PER_VOXEL) -> float:
    """Memory estimate (GB) for processing one image, from its header only."""
    import nibabel as nib
    import numpy as np

    try:
        shape = nib.load(str(path)).shape[:3]
    except Exception:  # unreadable: SanitizeImage will report it properly
        return 0.5
    return max(0.5, float(np.prod(shape)) * bytes_per_voxel / 1e9)


def init_bids_enhance_wf(*, subjects: dict[str, list[Path]], bids_dir: Path, output_dir: Path,
                         spec: ChainSpec, seeds: dict[str, int],
                         base_dir: Path | None = None) -> LiterateWorkflow:
    """Top-level workflow over ``subjects`` (label → list of images), all enhanced as ``spec``
    says.

    ``seeds`` maps every image path (as a string) to its child seed of ``spec.random_seed``.
    ``base_dir``: the nipype work directory.
    """
    from bids_enhance import __version__

    workflow = LiterateWorkflow(name=workflow_name(), base_dir=str(base_dir) if base_dir else None)
    for subject, images in subjects.items():
        workflow.add_nodes([init_single_subject_wf(
            subject=subject, images=images, bids_dir=bids_dir, output_dir=output_dir, spec=spec,
            seeds=seeds, version=__version__)])
    return workflow


def init_single_subject_wf(*, subject: str, images: list[Path], bids_dir: Path,
                           output_dir: Path, spec: ChainSpec, seeds: dict[str, int],
                           version: str, name: str | None = None) -> LiterateWorkflow:
    """Enhance every image of one subject (``sub_<label>_wf``) and write its summary
    reportlets.

    ``seeds``: see :func:`init_bids_enhance_wf`; ``version``: of bids_enhance, for the methods
    text and the about reportlet. With ``spec.fmriprep_compat``, also write one
    ``sub-X[_ses-Y]_desc-preproc_<suffix>`` per subject (per session) from the image
    :func:`preproc_representatives` picks, for ``fmriprep --derivatives``.
    """
    from nipype import __version__ as nipype_version

    from bids_enhance.interfaces.reports import AboutRPT, SubjectSummaryRPT

    workflow = LiterateWorkflow(name=name or f"sub_{subject}_wf")
    workflow.__desc__ = (
        f"Results included in this manuscript come from image enhancement performed using "
        f"*bids_enhance* {version}, which is based on *Nipype* {nipype_version} "
        "[@nipype1; @nipype2]. "
    )
    suffixes = sorted({suffix_of(p) for p in images})
    summary = pe.Node(SubjectSummaryRPT(
        subject=subject, source_files=[str(p) for p in images], bids_dir=str(bids_dir),
        enhance=list(spec.enhance), denoise_method=spec.denoise_method,
        noise_model=spec.noise_model, device=spec.device, models=spec.model_lines),
        name="summary", run_without_submitting=True)
    about = pe.Node(AboutRPT(version=version), name="about", run_without_submitting=True)
    # Subject-level reportlets are named after the subject and the first suffix.
    ds_subject_wf = init_ds_subject_reportlets_wf(
        source_file=f"sub-{subject}_{suffixes[0]}.nii.gz", output_dir=output_dir)
    workflow.connect([
        (summary, ds_subject_wf, [("out_report", "inputnode.summary")]),
        (about, ds_subject_wf, [("out_report", "inputnode.about")]),
    ])

    representatives = preproc_representatives(images) if spec.fmriprep_compat else {}
    for path in images:
        workflow.add_nodes([init_enhance_image_wf(
            source_file=Path(path), bids_dir=bids_dir, output_dir=output_dir, spec=spec,
            image_seed=seeds[str(path)], preproc_name=representatives.get(Path(path)))])
    return workflow


def preproc_representatives(images: list[Path]) -> dict[Path, str]:
    """For ``--fmriprep-compat``: image → ``sub-X[_ses-Y]_<suffix>.nii.gz`` pseudo-source.

    fMRIPrep takes exactly one space-less ``desc-preproc_<suffix>`` per subject (per session).
    Per (session, suffix) we take the first image in BIDS order (acquisition, run, … sorted), so
    reruns pick the same one; the sidecar's ``Sources`` names it.
    """
    from bids_enhance.bids.naming import parse_bids_name

    chosen: dict[tuple[str | None, str], Path] = {}
    for path in sorted(map(Path, images), key=lambda p: p.name):
        entities, suffix, _ = parse_bids_name(path)
        chosen.setdefault((entities.get("ses"), suffix), path)
    out = {}
    for (session, suffix), path in chosen.items():
        entities, _, _ = parse_bids_name(path)
        stem = f"sub-{entities['sub']}" + (f"_ses-{session}" if session else "")
        out[path] = f"{stem}_{suffix}.nii.gz"
    return out


def init_enhance_image_wf(*, source_file: Path, bids_dir: Path, output_dir: Path,
                          spec: ChainSpec, image_seed: int, preproc_name: str | None = None,
                          name: str | None = None) -> LiterateWorkflow:
    """sanitise → normalise → (simulate) → enhancement chain → de-normalise → IQMs and sidecar
    → outputs and reportlets, for one image (``<image_id>_wf``).

    ``image_seed``: the image's child seed of ``spec.random_seed`` (generative steps, and the
    degradation of simulation mode). ``preproc_name``: also write the result as ``desc-preproc``
    under this pseudo-source name (``--fmriprep-compat``).

    In simulation mode (``spec.simulate``, a degradation preset) the normalised image is
    degraded (seeded with ``image_seed``), the degraded image is what gets enhanced, and the
    result is compared with the original (PSNR, 3D SSIM, HFEN in the sidecar and the report): a
    check of the method on the user's own scans. Outputs are then ``desc-simulated`` and
    ``desc-sim<Chain>``.

    A chain ending in x2 super-resolution writes its image on the finer grid with a ``res-x2``
    entity (and ``Resolution`` in the sidecar); its input, interpolated onto that grid with a
    cubic B-spline, is the "before" of the report's views and metrics, and a further reportlet
    (``desc-superres``) shows a zoomed detail, power spectra and the data-consistency error.
    In simulation mode the output lies on the source's own grid and has no ``res-`` entity.
    """
    from bids_enhance.bids.naming import image_id
    from bids_enhance.interfaces.image import (
        DenormalizeIntensity,
        NormalizeIntensity,
        SanitizeImage,
    )

    source_file = Path(source_file)
    # ``--denoise-method auto``: this image's contrast picks the method (PRI-NLM for PDw)
    spec = spec.for_suffix(suffix_of(source_file))
    workflow = LiterateWorkflow(name=name or f"{image_id(source_file)}_wf")
    mem_gb = estimate_mem_gb(source_file)

    sanitize = pe.Node(SanitizeImage(in_file=str(source_file)), name="sanitize",
                       mem_gb=mem_gb / 4)
    normalize = pe.Node(NormalizeIntensity(), name="normalize", mem_gb=mem_gb / 4)
    denormalize = pe.Node(DenormalizeIntensity(), name="denormalize", mem_gb=mem_gb / 4)
    workflow.connect([
        (sanitize, normalize, [("out_file", "in_file")]),
        (normalize, denormalize, [("scale", "scale")]),
        (sanitize, denormalize, [("out_file", "reference")]),
    ])
    # What the chain enhances, and its "before" on the source's intensity scale.
    before, chain_input = (sanitize, "out_file"), (normalize, "out_file")
    simulation = None
    if spec.simulated:  # degrade the clean image; that is what gets enhanced and measured
        simulation = _add_simulation(workflow, source_file=source_file, spec=spec,
                                     image_seed=image_seed, mem_gb=mem_gb, sanitize=sanitize,
                                     normalize=normalize)
        before, chain_input = (simulation.degraded, "out_file"), (simulation.simulate, "out_file")

    result, step_infos = _add_chain(workflow, chain_input, source_file=source_file,
                                    bids_dir=bids_dir, spec=spec, image_seed=image_seed,
                                    mem_gb=mem_gb)
    workflow.connect(*result, denormalize, "in_file")
    if simulation:
        workflow.connect(*result, simulation.compare, "in_file")
    # x2: the input on the output grid is the "before" of the views, residual and metrics.
    before_up = (_add_upsampled_input(workflow, before, denormalize, spec=spec, mem_gb=mem_gb)
                 if spec.is_x2 else before)
    sidecar = _add_sidecar(workflow, before_up, source_file=source_file, bids_dir=bids_dir,
                           spec=spec, image_seed=image_seed, mem_gb=mem_gb, sanitize=sanitize,
                           normalize=normalize, denormalize=denormalize, step_infos=step_infos,
                           simulation=simulation)
    reports = _add_report_nodes(workflow, before, before_up, spec=spec, mem_gb=mem_gb,
                                denormalize=denormalize, sidecar=sidecar)

    ds_enhanced_wf = init_ds_enhanced_wf(source_file=source_file, output_dir=output_dir,
                                         spec=spec, preproc_name=preproc_name)
    ds_reportlets_wf = init_ds_reportlets_wf(source_file=source_file, output_dir=output_dir,
                                             x2=spec.is_x2)
    workflow.connect([
        (denormalize, ds_enhanced_wf, [("out_file", "inputnode.enhanced")]),
        (sidecar, ds_enhanced_wf, [("out_file", "inputnode.sidecar")]),
        *[(node, ds_reportlets_wf, [("out_report", f"inputnode.{node.name}")])
          for node in reports],
    ])
    if simulation:
        ds_simulated_wf = init_ds_simulated_wf(source_file=source_file, bids_dir=bids_dir,
                                               output_dir=output_dir, spec=spec)
        workflow.connect([
            (simulation.degraded, ds_simulated_wf, [("out_file", "inputnode.simulated")]),
            (simulation.simulate, ds_simulated_wf, [("out_record", "inputnode.simulation")]),
        ])
    return workflow


class _Simulation(NamedTuple):
    """The nodes of simulation mode in an image workflow."""

    simulate: pe.Node  #: the degraded image (normalised; the chain's input) and its record
    degraded: pe.Node  #: the degraded image on the source's intensity scale
    compare: pe.Node  #: the result compared with the clean image (``in_file``: the result)


def _add_simulation(workflow: LiterateWorkflow, *, source_file: Path, spec: ChainSpec,
                    image_seed: int, mem_gb: float, sanitize: pe.Node,
                    normalize: pe.Node) -> _Simulation:
    """Simulation mode: degrade the normalised image with ``spec.simulate`` (seeded with
    ``image_seed``) and prepare its comparison with the clean image."""
    from bids_enhance.interfaces.degrade import SimulateDegradation
    from bids_enhance.interfaces.image import DenormalizeIntensity
    from bids_enhance.interfaces.metrics import CompareToReference

    simulate = pe.Node(SimulateDegradation(preset=spec.simulate, seed=image_seed),
                       name="simulate", mem_gb=mem_gb / 4)
    degraded = pe.Node(DenormalizeIntensity(), name="denormalize_degraded", mem_gb=mem_gb / 4)
    compare = pe.Node(CompareToReference(
        label=source_file.name, baselines=spec.reference_baselines,
        lowres_method=spec.lowres_method),
        name="compare", mem_gb=mem_gb * spec.grid_factor / 2)
    workflow.connect([
        (normalize, simulate, [("out_file", "in_file")]),
        (simulate, degraded, [("out_file", "in_file")]),
        (normalize, degraded, [("scale", "scale")]),
        (sanitize, degraded, [("out_file", "reference")]),
        (simulate, compare, [("out_reference", "reference"), ("out_file", "in_degraded")]),
    ])
    return _Simulation(simulate, degraded, compare)


def _add_chain(workflow: LiterateWorkflow, chain_input: Port, *, source_file: Path,
               bids_dir: Path, spec: ChainSpec, image_seed: int,
               mem_gb: float) -> tuple[Port, pe.Node]:
    """The enhancement chain fed from ``chain_input``, in its fixed order (motion → denoise →
    x2 super-resolution): its output, and the node merging the steps' records (``out``)."""
    step_infos = pe.Node(niu.Merge(len(spec.enhance)), name="step_infos",
                         run_without_submitting=True)
    previous = chain_input
    for index, step in enumerate(spec.enhance, start=1):
        step_wf = _init_step_wf(step, source_file=source_file, bids_dir=bids_dir, spec=spec,
                                image_seed=image_seed, mem_gb=mem_gb)
        workflow.connect([
            (previous[0], step_wf, [(previous[1], "inputnode.in_file")]),
            (step_wf, step_infos, [("outputnode.out_info", f"in{index}")]),
        ])
        previous = (step_wf, "outputnode.out_file")
    return previous, step_infos


def _init_step_wf(step: str, *, source_file: Path, bids_dir: Path, spec: ChainSpec,
                  image_seed: int, mem_gb: float) -> LiterateWorkflow:
    """One step of the chain (``<step>_wf``)."""
    from bids_enhance.bids.metadata import motion_phase_encoding
    from bids_enhance.steps import MOTION

    name = f"{step.replace('-', '_')}_wf"
    if STEPS[step] is init_denoise_wf:
        return init_denoise_wf(method=spec.denoise_method, noise_model=spec.noise_model,
                               device=spec.device, omp_nthreads=spec.omp_nthreads, mem_gb=mem_gb,
                               sloppy=spec.sloppy, model=spec.models.get(step), name=name)
    return init_generative_wf(
        step=step, model=spec.models[step], consistency=spec.consistency, device=spec.device,
        omp_nthreads=spec.omp_nthreads, seed=image_seed, mem_budget_gb=spec.mem_budget_gb,
        phase_encoding=(motion_phase_encoding(source_file, bids_dir, simulate=spec.simulate)
                        if step == MOTION.name else None),
        mem_gb=estimate_mem_gb(source_file, bytes_per_voxel=_GENERATIVE_BYTES_PER_VOXEL
                               if step in X2_STEPS else _BYTES_PER_VOXEL),
        name=name)


def _add_upsampled_input(workflow: LiterateWorkflow, before: Port, denormalize: pe.Node, *,
                         spec: ChainSpec, mem_gb: float) -> Port:
    """x2: the chain's input on the output grid (cubic B-spline at the exact x2 coordinates of
    the model's down-sampling geometry), so "before" and "after" share one grid."""
    from bids_enhance.interfaces.superres import UpsampleBaseline

    upsample = pe.Node(UpsampleBaseline(kind="cubic", method=spec.lowres_method),
                       name="upsample_input", mem_gb=mem_gb * 4)
    workflow.connect([(before[0], upsample, [(before[1], "in_file")]),
                      (denormalize, upsample, [("out_file", "reference")])])
    return upsample, "out_file"


def _add_sidecar(workflow: LiterateWorkflow, before_up: Port, *, source_file: Path,
                 bids_dir: Path, spec: ChainSpec, image_seed: int, mem_gb: float,
                 sanitize: pe.Node, normalize: pe.Node, denormalize: pe.Node,
                 step_infos: pe.Node, simulation: _Simulation | None) -> pe.Node:
    """Image quality metrics before/after and the JSON sidecar of the enhanced image.

    The sidecar node is cached: the run's ``CommandLine`` and ``RunId`` are added by the sinks
    (which always run), since a run id among its inputs would recompute it, and the reportlets
    that read it, on every run.
    """
    from bids_enhance.bids.naming import parse_bids_name
    from bids_enhance.interfaces.bids import BuildSidecar
    from bids_enhance.interfaces.metrics import QualityMetrics
    from bids_enhance.metrics.iqm import CONTRAST_ORDER

    _, suffix, _ = parse_bids_name(source_file)
    contrast = {"PDw": "PD"}.get(suffix, suffix)  # BIDS' PD-weighted suffix, PD's tissue order
    iqms = pe.Node(QualityMetrics(contrast=contrast if contrast in CONTRAST_ORDER else "T1w"),
                   name="iqms", mem_gb=mem_gb * spec.grid_factor / 2)
    sidecar = pe.Node(BuildSidecar(
        source_file=str(source_file), bids_dir=str(bids_dir), random_seed=spec.random_seed,
        image_seed=image_seed, description=spec.description(suffix)),
        name="sidecar", run_without_submitting=True)
    workflow.connect([
        (before_up[0], iqms, [(before_up[1], "in_before")]),
        (denormalize, iqms, [("out_file", "in_after")]),
        (sanitize, sidecar, [("out_report", "sanitise_report")]),
        (normalize, sidecar, [("scale", "scale")]),
        (step_infos, sidecar, [("out", "steps")]),
        (iqms, sidecar, [("out_file", "iqms")]),
    ])
    if simulation:
        workflow.connect([
            (simulation.simulate, sidecar, [("out_record", "simulation")]),
            (simulation.compare, sidecar, [("out_file", "reference_metrics")]),
        ])
    return sidecar


def _add_report_nodes(workflow: LiterateWorkflow, before: Port, before_up: Port, *,
                      spec: ChainSpec, mem_gb: float, denormalize: pe.Node,
                      sidecar: pe.Node) -> list[pe.Node]:
    """The reportlets of one image (``out_report``): before/after views, residual mosaic, IQM
    table, and on the x2 grid the super-resolution figure. Named as the fields of
    :func:`~bids_enhance.workflows.outputs.init_ds_reportlets_wf`."""
    from bids_enhance.interfaces.reports import (
        BeforeAfterRPT,
        IQMTableRPT,
        ResidualMosaicRPT,
        SuperResolutionRPT,
    )

    before_label = "simulated" if spec.simulated else "input"
    flicker = pe.Node(BeforeAfterRPT(
        before_label=(f"{before_label} (cubic B-spline, output grid)" if spec.is_x2
                      else before_label),
        after_label=spec.desc, generate_report=True),
        name="flicker", mem_gb=mem_gb * spec.grid_factor / 2)
    residual = pe.Node(ResidualMosaicRPT(steps=list(spec.enhance)), name="residual",
                       mem_gb=mem_gb * spec.grid_factor / 2)
    iqm_table = pe.Node(IQMTableRPT(), name="iqm_table", run_without_submitting=True)
    workflow.connect([
        (before_up[0], flicker, [(before_up[1], "before")]),
        (denormalize, flicker, [("out_file", "after")]),
        (before_up[0], residual, [(before_up[1], "in_before")]),
        (denormalize, residual, [("out_file", "in_after")]),
        (sidecar, iqm_table, [("out_file", "in_sidecar")]),
    ])
    if not spec.is_x2:
        return [flicker, residual, iqm_table]
    superres_rpt = pe.Node(SuperResolutionRPT(), name="superres_report", mem_gb=mem_gb * 4)
    workflow.connect([
        (before[0], superres_rpt, [(before[1], "in_lowres")]),
        (before_up[0], superres_rpt, [(before_up[1], "in_upsampled")]),
        (denormalize, superres_rpt, [("out_file", "in_after")]),
        (sidecar, superres_rpt, [("out_file", "in_sidecar")]),
    ])
    return [flicker, residual, iqm_table, superres_rpt]
