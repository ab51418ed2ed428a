"""A source image's BIDS metadata with the inheritance principle, and the metadata we act on.

BIDS lets a JSON sidecar sit at any level between the dataset root and the image's folder
(``T1w.json`` at the root applies to every T1w image, ``sub-01/anat/sub-01_T1w.json`` to one);
a file applies when its suffix is the image's and its entities are a subset of the image's, and
nearer (deeper, then more specific) files override farther ones. pybids implements this too, but
our layout is indexed without metadata (:mod:`bids_enhance.bids.layout`) to stay fast on large
datasets, and only the motion step needs a value, so it is read here for one image at a time.

:func:`phase_encoding_axis` turns ``PhaseEncodingDirection`` (``i``, ``j``, ``k``, optionally
with ``-``: the first, second or third voxel axis of the NIfTI data array) into that array axis.
Rigid motion between the shots of an acquisition corrupts contiguous segments of k-space along
this axis, so its ghosts run along it: the motion model must be shown them along the axis it was
trained on (:data:`bids_enhance.degrade.motion.SEGMENT_AXIS`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from bids_enhance.bids.naming import BIDSNameError, parse_bids_name

__all__ = ["PHASE_ENCODING_AXES", "inherited_metadata", "motion_phase_encoding",
           "phase_encoding_axis"]

LOGGER = logging.getLogger(__name__)

#: ``PhaseEncodingDirection`` without its sign → voxel axis of the data array
PHASE_ENCODING_AXES = {"i": 0, "j": 1, "k": 2}


def inherited_metadata(source: Path | str, bids_dir: Path | str | None = None, *,
                       origins: dict[str, Path] | None = None) -> dict[str, Any]:
    """The metadata of ``source`` by the BIDS inheritance principle: every applicable JSON file
    from ``bids_dir`` (the dataset root; None or a root that does not contain ``source``: the
    image's own folder only) down to the image's folder, the nearer and the more specific
    overriding. A sidecar that cannot be read is skipped with a warning naming it.
    ``origins``: filled with the file each returned key came from."""
    source = Path(source)
    try:
        entities, suffix, _ = parse_bids_name(source, require_subject=False)
    except BIDSNameError:
        return {}
    folders = [source.parent]
    if bids_dir is not None:
        root = Path(bids_dir).resolve()
        here = source.parent.resolve()
        if here == root or root in here.parents:
            folders = [here, *[p for p in here.parents if p == root or root in p.parents]]
    metadata: dict[str, Any] = {}
    for folder in reversed(folders):  # the root first; nearer folders override
        candidates = []
        for path in folder.glob("*.json"):
            try:
                found, found_suffix, _ = parse_bids_name(path, require_subject=False)
            except BIDSNameError:
                continue
            if found_suffix == suffix and all(entities.get(k) == v for k, v in found.items()):
                candidates.append((len(found), path.name, path))
        for _, _, path in sorted(candidates):  # fewer entities first: the specific override
            try:
                content = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                LOGGER.warning("%s: not a readable JSON sidecar (%s); its metadata is ignored",
                               path, exc)
                continue
            if isinstance(content, dict):
                metadata.update(content)
                if origins is not None:
                    origins.update(dict.fromkeys(content, path))
    return metadata


def phase_encoding_axis(metadata: dict[str, Any], *, where: str = "sidecar") -> int | None:
    """The data-array axis of ``PhaseEncodingDirection`` in ``metadata`` (0, 1 or 2), or None
    if it is absent. A value that is not ``i``, ``j``, ``k`` (with or without ``-``) is a
    :class:`~bids_enhance.bids.layout.BIDSInputError` naming ``where``."""
    from bids_enhance.bids.layout import BIDSInputError

    value = metadata.get("PhaseEncodingDirection")
    if value is None:
        return None
    axis = PHASE_ENCODING_AXES.get(str(value).rstrip("-")) if isinstance(value, str) else None
    if axis is None or str(value).count("-") > 1:
        raise BIDSInputError(f"{where}: PhaseEncodingDirection must be one of i, j, k, i-, j-, "
                             f"k-, got {value!r}")
    return axis


def motion_phase_encoding(source: Path | str, bids_dir: Path | str | None, *,
                          simulate: str | None = None) -> tuple[int, str]:
    """``(voxel axis, where it came from)`` along which the motion ghosts of ``source`` run:

    - simulation mode with a motion preset: TorchIO's axis
      (:data:`~bids_enhance.degrade.motion.SEGMENT_AXIS`), whatever the scan's own;
    - else ``PhaseEncodingDirection`` of the image's metadata (inheritance principle);
    - else the training axis, assumed, with a warning naming the file (a ``T1w.json`` with
      ``PhaseEncodingDirection`` at the dataset root sets it for every T1w image).
    """
    from bids_enhance.degrade import PRESETS
    from bids_enhance.degrade.motion import SEGMENT_AXIS, Motion, RandomMotion

    letter = "ijk"[SEGMENT_AXIS]
    if simulate and any(isinstance(step, (Motion, RandomMotion))
                        for step in PRESETS.get(simulate, ())):
        return SEGMENT_AXIS, f"simulated motion (TorchIO's k-space segments along {letter})"
    source = Path(source)
    origins: dict[str, Path] = {}
    metadata = inherited_metadata(source, bids_dir, origins=origins)
    where = origins.get("PhaseEncodingDirection")
    axis = phase_encoding_axis(metadata, where=f"{where} (metadata of {source.name})")
    if axis is not None:
        return axis, f"PhaseEncodingDirection {'ijk'[axis]} in the image's metadata"
    LOGGER.warning("%s: no PhaseEncodingDirection in its metadata; the motion model assumes "
                   "its ghosts run along the last voxel axis (%s), the one it was trained on. "
                   "If they do not, give PhaseEncodingDirection in the JSON sidecar.",
                   source.name, letter)
    return SEGMENT_AXIS, (f"assumed: no PhaseEncodingDirection in the image's metadata, the "
                          f"training axis ({letter})")
