"""NIfTI images of results: the input's transform codes and units on the result's grid.

An enhancement step may put its output on a new grid (x2 super-resolution). The image it writes
keeps what the input's header says about space: its sform/qform codes (scanner, aligned …; 1 when
the input had none) on the new affine, and its units, so a de-normalised output carries the
input's units rather than none (no ``NIFTI_UNIT`` warnings downstream).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

__all__ = ["denormalised_image", "result_image", "voxel_sizes"]


def voxel_sizes(affine: np.ndarray) -> list[float]:
    """Voxel sizes (the column norms of the affine's 3×3 part), as plain floats."""
    return [float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)]


def result_image(data: np.ndarray, affine: np.ndarray, like: nib.Nifti1Image, *,
                 keep_header: bool = False) -> nib.Nifti1Image:
    """A float32 image of ``data`` on ``affine`` with the sform/qform codes of ``like`` (1 where
    ``like`` has none).

    ``keep_header=False``: a fresh header with ``like``'s space and time units;
    ``keep_header=True``: a copy of ``like``'s header (its units, description, intent …), data
    type float32.
    """
    if keep_header:
        result = nib.Nifti1Image(data, affine, like.header)
    else:
        result = nib.Nifti1Image(data.astype(np.float32), affine)
    result.set_sform(affine, int(like.header["sform_code"]) or 1)
    result.set_qform(affine, int(like.header["qform_code"]) or 1)
    if keep_header:
        result.set_data_dtype(np.float32)
    else:
        result.header.set_xyzt_units(*like.header.get_xyzt_units())
    return result


def denormalised_image(data: np.ndarray, img: nib.Nifti1Image,
                       reference: nib.Nifti1Image) -> nib.Nifti1Image:
    """``data`` (``img`` brought back to the input's intensity scale) as a float32 image.

    On ``reference``'s grid the header is ``reference``'s (alignment, units); on another grid (a
    super-resolved image: the enhancer set the geometry) it is ``img``'s, with ``reference``'s
    units when ``img`` has none.
    """
    header = reference.header.copy()
    if data.shape != reference.shape:
        header = img.header.copy()
        if header.get_xyzt_units()[0] == "unknown":
            header.set_xyzt_units(*reference.header.get_xyzt_units())
    out = nib.Nifti1Image(data.astype(np.float32), img.affine, header)
    out.set_data_dtype(np.float32)
    return out

