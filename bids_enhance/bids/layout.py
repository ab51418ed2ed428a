"""Input queries with pybids."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger(__name__)

#: Non-magnitude images are left alone unless a filter asks for them explicitly.
SKIPPED_PARTS = ("phase", "real", "imag")
_IGNORED_DIRS = ("code", "derivatives", "sourcedata", "stimuli", "models", "logs")


class BIDSInputError(ValueError):
    """The dataset or the selection cannot give any image to process (exit code 2)."""


def _to_query(value: Any) -> Any:
    from bids.layout import Query

    if value is None:
        return Query.NONE
    if value == "*":
        return Query.ANY
    if isinstance(value, list):
        return [_to_query(v) for v in value]
    return value


def make_layout(bids_dir: Path, *, database_dir: Path | None = None):
    """A pybids layout of ``bids_dir``; the index is kept in ``database_dir`` when given.

    Many jobs can share one index read-only: build it once (one job, or
    ``bids_enhance … --bids-database-dir DIR --boilerplate-only``), then point every array task at
    it. pybids only writes the database when it does not exist yet.
    """
    from bids.layout import BIDSLayout, BIDSLayoutIndexer

    indexer = BIDSLayoutIndexer(validate=False, ignore=list(_IGNORED_DIRS), index_metadata=False)
    kwargs: dict[str, Any] = {"validate": False, "indexer": indexer}
    if database_dir is not None:
        database_dir.mkdir(parents=True, exist_ok=True)
        kwargs["database_path"] = str(database_dir)
        kwargs["reset_database"] = False
    return BIDSLayout(str(bids_dir), **kwargs)


def collect_images(layout, *, participant_label: list[str] | None = None,
                   session_label: list[str] | None = None,
                   suffixes: list[str] | tuple[str, ...] = ("T1w",),
                   filters: dict[str, dict[str, Any]] | None = None) -> dict[str, list[Path]]:
    """Anatomical images to process, per subject label (sorted, reproducible).

    Raises :class:`BIDSInputError` when a requested participant does not exist or has no
    matching image, when no participant has one, or when two files would give the same output
    name. Participants that were not asked for by label and have no matching image (e.g. an
    ``emptyroom`` subject) are skipped with a warning.
    """
    from nipype.utils.filemanip import split_filename

    available = sorted(layout.get_subjects())
    if not available:
        raise BIDSInputError(f"{layout.root} contains no subjects (no sub-* folders)")
    if participant_label:
        missing = sorted(set(participant_label) - set(available))
        if missing:
            raise BIDSInputError(
                f"participant(s) {', '.join(missing)} not found in {layout.root} "
                f"(available: {', '.join(available[:10])}{' …' if len(available) > 10 else ''})")
        subjects = sorted(participant_label)
    else:
        subjects = available

    filters = filters or {}
    found: dict[str, list[Path]] = defaultdict(list)
    for suffix in suffixes:
        query: dict[str, Any] = {"datatype": "anat", "suffix": suffix,
                                 "extension": [".nii", ".nii.gz"]}
        query.update({k: _to_query(v) for k, v in filters.get(suffix.lower(), {}).items()})
        if session_label:
            query["session"] = session_label
        explicit_part = "part" in filters.get(suffix.lower(), {})
        for subject in subjects:
            for bids_file in layout.get(subject=subject, **query):
                path = Path(bids_file.path)
                part = bids_file.get_entities().get("part")
                if part in SKIPPED_PARTS and not explicit_part:
                    LOGGER.info("Skipping %s: part-%s is not a magnitude image", path.name, part)
                    continue
                found[subject].append(path)

    result: dict[str, list[Path]] = {}
    what = "/".join(suffixes)
    where = f" in session(s) {', '.join(session_label)}" if session_label else ""
    matching = " matching the --bids-filter-file" if filters else ""
    skipped = []
    for subject in subjects:
        files = sorted(set(found.get(subject, [])))
        if not files:
            if participant_label:  # asked for by label: that is an error
                raise BIDSInputError(
                    f"no {what} image found for participant {subject}{where}{matching} "
                    f"(looked for anat/sub-{subject}_*_{{{','.join(suffixes)}}}.nii[.gz])")
            skipped.append(subject)  # e.g. ds000117's sub-emptyroom: as fMRIPrep, skip it
            continue
        stems: dict[str, Path] = {}
        for path in files:
            stem = split_filename(path)[1]
            if stem in stems:
                raise BIDSInputError(
                    f"{path} and {stems[stem]} are the same image name with two extensions; "
                    "remove one of them")
            stems[stem] = path
        result[subject] = files
    if skipped:
        LOGGER.warning("Skipping participant(s) without a %s image%s%s: %s", what, where,
                       matching, ", ".join(skipped))
    if not result:
        raise BIDSInputError(
            f"no {what} image found in {layout.root}{where}{matching} (looked for "
            f"sub-*/[ses-*/]anat/sub-*_{{{','.join(suffixes)}}}.nii[.gz] in "
            f"{len(subjects)} participant(s))")
    return result
