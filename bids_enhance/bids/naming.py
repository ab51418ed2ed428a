"""BIDS-Derivatives names for our outputs.

Every entity of the source file is kept (``ses``, ``acq``, ``ce``, ``rec``, ``run``, ``echo``,
``part``, ``inv`` …) so two inputs can never map to one output; ``res`` and ``desc`` are added in
the positions the BIDS schema gives them. Written by hand rather than with niworkflows'
``DerivativesDataSink``, which drops ``echo-`` and accepts invalid ``desc`` labels
(CONVENTIONS.md).
"""

from __future__ import annotations

import re
from pathlib import Path

#: Entity order of the BIDS schema (``rules/entities.yaml``), short keys.
ENTITY_ORDER = (
    "sub", "ses", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc", "stain", "rec",
    "dir", "run", "mod", "echo", "flip", "inv", "mt", "part", "proc", "hemi", "space", "split",
    "recording", "chunk", "seg", "res", "den", "label", "desc",
)
_RANK = {key: i for i, key in enumerate(ENTITY_ORDER)}
_LABEL = re.compile(r"[A-Za-z0-9]+")
_EXTENSIONS = (".nii.gz", ".nii", ".json", ".svg", ".html", ".tsv")


class BIDSNameError(ValueError):
    """A file name that is not a BIDS name, or a label that is not a valid BIDS label."""


def split_extension(name: str) -> tuple[str, str]:
    for ext in _EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)], ext
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if dot else (name, "")


def suffix_of(path: Path | str) -> str:
    """The BIDS suffix of a file name (``T1w`` of ``sub-01_run-1_T1w.nii.gz``); unlike
    :func:`parse_bids_name`, never raises: the last ``_``-separated part of any name."""
    return split_extension(Path(path).name)[0].split("_")[-1]


def parse_bids_name(path: Path | str, *, require_subject: bool = True
                    ) -> tuple[dict[str, str], str, str]:
    """Split ``sub-01_ses-a_run-1_T1w.nii.gz`` into (entities in order, suffix, extension).
    ``require_subject=False`` also takes names without ``sub-``, as inherited sidecars above
    the subject level have (``T1w.json``, ``acq-mprage_T1w.json``)."""
    name = Path(path).name
    stem, ext = split_extension(name)
    parts = stem.split("_")
    if require_subject and (len(parts) < 2 or not parts[0].startswith("sub-")):
        raise BIDSNameError(f"{name}: not a BIDS file name (expected sub-<label>_…_<suffix>)")
    suffix = parts[-1]
    entities: dict[str, str] = {}
    for part in parts[:-1]:
        key, sep, value = part.partition("-")
        if not sep or not key or not _LABEL.fullmatch(value):
            raise BIDSNameError(f"{name}: {part!r} is not a key-value entity")
        if key in entities:
            raise BIDSNameError(f"{name}: entity {key!r} appears twice")
        entities[key] = value
    return entities, suffix, ext


def check_label(value: str, *, entity: str) -> str:
    if not _LABEL.fullmatch(value or ""):
        raise BIDSNameError(f"{entity}-{value}: BIDS labels are letters and digits only")
    return value


def derivative_name(source: Path | str, *, desc: str | None = None, res: str | None = None,
                    suffix: str | None = None, extension: str = ".nii.gz") -> str:
    """Name of a derivative of ``source`` with ``desc``/``res`` added (every entity kept)."""
    entities, src_suffix, _ = parse_bids_name(source)
    if desc is not None:
        entities["desc"] = check_label(desc, entity="desc")
    if res is not None:
        entities["res"] = check_label(res, entity="res")
    # Known entities in schema order; any unknown ones keep their place before the derivative
    # entities so nothing is lost.
    unknown_rank = _RANK["proc"] + 0.5
    ordered = sorted(entities.items(), key=lambda kv: _RANK.get(kv[0], unknown_rank))
    stem = "_".join(f"{k}-{v}" for k, v in ordered)
    return f"{stem}_{suffix or src_suffix}{extension}"


def derivative_path(output_dir: Path | str, source: Path | str, *, datatype: str = "anat",
                    **kwargs) -> Path:
    """``<out>/sub-X/[ses-Y/]<datatype>/<derivative_name>``."""
    entities, _, _ = parse_bids_name(source)
    folder = Path(output_dir) / f"sub-{entities['sub']}"
    if "ses" in entities:
        folder = folder / f"ses-{entities['ses']}"
    return folder / datatype / derivative_name(source, **kwargs)


def figure_path(output_dir: Path | str, source: Path | str, *, desc: str,
                extension: str = ".svg", suffix: str | None = None) -> Path:
    """Reportlet location: ``<out>/sub-X/figures/<name>_desc-<desc>_<suffix><ext>``."""
    entities, _, _ = parse_bids_name(source)
    name = derivative_name(source, desc=desc, suffix=suffix, extension=extension)
    return Path(output_dir) / f"sub-{entities['sub']}" / "figures" / name


def bids_uri(path: Path | str, dataset_root: Path | str, *, dataset: str = "raw") -> str:
    """``bids:<dataset>:<path relative to the dataset root>`` (BIDS URI)."""
    rel = Path(path).absolute().relative_to(Path(dataset_root).absolute())
    return f"bids:{dataset}:{rel.as_posix()}"


def image_id(source: Path | str) -> str:
    """A short identifier for workflow node names: ``ses_a_run_1_T1w`` (no subject)."""
    entities, suffix, _ = parse_bids_name(source)
    bits = [f"{k}_{v}" for k, v in entities.items() if k != "sub"]
    return re.sub(r"\W", "_", "_".join([*bits, suffix]))
