"""The participant workflow: one sub-workflow per subject, one per image inside it."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_enhance.workflows.engine import LiterateWorkflow
from bids_enhance.workflows.enhance import (
    STEPS,
    X2_RES_LABEL,
    X2_STEPS,
    init_denoise_wf,
    init_generative_wf,
    is_x2,
    order_chain,
    output_desc,
)

#: Bytes of memory per voxel a classical denoising node needs (image, guide, accumulators,
#: a z-chunk of 64 DCT channels); measured on a 1 mm head, rounded up.
_BYTES_PER_VOXEL = 120
#: the same for an x2 generative node per *input* voxel: 8 output voxels of float32/float64
#: arrays (output, consistency check and projection), the model's activations are budgeted
#: separately (patches) within ``--mem`` / ``--gpu-mem``
_GENERATIVE_BYTES_PER_VOXEL = 400


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
                         enhance: list[str], denoise_method: str, noise_model: str, device: str,
                         omp_nthreads: int, random_seed: int, seeds: dict[str, int],
                         sloppy: bool = False, simulate: str | None = None,
                         fmriprep_compat: bool = False, models: dict[str, dict] | None = None,
                         consistency: str = "measure", mem_budget_gb: float | None = None,
                         command_line: str | None = None, run_id: str | None = None,
                         base_dir: Path | None = None) -> LiterateWorkflow:
    """Top-level workflow over ``subjects`` (label → list of images).

    ``seeds`` maps every image path (as a string) to its child seed of ``random_seed``.
    ``models``: the verified checkpoint of every generative step of ``enhance``
    (:meth:`bids_enhance.inference.weights.ResolvedModel.to_dict`); ``consistency``: what x2
    steps do about data consistency; ``mem_budget_gb``: the memory budget of generative
    inference (GPU memory on CUDA; None: a share of the free memory). ``command_line`` (the
    invocation, as a shell would read it) and ``run_id`` (the run's UUID, the name of its
    ``sub-<label>/log/<run_id>`` folder) go into every image sidecar as ``CommandLine`` and
    ``RunId``; None leaves them out.
    """
    from bids_enhance import __version__

    workflow = LiterateWorkflow(name=workflow_name(), base_dir=str(base_dir) if base_dir else None)
    for subject, images in subjects.items():
        workflow.add_nodes([init_single_subject_wf(
            subject=subject, images=images, bids_dir=bids_dir, output_dir=output_dir,
            enhance=enhance, denoise_method=denoise_method, noise_model=noise_model,
            device=device, omp_nthreads=omp_nthreads, random_seed=random_seed, seeds=seeds,
            sloppy=sloppy, simulate=simulate, fmriprep_compat=fmriprep_compat,
            models=models, consistency=consistency, mem_budget_gb=mem_budget_gb,
            command_line=command_line, run_id=run_id, version=__version__)])
    return workflow


def init_single_subject_wf(*, subject: str, images: list[Path], bids_dir: Path,
                           output_dir: Path, enhance: list[str], denoise_method: str,
                           noise_model: str, device: str, omp_nthreads: int, random_seed: int,
                           seeds: dict[str, int], sloppy: bool = False,
                           simulate: str | None = None, fmriprep_compat: bool = False,
                           models: dict[str, dict] | None = None, consistency: str = "measure",
                           mem_budget_gb: float | None = None,
                           command_line: str | None = None, run_id: str | None = None,
                           version: str = "", name: str | None = None) -> LiterateWorkflow:
    """Enhance every image of one subject and write its summary reportlets.

    ``fmriprep_compat``: also write one ``sub-X[_ses-Y]_desc-preproc_<suffix>`` per subject (per
    session) from the image :func:`preproc_representatives` picks, for
    ``fmriprep --derivatives``. ``command_line``, ``run_id``: see :func:`init_bids_enhance_wf`.
    """
    from nipype import __version__ as nipype_version

    from bids_enhance.interfaces.bids import DerivativesDataSink
    from bids_enhance.interfaces.reports import AboutRPT, SubjectSummaryRPT

    workflow = LiterateWorkflow(name=name or f"sub_{subject}_wf")
    workflow.__desc__ = (
        f"Results included in this manuscript come from image enhancement performed using "
        f"*bids_enhance* {version}, which is based on *Nipype* {nipype_version} "
        "[@nipype1; @nipype2]. "
    )
    suffixes = sorted({Path(p).name.split("_")[-1].split(".")[0] for p in images})
    # Subject-level reportlets are named after the subject and the first suffix.
    pseudo_source = f"sub-{subject}_{suffixes[0]}.nii.gz"
    summary = pe.Node(SubjectSummaryRPT(
        subject=subject, source_files=[str(p) for p in images], bids_dir=str(bids_dir),
        enhance=order_chain(enhance), denoise_method=denoise_method, noise_model=noise_model,
        device=device, models=[
            f"{step}: {(m.get('summary') or {}).get('name')} ({m.get('origin')} weights, "
            f"sha256 {m['sha256'][:12]}…)" for step, m in (models or {}).items()]),
        name="summary", run_without_submitting=True)
    about = pe.Node(AboutRPT(version=version), name="about", run_without_submitting=True)
    ds_summary = pe.Node(DerivativesDataSink(base_directory=str(output_dir),
                                             source_file=pseudo_source, desc="summary",
                                             datatype="figures"),
                         name="ds_summary", run_without_submitting=True)
    ds_about = pe.Node(DerivativesDataSink(base_directory=str(output_dir),
                                           source_file=pseudo_source, desc="about",
                                           datatype="figures"),
                       name="ds_about", run_without_submitting=True)
    workflow.connect([
        (summary, ds_summary, [("out_report", "in_file")]),
        (about, ds_about, [("out_report", "in_file")]),
    ])

    representatives = preproc_representatives(images) if fmriprep_compat else {}
    for path in images:
        image_wf = init_enhance_image_wf(
            source_file=Path(path), bids_dir=bids_dir, output_dir=output_dir, enhance=enhance,
            denoise_method=denoise_method, noise_model=noise_model, device=device,
            omp_nthreads=omp_nthreads, random_seed=random_seed, image_seed=seeds[str(path)],
            sloppy=sloppy, simulate=simulate, models=models, consistency=consistency,
            mem_budget_gb=mem_budget_gb, preproc_name=representatives.get(Path(path)),
            command_line=command_line, run_id=run_id)
        workflow.add_nodes([image_wf])
    return workflow


def run_metadata(*, command_line: str | None = None, run_id: str | None = None) -> dict:
    """``{"CommandLine", "RunId"}`` of an image sidecar (what is given): the invocation that
    wrote the image, and the run whose settings are in ``sub-<label>/log/<RunId>/``."""
    out = {}
    if command_line:
        out["CommandLine"] = str(command_line)
    if run_id:
        out["RunId"] = str(run_id)
    return out


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
                          enhance: list[str], denoise_method: str, noise_model: str,
                          device: str, omp_nthreads: int, random_seed: int, image_seed: int,
                          sloppy: bool = False, simulate: str | None = None,
                          preproc_name: str | None = None, models: dict[str, dict] | None = None,
                          consistency: str = "measure", mem_budget_gb: float | None = None,
                          command_line: str | None = None, run_id: str | None = None,
                          name: str | None = None) -> LiterateWorkflow:
    """sanitise → normalise → enhancement chain → de-normalise → outputs, IQMs and reportlets.

    ``simulate``: a degradation preset. The normalised image is degraded (seeded with
    ``image_seed``), the degraded image is what gets enhanced, and the result is compared with
    the original (PSNR, 3D SSIM, HFEN in the sidecar and the report): a check of the method on
    the user's own scans. Outputs are then ``desc-simulated`` and ``desc-sim<Chain>``.
    ``preproc_name``: also write the result as ``desc-preproc`` under this pseudo-source name
    (``--fmriprep-compat``). ``models``, ``consistency``, ``mem_budget_gb``, ``command_line``,
    ``run_id``: see :func:`init_bids_enhance_wf`.

    A chain ending in x2 super-resolution writes its image on the finer grid with a ``res-x2``
    entity (and ``Resolution`` in the sidecar); its input, interpolated onto that grid with a
    cubic B-spline, is the "before" of the report's views and metrics, and a further reportlet
    (``desc-superres``) shows a zoomed detail, power spectra and the data-consistency error.
    In simulation mode the output lies on the source's own grid and has no ``res-`` entity.
    """
    from bids_enhance.bids.naming import bids_uri, image_id, parse_bids_name
    from bids_enhance.interfaces.bids import BuildSidecar, DerivativesDataSink
    from bids_enhance.interfaces.image import (
        DenormalizeIntensity,
        NormalizeIntensity,
        SanitizeImage,
    )
    from bids_enhance.interfaces.metrics import QualityMetrics
    from bids_enhance.interfaces.reports import (
        BeforeAfterRPT,
        IQMTableRPT,
        ResidualMosaicRPT,
        SuperResolutionRPT,
    )

    _, suffix, _ = parse_bids_name(source_file)
    workflow = LiterateWorkflow(name=name or f"{image_id(source_file)}_wf")
    mem_gb = estimate_mem_gb(source_file)
    enhance = order_chain(enhance)
    models = dict(models or {})
    missing = [s for s in enhance if STEPS[s] is not init_denoise_wf and s not in models]
    # (the learned denoiser without a model runs the shipped weights, resolved in the node)
    if missing:
        raise ValueError(f"no model given for the generative step(s) {missing}")
    x2 = is_x2(enhance)
    x2_model = next((models[s] for s in enhance if s in X2_STEPS), None)
    desc = output_desc(enhance, simulated=simulate is not None)
    # Added by the sinks (which always run), not by BuildSidecar: a run id in the sidecar node's
    # inputs would recompute it, and the reportlets that read it, on every run.
    run_meta = run_metadata(command_line=command_line, run_id=run_id)

    sanitize = pe.Node(SanitizeImage(in_file=str(source_file)), name="sanitize",
                       mem_gb=mem_gb / 4)
    normalize = pe.Node(NormalizeIntensity(), name="normalize", mem_gb=mem_gb / 4)
    denormalize = pe.Node(DenormalizeIntensity(), name="denormalize", mem_gb=mem_gb / 4)
    workflow.connect([
        (sanitize, normalize, [("out_file", "in_file")]),
        (normalize, denormalize, [("scale", "scale")]),
        (sanitize, denormalize, [("out_file", "reference")]),
    ])

    # Simulation mode: degrade the clean image; that is what gets enhanced and measured.
    before, before_field = sanitize, "out_file"
    previous, previous_field = normalize, "out_file"
    if simulate:
        from bids_enhance.interfaces.training import CompareToReference, SimulateDegradation

        simulation = pe.Node(SimulateDegradation(preset=simulate, seed=image_seed),
                             name="simulate", mem_gb=mem_gb / 4)
        denorm_degraded = pe.Node(DenormalizeIntensity(), name="denormalize_degraded",
                                  mem_gb=mem_gb / 4)
        compare = pe.Node(CompareToReference(
            label=Path(source_file).name,
            baselines=["trilinear", "cubic", "kspace"] if x2 else ["identity"],
            lowres_method=(x2_model or {}).get("lowres_method") or "box"),
            name="compare", mem_gb=mem_gb * (8 if x2 else 1) / 2)
        ds_degraded = pe.Node(DerivativesDataSink(
            base_directory=str(output_dir), source_file=str(source_file), desc="simulated",
            meta_dict={"Description": f"Simulated degradation ({simulate}) of the source; the "
                                      "input of the enhancement in simulation mode.",
                       "Sources": [bids_uri(source_file, bids_dir)], "SkullStripped": False,
                       **run_meta}),
            name="ds_degraded", run_without_submitting=True)
        workflow.connect([
            (normalize, simulation, [("out_file", "in_file")]),
            (simulation, denorm_degraded, [("out_file", "in_file")]),
            (normalize, denorm_degraded, [("scale", "scale")]),
            (sanitize, denorm_degraded, [("out_file", "reference")]),
            (simulation, compare, [("out_reference", "reference"),
                                   ("out_file", "in_degraded")]),
            (denorm_degraded, ds_degraded, [("out_file", "in_file")]),
            (simulation, ds_degraded, [("out_record", "meta_files")]),
        ])
        before, before_field = denorm_degraded, "out_file"
        previous, previous_field = simulation, "out_file"

    # The enhancement chain, in its fixed order (motion → denoise → x2 super-resolution).
    step_infos = pe.Node(niu.Merge(len(enhance)), name="step_infos",
                         run_without_submitting=True)
    for index, step in enumerate(enhance):
        step_name = f"{step.replace('-', '_')}_wf"
        if STEPS[step] is init_denoise_wf:
            step_wf = init_denoise_wf(method=denoise_method, noise_model=noise_model,
                                      device=device, omp_nthreads=omp_nthreads, mem_gb=mem_gb,
                                      sloppy=sloppy, model=models.get(step), name=step_name)
        else:
            step_wf = init_generative_wf(
                step=step, model=models[step], consistency=consistency, device=device,
                omp_nthreads=omp_nthreads, seed=image_seed, mem_budget_gb=mem_budget_gb,
                mem_gb=estimate_mem_gb(source_file, bytes_per_voxel=_GENERATIVE_BYTES_PER_VOXEL
                                       if step in X2_STEPS else _BYTES_PER_VOXEL),
                name=step_name)
        workflow.connect([
            (previous, step_wf, [(previous_field, "inputnode.in_file")]),
            (step_wf, step_infos, [("outputnode.out_info", f"in{index + 1}")]),
        ])
        previous, previous_field = step_wf, "outputnode.out_file"
    workflow.connect(previous, previous_field, denormalize, "in_file")
    if simulate:
        workflow.connect(previous, previous_field, compare, "in_file")

    # x2: the input on the output grid (cubic B-spline at the exact x2 coordinates) is the
    # "before" of the views, the residual and the metrics, which need one grid.
    before_up, before_up_field = before, before_field
    if x2:
        from bids_enhance.interfaces.superres import UpsampleBaseline

        upsample = pe.Node(UpsampleBaseline(kind="cubic",
                                            method=x2_model.get("lowres_method") or "box"),
                           name="upsample_input", mem_gb=mem_gb * 4)
        workflow.connect([(before, upsample, [(before_field, "in_file")]),
                          (denormalize, upsample, [("out_file", "reference")])])
        before_up, before_up_field = upsample, "out_file"

    if x2 and not simulate:
        geometry = ("x2 super-resolved onto a grid twice as fine that covers the source's field "
                    "of view (world coordinates preserved); same orientation and intensity "
                    "scale as the source")
    elif x2:
        geometry = ("x2 super-resolved back onto the source's grid; same orientation and "
                    "intensity scale as the source")
    else:
        geometry = "same grid, orientation and intensity scale as the source"
    iqms = pe.Node(QualityMetrics(contrast=suffix if suffix in {"T1w", "T2w", "FLAIR", "PD"}
                                  else "T1w"), name="iqms", mem_gb=mem_gb * (8 if x2 else 1) / 2)
    sidecar = pe.Node(BuildSidecar(
        source_file=str(source_file), bids_dir=str(bids_dir), random_seed=random_seed,
        image_seed=image_seed,
        description=(f"{suffix} image enhanced by bids_enhance ({', '.join(enhance)}); "
                     f"{geometry}."
                     + (f" Simulation mode: the source was first degraded ({simulate})."
                        if simulate else ""))),
        name="sidecar", run_without_submitting=True)
    ds_image = pe.Node(DerivativesDataSink(
        base_directory=str(output_dir), source_file=str(source_file), desc=desc,
        meta_dict=run_meta, **({"res": X2_RES_LABEL} if x2 and not simulate else {})),
        name="ds_image", run_without_submitting=True)
    if simulate:
        workflow.connect([
            (simulation, sidecar, [("out_record", "simulation")]),
            (compare, sidecar, [("out_file", "reference_metrics")]),
        ])
    workflow.connect([
        (before_up, iqms, [(before_up_field, "in_before")]),
        (denormalize, iqms, [("out_file", "in_after")]),
        (sanitize, sidecar, [("out_report", "sanitise_report")]),
        (normalize, sidecar, [("scale", "scale")]),
        (step_infos, sidecar, [("out", "steps")]),
        (iqms, sidecar, [("out_file", "iqms")]),
        (denormalize, ds_image, [("out_file", "in_file")]),
        (sidecar, ds_image, [("out_file", "meta_files")]),
    ])

    if preproc_name:
        ds_preproc = pe.Node(DerivativesDataSink(
            base_directory=str(output_dir), source_file=preproc_name, desc="preproc",
            meta_dict=run_meta),
            name="ds_preproc", run_without_submitting=True)
        workflow.connect([
            (denormalize, ds_preproc, [("out_file", "in_file")]),
            (sidecar, ds_preproc, [("out_file", "meta_files")]),
        ])

    # Reportlets
    before_label = "simulated" if simulate else "input"
    flicker = pe.Node(BeforeAfterRPT(
        before_label=f"{before_label} (cubic B-spline, output grid)" if x2 else before_label,
        after_label=desc, generate_report=True),
        name="flicker", mem_gb=mem_gb * (8 if x2 else 1) / 2)
    residual = pe.Node(ResidualMosaicRPT(steps=enhance), name="residual",
                       mem_gb=mem_gb * (8 if x2 else 1) / 2)
    iqm_table = pe.Node(IQMTableRPT(), name="iqm_table", run_without_submitting=True)
    reportlets = [(flicker, "flicker"), (residual, "residual"), (iqm_table, "iqms")]
    if x2:
        superres_rpt = pe.Node(SuperResolutionRPT(), name="superres_report", mem_gb=mem_gb * 4)
        workflow.connect([
            (before, superres_rpt, [(before_field, "in_lowres")]),
            (before_up, superres_rpt, [(before_up_field, "in_upsampled")]),
            (denormalize, superres_rpt, [("out_file", "in_after")]),
            (sidecar, superres_rpt, [("out_file", "in_sidecar")]),
        ])
        reportlets.append((superres_rpt, "superres"))
    for node, figure_desc in reportlets:
        ds = pe.Node(DerivativesDataSink(base_directory=str(output_dir),
                                         source_file=str(source_file), desc=figure_desc,
                                         datatype="figures"),
                     name=f"ds_report_{node.name}", run_without_submitting=True)
        workflow.connect(node, "out_report", ds, "in_file")
    workflow.connect([
        (before_up, flicker, [(before_up_field, "before")]),
        (denormalize, flicker, [("out_file", "after")]),
        (before_up, residual, [(before_up_field, "in_before")]),
        (denormalize, residual, [("out_file", "in_after")]),
        (sidecar, iqm_table, [("out_file", "in_sidecar")]),
    ])
    return workflow
