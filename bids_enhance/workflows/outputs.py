"""Writing derivatives: one small ``init_ds_*_wf`` workflow per group of outputs (as fMRIPrep's
``workflows/*/outputs.py``).

Each has an ``inputnode`` whose fields the participant workflow
(:mod:`bids_enhance.workflows.base`) connects, and one
:class:`~bids_enhance.interfaces.bids.DerivativesDataSink` per file. Sinks always run (and are
cheap): the run's ``CommandLine`` and ``RunId`` go into the image sidecars here, not through the
cached sidecar node, so a new run id recomputes nothing.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_enhance.workflows.engine import LiterateWorkflow
from bids_enhance.workflows.spec import ChainSpec

#: The reportlets of every image: report node (and ``inputnode`` field of
#: :func:`init_ds_reportlets_wf`) → the figure's ``desc-`` (a key of data/reports-spec.yml).
IMAGE_REPORTLETS = {"flicker": "flicker", "residual": "residual", "iqm_table": "iqms"}
#: The further reportlet of an image on the x2 grid.
X2_REPORTLETS = {"superres_report": "superres"}


def _sink(name: str, **inputs) -> pe.Node:
    from bids_enhance.interfaces.bids import DerivativesDataSink

    return pe.Node(DerivativesDataSink(**inputs), name=name, run_without_submitting=True)


def init_ds_enhanced_wf(*, source_file: Path | str, output_dir: Path | str, spec: ChainSpec,
                        preproc_name: str | None = None,
                        name: str = "ds_enhanced_wf") -> LiterateWorkflow:
    """The enhanced image and its sidecar: ``desc-<chain>`` (``res-x2`` on the x2 grid), and
    with ``preproc_name`` (``--fmriprep-compat``) a ``desc-preproc`` copy named after that
    pseudo-source.

    Inputs: ``enhanced`` (the de-normalised result), ``sidecar`` (its JSON metadata, from
    :class:`~bids_enhance.interfaces.bids.BuildSidecar`).
    """
    workflow = LiterateWorkflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["enhanced", "sidecar"]), name="inputnode")
    ds_image = _sink("ds_image", base_directory=str(output_dir), source_file=str(source_file),
                     desc=spec.desc, meta_dict=spec.run_metadata,
                     **({"res": spec.res} if spec.res else {}))
    workflow.connect(inputnode, "enhanced", ds_image, "in_file")
    workflow.connect(inputnode, "sidecar", ds_image, "meta_files")
    if preproc_name:
        ds_preproc = _sink("ds_preproc", base_directory=str(output_dir),
                           source_file=preproc_name, desc="preproc",
                           meta_dict=spec.run_metadata)
        workflow.connect(inputnode, "enhanced", ds_preproc, "in_file")
        workflow.connect(inputnode, "sidecar", ds_preproc, "meta_files")
    return workflow


def init_ds_simulated_wf(*, source_file: Path | str, bids_dir: Path | str,
                         output_dir: Path | str, spec: ChainSpec,
                         name: str = "ds_simulated_wf") -> LiterateWorkflow:
    """Simulation mode: the degraded source (``desc-simulated``), the input of the chain.

    Inputs: ``simulated`` (the degraded image, de-normalised), ``simulation`` (the JSON record
    of the degradation, merged into the sidecar).
    """
    from bids_enhance.bids.naming import bids_uri

    if not spec.simulated:
        raise ValueError("init_ds_simulated_wf needs a spec in simulation mode")
    workflow = LiterateWorkflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["simulated", "simulation"]),
                        name="inputnode")
    ds_degraded = _sink(
        "ds_degraded", base_directory=str(output_dir), source_file=str(source_file),
        desc="simulated",
        meta_dict={"Description": f"Simulated degradation ({spec.simulate}) of the source; the "
                                  "input of the enhancement in simulation mode.",
                   "Sources": [bids_uri(source_file, bids_dir)], "SkullStripped": False,
                   **spec.run_metadata})
    workflow.connect(inputnode, "simulated", ds_degraded, "in_file")
    workflow.connect(inputnode, "simulation", ds_degraded, "meta_files")
    return workflow


def init_ds_reportlets_wf(*, source_file: Path | str, output_dir: Path | str, x2: bool = False,
                          name: str = "ds_reportlets_wf") -> LiterateWorkflow:
    """The reportlets of one image under ``figures/``: :data:`IMAGE_REPORTLETS`, and on the x2
    grid :data:`X2_REPORTLETS` too.

    Inputs: one field per reportlet, named after its report node (``flicker``, ``residual``,
    ``iqm_table``; ``superres_report``).
    """
    reportlets = {**IMAGE_REPORTLETS, **(X2_REPORTLETS if x2 else {})}
    workflow = LiterateWorkflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=list(reportlets)), name="inputnode")
    for field, desc in reportlets.items():
        ds = _sink(f"ds_report_{field}", base_directory=str(output_dir),
                   source_file=str(source_file), desc=desc, datatype="figures")
        workflow.connect(inputnode, field, ds, "in_file")
    return workflow


def init_ds_subject_reportlets_wf(*, source_file: Path | str, output_dir: Path | str,
                                  name: str = "ds_subject_reportlets_wf") -> LiterateWorkflow:
    """The subject-level reportlets (``desc-summary``, ``desc-about``), named after
    ``source_file``: a pseudo-source ``sub-<label>_<suffix>.nii.gz``.

    Inputs: ``summary``, ``about`` (the reportlet files).
    """
    workflow = LiterateWorkflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["summary", "about"]), name="inputnode")
    for field in ("summary", "about"):
        ds = _sink(f"ds_{field}", base_directory=str(output_dir), source_file=str(source_file),
                   desc=field, datatype="figures")
        workflow.connect(inputnode, field, ds, "in_file")
    return workflow
