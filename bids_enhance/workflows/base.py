"""The participant workflow: one sub-workflow per subject, one per image inside it."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_enhance.workflows.engine import LiterateWorkflow
from bids_enhance.workflows.enhance import STEPS, output_desc

#: Bytes of memory per voxel a classical denoising node needs (image, guide, accumulators,
#: a z-chunk of 64 DCT channels); measured on a 1 mm head, rounded up.
_BYTES_PER_VOXEL = 120


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
                         sloppy: bool = False, base_dir: Path | None = None) -> LiterateWorkflow:
    """Top-level workflow over ``subjects`` (label → list of images).

    ``seeds`` maps every image path (as a string) to its child seed of ``random_seed``.
    """
    from bids_enhance import __version__

    workflow = LiterateWorkflow(name=workflow_name(), base_dir=str(base_dir) if base_dir else None)
    for subject, images in subjects.items():
        workflow.add_nodes([init_single_subject_wf(
            subject=subject, images=images, bids_dir=bids_dir, output_dir=output_dir,
            enhance=enhance, denoise_method=denoise_method, noise_model=noise_model,
            device=device, omp_nthreads=omp_nthreads, random_seed=random_seed, seeds=seeds,
            sloppy=sloppy, version=__version__)])
    return workflow


def init_single_subject_wf(*, subject: str, images: list[Path], bids_dir: Path,
                           output_dir: Path, enhance: list[str], denoise_method: str,
                           noise_model: str, device: str, omp_nthreads: int, random_seed: int,
                           seeds: dict[str, int], sloppy: bool = False, version: str = "",
                           name: str | None = None) -> LiterateWorkflow:
    """Enhance every image of one subject and write its summary reportlets."""
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
        enhance=enhance, denoise_method=denoise_method, noise_model=noise_model, device=device),
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

    for path in images:
        image_wf = init_enhance_image_wf(
            source_file=Path(path), bids_dir=bids_dir, output_dir=output_dir, enhance=enhance,
            denoise_method=denoise_method, noise_model=noise_model, device=device,
            omp_nthreads=omp_nthreads, random_seed=random_seed, image_seed=seeds[str(path)],
            sloppy=sloppy)
        workflow.add_nodes([image_wf])
    return workflow


def init_enhance_image_wf(*, source_file: Path, bids_dir: Path, output_dir: Path,
                          enhance: list[str], denoise_method: str, noise_model: str,
                          device: str, omp_nthreads: int, random_seed: int, image_seed: int,
                          sloppy: bool = False, name: str | None = None) -> LiterateWorkflow:
    """sanitise → normalise → enhancement chain → de-normalise → outputs, IQMs and reportlets."""
    from nireports.interfaces.reporting.base import SimpleBeforeAfterRPT

    from bids_enhance.bids.naming import image_id, parse_bids_name
    from bids_enhance.interfaces.bids import BuildSidecar, DerivativesDataSink
    from bids_enhance.interfaces.image import (
        DenormalizeIntensity,
        NormalizeIntensity,
        SanitizeImage,
    )
    from bids_enhance.interfaces.metrics import QualityMetrics
    from bids_enhance.interfaces.reports import IQMTableRPT, ResidualMosaicRPT

    _, suffix, _ = parse_bids_name(source_file)
    workflow = LiterateWorkflow(name=name or f"{image_id(source_file)}_wf")
    mem_gb = estimate_mem_gb(source_file)
    desc = output_desc(enhance)

    sanitize = pe.Node(SanitizeImage(in_file=str(source_file)), name="sanitize",
                       mem_gb=mem_gb / 4)
    normalize = pe.Node(NormalizeIntensity(), name="normalize", mem_gb=mem_gb / 4)
    denormalize = pe.Node(DenormalizeIntensity(), name="denormalize", mem_gb=mem_gb / 4)
    workflow.connect([
        (sanitize, normalize, [("out_file", "in_file")]),
        (normalize, denormalize, [("scale", "scale")]),
        (sanitize, denormalize, [("out_file", "reference")]),
    ])

    # The enhancement chain, in the order given on the command line.
    previous, previous_field = normalize, "out_file"
    step_infos = pe.Node(niu.Merge(len(enhance)), name="step_infos",
                         run_without_submitting=True)
    for index, step in enumerate(enhance):
        step_wf = STEPS[step](method=denoise_method, noise_model=noise_model, device=device,
                              omp_nthreads=omp_nthreads, mem_gb=mem_gb, sloppy=sloppy,
                              name=f"{step}_wf")
        workflow.connect([
            (previous, step_wf, [(previous_field, "inputnode.in_file")]),
            (step_wf, step_infos, [("outputnode.out_info", f"in{index + 1}")]),
        ])
        previous, previous_field = step_wf, "outputnode.out_file"
    workflow.connect(previous, previous_field, denormalize, "in_file")

    iqms = pe.Node(QualityMetrics(contrast=suffix if suffix in {"T1w", "T2w", "FLAIR", "PD"}
                                  else "T1w"), name="iqms", mem_gb=mem_gb / 2)
    sidecar = pe.Node(BuildSidecar(
        source_file=str(source_file), bids_dir=str(bids_dir), random_seed=random_seed,
        image_seed=image_seed,
        description=f"{suffix} image enhanced by bids_enhance ({', '.join(enhance)}); same "
                    "grid, orientation and intensity scale as the source."),
        name="sidecar", run_without_submitting=True)
    ds_image = pe.Node(DerivativesDataSink(base_directory=str(output_dir),
                                           source_file=str(source_file), desc=desc),
                       name="ds_image", run_without_submitting=True)
    workflow.connect([
        (sanitize, iqms, [("out_file", "in_before")]),
        (denormalize, iqms, [("out_file", "in_after")]),
        (sanitize, sidecar, [("out_report", "sanitise_report")]),
        (normalize, sidecar, [("scale", "scale")]),
        (step_infos, sidecar, [("out", "steps")]),
        (iqms, sidecar, [("out_file", "iqms")]),
        (denormalize, ds_image, [("out_file", "in_file")]),
        (sidecar, ds_image, [("out_file", "meta_files")]),
    ])

    # Reportlets
    flicker = pe.Node(SimpleBeforeAfterRPT(before_label="input", after_label=desc,
                                           generate_report=True),
                      name="flicker", mem_gb=mem_gb / 2)
    residual = pe.Node(ResidualMosaicRPT(), name="residual", mem_gb=mem_gb / 2)
    iqm_table = pe.Node(IQMTableRPT(), name="iqm_table", run_without_submitting=True)
    for node, figure_desc in ((flicker, "flicker"), (residual, "residual"),
                              (iqm_table, "iqms")):
        ds = pe.Node(DerivativesDataSink(base_directory=str(output_dir),
                                         source_file=str(source_file), desc=figure_desc,
                                         datatype="figures"),
                     name=f"ds_report_{node.name}", run_without_submitting=True)
        workflow.connect(node, "out_report", ds, "in_file")
    workflow.connect([
        (sanitize, flicker, [("out_file", "before")]),
        (denormalize, flicker, [("out_file", "after")]),
        (sanitize, residual, [("out_file", "in_before")]),
        (denormalize, residual, [("out_file", "in_after")]),
        (sidecar, iqm_table, [("out_file", "in_sidecar")]),
    ])
    return workflow
