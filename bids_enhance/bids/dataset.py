"""Dataset-level files of the derivatives: dataset_description.json, README.md, .bidsignore,
descriptions.tsv and its sidecar descriptions.json.

Runs writing into one output directory at the same time (one per participant) update these
files by read-modify-write; each update holds the dataset's lock (:data:`LOCK_NAME`, a hidden
file, which the BIDS validator ignores like every dot-file) so that no run loses another's
rows, and is written atomically so that no reader sees a partial file."""

from __future__ import annotations

import csv
import io
import json
import os
from contextlib import AbstractContextManager
from pathlib import Path

from bids_enhance.steps import STEPS
from bids_enhance.utils import atomic_paths, atomic_write_text, file_lock

CODE_URL = "https://github.com/bids-enhance/bids_enhance"
BIDS_VERSION = "1.10.0"
#: Set in the Docker/Apptainer images (``GeneratedBy.Container``).
CONTAINER_TYPE_ENV = "BIDS_ENHANCE_CONTAINER_TYPE"
CONTAINER_TAG_ENV = "BIDS_ENHANCE_CONTAINER_TAG"
#: Lock file, in the output directory, of the updates of its dataset-level files.
LOCK_NAME = ".bids_enhance.lock"

#: Patterns as the BIDS validator (bids-validator-deno 2+) matches them: "**/figures" hides every
#: subject's figures folder, where "figures/" or "sub-*/figures/" do not.
BIDSIGNORE = ("*.html", "logs/", "group_*", "**/figures", "**/log")

#: Every ``desc`` label the app writes, with the sentence that goes into descriptions.tsv.
DESCRIPTIONS = {
    **{step.desc: step.description for step in STEPS.values()},
    "preproc": "--fmriprep-compat: the result of the enhancement chain for one image per "
               "subject (per session), named for `fmriprep --derivatives`; the sidecar's "
               "Sources names the image it was made from.",
    "simulated": "Simulation mode: the source after a simulated degradation (the sidecar's "
                 "Simulation record replays it exactly); the input of the enhancement.",
    "simDenoised": "Simulation mode: the desc-simulated image after denoising; its sidecar "
                   "compares it with the source (ReferenceMetrics).",
}


def generated_by() -> list[dict]:
    from bids_enhance import __version__

    entry: dict = {"Name": "bids_enhance", "Version": __version__, "CodeURL": CODE_URL}
    if os.environ.get(CONTAINER_TYPE_ENV):
        entry["Container"] = {"Type": os.environ[CONTAINER_TYPE_ENV]}
        if os.environ.get(CONTAINER_TAG_ENV):
            entry["Container"]["Tag"] = os.environ[CONTAINER_TAG_ENV]
    return [entry]


def dataset_lock(output_dir: Path | str) -> AbstractContextManager[Path]:
    """The lock (:func:`~bids_enhance.utils.file_lock`) of ``output_dir``'s dataset files."""
    return file_lock(Path(output_dir) / LOCK_NAME)


def write_dataset_description(output_dir: Path, bids_dir: Path) -> Path:
    """Write ``dataset_description.json`` (keeps a prior file's extra keys, refreshes ours), and
    the dataset's README (:func:`write_readme`).

    ``SourceDatasets`` gives the source's ``DatasetVersion`` as ``Version`` when it has one
    (never its BIDS version). ``Authors`` are the source dataset's until someone edits them
    here: a prior file's ``Authors`` are kept.
    """
    path = Path(output_dir) / "dataset_description.json"
    source_desc: dict = {}
    try:
        source_desc = json.loads((Path(bids_dir) / "dataset_description.json").read_text())
    except (OSError, json.JSONDecodeError):
        pass
    if not isinstance(source_desc, dict):
        source_desc = {}
    source: dict = {"URL": Path(bids_dir).absolute().as_uri()}
    if source_desc.get("DatasetDOI"):
        source = {"DOI": source_desc["DatasetDOI"]}
    if source_desc.get("DatasetVersion"):
        source["Version"] = str(source_desc["DatasetVersion"])
    ours = {
        "Name": "bids_enhance: enhanced anatomical images",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": generated_by(),
        "SourceDatasets": [source],
        "DatasetLinks": {"raw": Path(bids_dir).absolute().as_uri()},
        "HowToAcknowledge": "Cite the methods listed in logs/CITATION.md.",
        "License": source_desc.get("License", "See the source dataset's licence."),
    }
    with dataset_lock(output_dir):
        desc: dict = {}
        if path.exists():
            try:
                desc = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                desc = {}
        if not isinstance(desc, dict):
            desc = {}
        desc.update(ours)
        if not desc.get("Authors") and source_desc.get("Authors"):
            desc["Authors"] = source_desc["Authors"]
        atomic_write_text(path, json.dumps(desc, indent=2) + "\n")
    write_readme(output_dir)
    return path


#: README file names the BIDS validator accepts (a dataset must have at most one).
README_NAMES = ("README", "README.md", "README.rst", "README.txt")
#: First line of the README bids_enhance writes. A README without it is the user's: kept as is.
README_MARKER = ("<!-- Written by bids_enhance, which rewrites it on every run. Delete this "
                 "line to keep your edits. -->")


def readme_text() -> str:
    """The README of the derivatives: what the dataset is and where to look."""
    from bids_enhance import __version__

    return f"""{README_MARKER}
# bids_enhance derivatives

Anatomical MRI enhanced by [bids_enhance]({CODE_URL}) {__version__}: denoising, x2
super-resolution and motion-artefact reduction, as chosen on the command line. This is a
BIDS-Derivatives dataset; `dataset_description.json` names the source dataset
(`SourceDatasets`, `DatasetLinks.raw`).

- `sub-<label>/[ses-<label>/]anat/*_desc-<label>_<suffix>.nii.gz`: the enhanced images. Each
  JSON sidecar records the source image (`Sources`), every enhancement step with its method or
  model (sha256 of the weights), parameters, noise estimate (`NoiseSigma`) and references,
  image-quality metrics before and after (`QualityMetrics`; a `null` metric has its reason in
  `NotAvailable`), seeds, software versions, and the command line and run that wrote it
  (`CommandLine`, `RunId`).
- `descriptions.tsv` (columns described in `descriptions.json`): what each `desc-` label
  means.
- `sub-<label>.html`: the visual report of each participant (before/after views, residuals,
  metrics, methods and errors), with its figures in `sub-<label>/figures/`.
- `sub-<label>/log/<RunId>/`: the settings of each run (`bids_enhance.toml`, which
  `--config-file` accepts to repeat it) and the crash files of failed steps.
- `logs/CITATION.md` (also `.bib` and `.html`): the methods text, with the references to cite
  when you use these images.
- `group_<suffix>.tsv` and `.html` (after `bids_enhance … group`): the metrics of all images.
"""


def write_readme(output_dir: Path) -> Path | None:
    """Write ``README.md`` (:func:`readme_text`) unless the dataset has a README of someone
    else's: one of :data:`README_NAMES` without :data:`README_MARKER` is kept as is (and no
    second README is added). Returns the path written, or None."""
    output_dir = Path(output_dir)
    with dataset_lock(output_dir):
        for name in README_NAMES:
            existing = output_dir / name
            if not existing.is_file():
                continue
            try:
                first = existing.read_text(encoding="utf-8").split("\n", 1)[0].strip()
            except (OSError, UnicodeDecodeError):
                return None
            if first != README_MARKER:
                return None
            if name != "README.md":  # ours under another name: one README only
                existing.unlink()
        return atomic_write_text(output_dir / "README.md", readme_text())


def write_bidsignore(output_dir: Path) -> Path:
    """Write ``.bidsignore`` (keeps a prior file's lines, adds :data:`BIDSIGNORE`)."""
    path = Path(output_dir) / ".bidsignore"
    with dataset_lock(output_dir):
        existing = path.read_text().splitlines() if path.exists() else []
        lines = list(dict.fromkeys([*existing, *BIDSIGNORE]))
        return atomic_write_text(path, "\n".join(lines) + "\n")


#: ``descriptions.json``: the sidecar of ``descriptions.tsv`` (its columns, and the file).
DESCRIPTIONS_SIDECAR = {
    "Description": "What each desc- label of this derivatives dataset means (one row per label "
                   "used by any run of bids_enhance into this directory).",
    "desc_id": {
        "LongName": "Description label",
        "Description": "A desc-<label> entity used in the file names of this dataset.",
    },
    "description": {
        "LongName": "Description",
        "Description": "How images with this label were made from their source; their JSON "
                       "sidecars give the methods, models and parameters.",
    },
}


def write_descriptions(output_dir: Path,
                       labels: list[str] | tuple[str, ...] | dict[str, str]) -> Path:
    """``descriptions.tsv`` with ``desc_id`` (``desc-<label>``) and ``description`` for every
    label used so far, and its sidecar ``descriptions.json`` (:data:`DESCRIPTIONS_SIDECAR`).
    ``labels``: labels of :data:`DESCRIPTIONS`, or ``{label: sentence}`` (e.g. the label of a
    chain of steps)."""
    if not isinstance(labels, dict):
        labels = {label: DESCRIPTIONS[label] for label in labels}
    path = Path(output_dir) / "descriptions.tsv"
    sidecar = path.with_suffix(".json")
    with dataset_lock(output_dir):
        rows: dict[str, str] = {}
        if path.exists():
            with open(path, newline="") as fobj:
                rows = {r["desc_id"]: r["description"]
                        for r in csv.DictReader(fobj, delimiter="\t")}
        for label, description in labels.items():
            rows[f"desc-{label}"] = description
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
        writer.writerow(["desc_id", "description"])
        for label in sorted(rows):
            writer.writerow([label, rows[label]])
        with atomic_paths(sidecar, path) as (tmp_sidecar, tmp_path):  # the table last
            tmp_sidecar.write_text(json.dumps(DESCRIPTIONS_SIDECAR, indent=2) + "\n",
                                   encoding="utf-8")
            tmp_path.write_text(buffer.getvalue(), encoding="utf-8")
        return path
