"""Header and data sanitising: fix and report what can be fixed, fail loudly on what cannot.

Fixed (and reported): qform/sform disagreement or a missing one, a header without spatial
units (millimetres assumed, as everywhere in BIDS), a singleton 4th (or higher) dimension,
NaN/Inf voxels, negative voxels (set to 0 here, the one place where bids_enhance
clips them: MR magnitude images are non-negative, and the Rician filters and the trained models
assume so), integer data with scaling factors (applied), any orientation (kept as is: outputs
have the input's orientation and world alignment).
Refused (:class:`ImageInputError`, one line naming the file and the problem): unreadable,
truncated or corrupt files, headers whose dimensions cannot fit in the file (checked before any
data is read), non-NIfTI files, 2D images or single slices, true 4D series, empty, all-constant
or entirely non-positive images, a non-invertible or non-finite voxel-to-world affine.
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

#: Smallest extent along any axis that the 3D filters can work with.
MIN_EXTENT = 8
#: Tolerance (mm) when comparing the qform and sform affines.
AFFINE_ATOL = 1e-3
#: Largest ratio of uncompressed to compressed size that deflate (gzip) can reach (258-byte
#: matches coded in 2 bits), so a ``.nii.gz`` of ``n`` bytes holds at most ``n × 1032`` bytes.
MAX_DEFLATE_RATIO = 1032


class ImageInputError(ValueError):
    """An input image that cannot be processed; ``str()`` is ``"<file>: <problem>"``."""

    def __init__(self, path: Path | str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass
class SanitiseReport:
    """What was found and done; stored in the sidecar as ``InputSanitising``."""

    orientation: str
    shape: tuple[int, ...]
    zooms: tuple[float, ...]
    dtype: str
    fixes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"Orientation": self.orientation, "Shape": list(self.shape),
                "VoxelSize": [round(float(z), 6) for z in self.zooms],
                "OriginalDataType": self.dtype, "Fixes": list(self.fixes)}


def load_image(path: Path | str) -> nib.Nifti1Image:
    """Load a NIfTI file, turning every reading failure into :class:`ImageInputError`."""
    path = Path(path)
    if not path.exists():
        raise ImageInputError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise ImageInputError(path, "file is empty (0 bytes)")
    try:
        img = nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError, OSError,
            EOFError, zlib.error, ValueError) as exc:
        raise ImageInputError(path, f"cannot read the file as NIfTI ({_reason(exc)})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise ImageInputError(path, f"is a {type(img).__name__}, not a NIfTI image")
    _check_header_size(img, path)
    return img


def _size_text(nbytes: int) -> str:
    power = min(int(math.log(nbytes, 1024)), 3) if nbytes >= 1024 else 0
    if power == 0:
        return f"{nbytes} bytes"
    return f"{nbytes / 1024 ** power:.3g} {('KiB', 'MiB', 'GiB')[power - 1]}"


def _check_header_size(img: nib.Nifti1Image, path: Path) -> None:
    """Refuse a header whose dimensions need more data than the file can hold (a corrupt header
    or a truncated file), before anything tries to allocate that much memory."""
    shape = tuple(int(s) for s in img.shape)
    dtype = img.header.get_data_dtype()
    voxels = math.prod(shape)
    needed = voxels * dtype.itemsize
    size = path.stat().st_size
    with open(path, "rb") as fobj:
        magic = fobj.read(2)
    if magic == b"\x1f\x8b":  # gzip
        capacity, where = size * MAX_DEFLATE_RATIO, "gzip file, even at maximal compression"
    elif path.name.endswith(".nii"):
        capacity, where = size - int(img.header.get_data_offset()), "file"
    else:  # other compressions (bz2, zstd) have no useful bound
        return
    if needed > capacity:
        gib = needed / 2**30
        gib_text = f"{gib:,.0f}" if gib >= 10 else f"{gib:.3g}"
        raise ImageInputError(
            path, f"implausible image header: dimensions {'×'.join(map(str, shape))} ({voxels:,} "
                  f"voxels, {gib_text} GiB of {dtype} data) cannot fit in the "
                  f"{_size_text(size)} of this {where} (corrupt header or truncated file)")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _read_data(img: nib.Nifti1Image, path: Path | str) -> np.ndarray:
    try:
        # get_fdata applies scl_slope/scl_inter (NIfTI rules: 0 or NaN slope = no scaling).
        return np.asarray(img.get_fdata(dtype=np.float32))
    except MemoryError:
        voxels = math.prod(int(s) for s in img.shape)
        raise ImageInputError(path, f"not enough memory to read the image data "
                                    f"({'×'.join(map(str, img.shape))} = {voxels:,} voxels, "
                                    f"{voxels * 4 / 2**30:.3g} GiB as float32)") from None
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError, ValueError) as exc:
        raise ImageInputError(path, f"the image data are truncated or corrupt "
                                    f"({_reason(exc)})") from None


def _fix_shape(data: np.ndarray, path: Path | str, fixes: list[str]) -> np.ndarray:
    shape = data.shape
    if data.size == 0:
        raise ImageInputError(path, f"image is empty (shape {shape})")
    if data.ndim > 3:
        extra = shape[3:]
        if all(s == 1 for s in extra):
            data = data.reshape(shape[:3])
            fixes.append(f"dropped {len(extra)} singleton dimension(s) beyond the third "
                         f"(shape {'×'.join(map(str, shape))} → {'×'.join(map(str, shape[:3]))})")
        else:
            n = int(np.prod(extra))
            raise ImageInputError(path, f"image is {data.ndim}D with {n} volumes (shape "
                                        f"{'×'.join(map(str, shape))}); expected one 3D volume")
    if data.ndim < 3:
        raise ImageInputError(path, f"image is {data.ndim}D (shape "
                                    f"{'×'.join(map(str, shape))}); expected a 3D volume")
    small = [i for i, s in enumerate(data.shape) if s < MIN_EXTENT]
    if small:
        raise ImageInputError(
            path, f"image has only {data.shape[small[0]]} voxel(s) along axis {small[0]} "
                  f"(shape {'×'.join(map(str, data.shape))}); expected a 3D volume with at least "
                  f"{MIN_EXTENT} voxels per axis")
    return data


def _clip_negative(data: np.ndarray, path: Path | str, fixes: list[str]) -> np.ndarray:
    """Set negative voxels to 0 and say so (the only place where bids_enhance clips them)."""
    negative = data < 0
    count = int(negative.sum())
    if not count:
        return data
    low = float(data.min())
    if not (data > 0).any():
        raise ImageInputError(path, f"every voxel is zero or negative (minimum {low:.6g}); "
                                    "expected a magnitude image with positive intensities")
    fixes.append(f"clipped {count} negative voxel(s) to 0 (minimum {low:.6g}; "
                 f"{100 * count / data.size:.3g} % of the voxels): magnitude images are "
                 "non-negative")
    return np.where(negative, np.float32(0), data)


def _fix_affine(img: nib.Nifti1Image, path: Path | str, fixes: list[str]) -> tuple[np.ndarray, int]:
    """Decide the voxel-to-world affine (NIfTI precedence: sform, then qform)."""
    sform, scode = img.get_sform(coded=True)
    qform, qcode = img.get_qform(coded=True)
    if sform is not None and qform is not None:
        diff = float(np.abs(sform - qform).max())
        if diff > AFFINE_ATOL:
            fixes.append(f"qform and sform disagree (largest difference {diff:.3g}); used the "
                         "sform, as the NIfTI standard prescribes, and rewrote the qform to match")
        affine, code = sform, int(scode)
    elif sform is not None:
        fixes.append("qform was not set; set it from the sform")
        affine, code = sform, int(scode)
    elif qform is not None:
        fixes.append("sform was not set; set it from the qform")
        affine, code = qform, int(qcode)
    else:
        fixes.append("neither qform nor sform is set: the orientation is unknown; kept the "
                     "voxel-size-only affine (world coordinates are arbitrary)")
        affine, code = img.header.get_base_affine(), 0
    if not np.all(np.isfinite(affine)):
        raise ImageInputError(path, "the voxel-to-world affine has non-finite values "
                                    "(check pixdim, qform and sform in the header)")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ImageInputError(path, "the voxel-to-world affine is singular (a voxel size is 0?)")
    return affine, code


def _units(header, fixes: list[str]) -> tuple[str, str]:
    """The header's ``(space, time)`` units; millimetres and seconds where it has none."""
    xyz, t = header.get_xyzt_units()
    if xyz != "unknown":
        return xyz, t
    fixes.append("the header gives no unit for the voxel sizes (xyzt_units unknown); set "
                 "millimetres" + (" and seconds" if t == "unknown" else "")
                 + ", the units BIDS uses")
    return "mm", ("sec" if t == "unknown" else t)


def sanitise_image(img: nib.Nifti1Image, *, path: Path | str | None = None
                   ) -> tuple[nib.Nifti1Image, SanitiseReport]:
    """Return a clean float32 3D NIfTI (input intensity scale, input affine) and a report."""
    path = path or img.get_filename() or "<image>"
    fixes: list[str] = []
    header = img.header
    data = _read_data(img, path)

    # nibabel moves scl_slope/scl_inter from the header to the array proxy on load.
    slope_v = float(getattr(img.dataobj, "slope", 1.0))
    inter_v = float(getattr(img.dataobj, "inter", 0.0))
    if slope_v != 1.0 or inter_v != 0.0:
        fixes.append(f"applied the {header.get_data_dtype()} scaling (scl_slope={slope_v:g}, "
                     f"scl_inter={inter_v:g}); outputs are float32 in the scaled units")
    data = _fix_shape(data, path, fixes)

    finite = np.isfinite(data)
    if not finite.all():
        bad = int((~finite).sum())
        if bad == data.size:
            raise ImageInputError(path, "every voxel is NaN or infinite")
        data = np.where(finite, data, 0.0)
        fixes.append(f"set {bad} NaN/infinite voxel(s) to 0")
    data = _clip_negative(data, path, fixes)
    lo, hi = float(data.min()), float(data.max())
    if lo == hi:
        raise ImageInputError(path, f"image contains no signal (every voxel is {lo:g})")

    affine, code = _fix_affine(img, path, fixes)
    out_header = header.copy() if isinstance(img, nib.Nifti1Image) else nib.Nifti1Header()
    out = nib.Nifti1Image(data.astype(np.float32), affine, header=out_header)
    out.set_data_dtype(np.float32)
    out.header.set_slope_inter(None, None)
    xyz_unit, t_unit = _units(header, fixes)
    out.header.set_xyzt_units(xyz=xyz_unit, t=t_unit)
    out.set_sform(affine, code)
    out.set_qform(affine, code, strip_shears=True)
    qform_back = out.get_qform()
    if code and np.abs(qform_back - affine).max() > AFFINE_ATOL:
        fixes.append("the sform has shears a qform cannot hold; the qform is its closest "
                     "rigid approximation (readers should use the sform)")

    axcodes = "".join(str(c) for c in nib.aff2axcodes(affine)) if code else "unknown"
    report = SanitiseReport(
        orientation=axcodes,
        shape=tuple(int(s) for s in data.shape),
        zooms=tuple(float(z) for z in np.sqrt((affine[:3, :3] ** 2).sum(axis=0))),
        dtype=str(header.get_data_dtype()),
        fixes=fixes,
    )
    return out, report


def load_and_sanitise(path: Path | str) -> tuple[nib.Nifti1Image, SanitiseReport]:
    """:func:`load_image` then :func:`sanitise_image`."""
    return sanitise_image(load_image(path), path=path)
