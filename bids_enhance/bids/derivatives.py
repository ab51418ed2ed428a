"""Write one file of the derivatives dataset under its BIDS name, atomically, with its sidecar.

:func:`write_derivative` is what the :class:`~bids_enhance.interfaces.bids.DerivativesDataSink`
node runs: every source entity is kept (no collisions between echoes, parts, runs …),
``desc``/``res`` labels are validated, a ``res-`` output must say what its label means
(``Resolution``), and ``SkullStripped`` is always present. Files are first written under hidden
temporary names and renamed when complete (:func:`bids_enhance.utils.atomic_paths`), so an
interrupted run never leaves a partial file under a final name; an image and its sidecar are
one unit: the sidecar is renamed first and the image last, so a reader that finds an image finds
its sidecar.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DATATYPES", "write_derivative"]

#: ``anat``: images (with a JSON sidecar); ``figures``: reportlets (no sidecar).
DATATYPES = ("anat", "figures")


def write_derivative(in_file: Path | str, *, base_directory: Path | str,
                     source_file: Path | str, datatype: str = "anat", desc: str | None = None,
                     res: str | None = None, suffix: str | None = None,
                     meta: Mapping[str, Any] | None = None) -> tuple[Path, Path | None]:
    """Copy ``in_file`` to its derivative name of ``source_file`` under ``base_directory``.

    ``anat``: with the JSON sidecar ``meta`` (``SkullStripped`` added when absent; a ``res``
    label needs a ``Resolution`` entry); ``figures``: the reportlet alone, ``desc`` required.
    Returns ``(out_file, out_meta)`` (``out_meta`` is None for figures).
    """
    from bids_enhance.bids.naming import derivative_path, figure_path, split_extension
    from bids_enhance.utils import atomic_copy, atomic_paths, dump_json

    if datatype not in DATATYPES:
        raise ValueError(f"datatype must be one of {list(DATATYPES)}, got {datatype!r}")
    _, ext = split_extension(Path(in_file).name)
    if datatype == "figures":
        out_file = figure_path(base_directory, source_file, desc=desc or "", extension=ext,
                               suffix=suffix)
        atomic_copy(in_file, out_file)
        return out_file, None

    out_file = derivative_path(base_directory, source_file, desc=desc, res=res, suffix=suffix,
                               extension=ext)
    meta = dict(meta or {})
    if res is not None and not meta.get("Resolution"):
        raise ValueError(f"{out_file.name}: a res-{res} output needs a 'Resolution' "
                         "description in its metadata")
    meta.setdefault("SkullStripped", False)
    out_meta = out_file.with_name(out_file.name.removesuffix(ext) + ".json")
    with atomic_paths(out_meta, out_file) as (tmp_meta, tmp_file):  # the image last
        tmp_meta.write_text(dump_json(meta), encoding="utf-8")
        shutil.copyfile(in_file, tmp_file)
    return out_file, out_meta
