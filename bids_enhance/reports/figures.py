"""Static figures of the visual reports (matplotlib; no nipype, no BIDS).

:func:`plot_residual_mosaic` draws what an enhancement step removed from an image: the signed
difference ``before - after`` in input intensity units, on a diverging colour map centred on 0.
Signed rather than absolute, because structure shows up as *coherent* bands of one sign along
edges (a ring of the same colour around the ventricles, the cortical ribbon traced in red or
blue), while removed noise is a sign-alternating speckle without anatomy. An absolute map turns
both into the same bright texture.

Arrays are ``(X, Y, Z)`` in RAS+ voxel order (``nibabel.as_closest_canonical``): axis 0 runs
left→right, 1 posterior→anterior, 2 inferior→superior. Slices are shown in neurological
convention (subject's left on the left), as nilearn and the NiPreps reports do.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Dark-centred diverging maps read best on the black background of a mosaic; the first one
#: available is used (``berlin`` needs matplotlib >= 3.10).
_DIVERGING_MAPS = ("berlin", "RdBu_r")
_BACKGROUND = "#000000"
_FOREGROUND = "#e8e8e8"
#: Percentile of |residual| inside the head that sets the colour limits.
RESIDUAL_CLIP_PERCENTILE = 99.5


def _diverging_cmap():
    import matplotlib

    for name in _DIVERGING_MAPS:
        if name in matplotlib.colormaps:
            return matplotlib.colormaps[name]
    return matplotlib.colormaps["coolwarm"]


def bounding_box(mask: np.ndarray, *, margin: int = 2) -> tuple[slice, slice, slice]:
    """Bounding box of ``mask`` (``(X, Y, Z)`` bool) grown by ``margin`` voxels; the whole
    volume when the mask is empty."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"mask must be a 3D volume, got shape {mask.shape}")
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)  # type: ignore[return-value]
    box = []
    for axis, n in enumerate(mask.shape):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(int(idx[0]) - margin, 0), min(int(idx[-1]) + margin + 1, n)))
    return tuple(box)  # type: ignore[return-value]


def axial_indices(box: slice, n_slices: int, *, trim: float = 0.08) -> list[int]:
    """``n_slices`` distinct, evenly spaced indices inside ``box``, ``trim`` off each end."""
    if n_slices < 1:
        raise ValueError(f"n_slices must be >= 1, got {n_slices}")
    start, stop = box.start, box.stop - 1
    span = stop - start
    lo, hi = start + trim * span, stop - trim * span
    idx = np.unique(np.round(np.linspace(lo, hi, n_slices)).astype(int))
    return [int(i) for i in idx]


def _world(affine: np.ndarray, ijk: Sequence[float]) -> np.ndarray:
    return (np.asarray(affine, dtype=float) @ np.array([*ijk, 1.0]))[:3]


def plot_residual_mosaic(before: np.ndarray, after: np.ndarray, out_file: Path | str, *,
                         zooms: Sequence[float] = (1.0, 1.0, 1.0),
                         affine: np.ndarray | None = None,
                         mask: np.ndarray | None = None, n_axial: int = 5,
                         smooth_mm: float = 4.0, units: str = "image units",
                         title: str | None = None, dpi: int = 110) -> Path:
    """Write an SVG mosaic of ``before - after`` over the head's bounding box.

    Two rows of the same slices (``n_axial`` axial, one sagittal, one coronal):

    1. the residual itself: removed noise should be a structureless speckle;
    2. its local mean (Gaussian, ``smooth_mm`` FWHM but at least 2.5 voxels along each axis): noise averages out there while anything
       coherent survives, so removed anatomy (edges, the cortical ribbon, vessels) and intensity
       shifts stand out even when they are much weaker than the noise.

    Each row has its own symmetric colour scale (``RESIDUAL_CLIP_PERCENTILE`` of the absolute
    values inside the head) and colour bar in image units.

    Parameters
    ----------
    before, after
        Images on the same grid, shape ``(X, Y, Z)`` in RAS+ voxel order, input intensity scale.
    out_file
        Destination (``.svg``): a JPEG raster of the figure inside an SVG (see
        :func:`figure_to_svg`).
    zooms
        Voxel sizes in mm (display aspect ratio and smoothing width).
    affine
        Voxel-to-world affine, only used to print slice coordinates in mm.
    mask
        Head mask ``(X, Y, Z)`` (bool); default :func:`bids_enhance.image.mask.head_mask` of
        ``before``. It sets the bounding box, the colour limits and the outline drawn on every
        slice.

    Returns the path written.
    """
    from matplotlib import gridspec
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from scipy import ndimage as ndi

    before = np.nan_to_num(np.asarray(before, dtype=np.float32))
    after = np.nan_to_num(np.asarray(after, dtype=np.float32))
    if before.ndim != 3 or before.shape != after.shape:
        raise ValueError(f"before and after must be 3D volumes of one shape, got {before.shape} "
                         f"and {after.shape}")
    zooms = tuple(float(z) for z in zooms[:3])
    if len(zooms) != 3 or not all(np.isfinite(z) and z > 0 for z in zooms):
        raise ValueError(f"zooms must be three positive voxel sizes, got {zooms}")
    if mask is None:
        from bids_enhance.image.mask import head_mask

        mask = head_mask(before)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != before.shape:
        raise ValueError(f"mask must have the image shape {before.shape}, got {mask.shape}")
    if not mask.any():
        mask = np.ones(before.shape, dtype=bool)

    residual = before - after
    # FWHM smooth_mm, but at least 2.5 voxels along each axis (thick slices).
    fwhm_vox = [max(float(smooth_mm) / z, 2.5) for z in zooms]
    fwhm_mm = [f * z for f, z in zip(fwhm_vox, zooms, strict=True)]
    smooth = ndi.gaussian_filter(residual, [f / 2.3548 for f in fwhm_vox], mode="nearest")
    fwhm_text = (f"{fwhm_mm[0]:.2g} mm" if np.ptp(fwhm_mm) < 0.05
                 else " × ".join(f"{f:.2g}" for f in fwhm_mm) + " mm")
    rms = float(np.sqrt(np.mean(residual[mask] ** 2)))
    mean = float(np.mean(residual[mask]))
    smooth_rms = float(np.sqrt(np.mean(smooth[mask] ** 2)))
    positive = before[before > 0]
    robust = float(np.percentile(positive, 99.9)) if positive.size else 0.0

    box = bounding_box(mask)
    centre = [(b.start + b.stop - 1) // 2 for b in box]
    # The mid-sagittal plane is mostly the interhemispheric fissure: cut through one hemisphere
    # (the subject's left, at 15 % of the head's width from the midline) instead.
    x_cut = max(box[0].start, centre[0] - int(round(0.15 * (box[0].stop - box[0].start))))
    cuts = [(2, k) for k in axial_indices(box[2], n_axial)] + [(0, x_cut), (1, centre[1])]
    cmap = _diverging_cmap()

    def panel(volume, axis: int, index: int):
        sl = list(box)
        sl[axis] = index
        keep = [a for a in range(3) if a != axis]
        size = tuple((box[a].stop - box[a].start) * zooms[a] for a in keep)
        return volume[tuple(sl)].T, mask[tuple(sl)].T, size

    sizes = [panel(residual, a, i)[2] for a, i in cuts]
    ratios = [w / h for w, h in sizes]

    # Layout (inches): two rows of equal height; panel widths follow the physical aspect ratio;
    # a colour-bar column on the right of each row; a line of numbers at the bottom.
    width_in, cbar_in, text_in = 11.0, 0.95, 0.45
    title_in = 0.3 if title else 0.0
    row_in = (width_in - cbar_in) / sum(ratios)
    if row_in < 1.6:  # a flat field of view (slab): widen the figure rather than squash it
        row_in = 1.6
        width_in = row_in * sum(ratios) + cbar_in
    height_in = 2 * row_in + 0.06 + text_in + title_in
    fig = Figure(figsize=(width_in, height_in), facecolor=_BACKGROUND)
    FigureCanvasAgg(fig)
    grid = gridspec.GridSpec(
        2, len(cuts) + 1, figure=fig, width_ratios=[*ratios, cbar_in / row_in],
        left=0, right=1, top=1 - title_in / height_in, bottom=text_in / height_in,
        wspace=0.015, hspace=0.06 / row_in)

    rows = [(residual, "input − output"), (smooth, "local mean")]
    for row, (volume, label) in enumerate(rows):
        values = np.abs(volume[mask])
        vmax = float(np.percentile(values, RESIDUAL_CLIP_PERCENTILE)) if values.size else 0.0
        if not np.isfinite(vmax) or vmax <= 0:
            vmax = float(np.abs(volume).max()) or 1.0
        vmax = _nice_ceiling(vmax)
        for col, (axis, index) in enumerate(cuts):
            data2d, mask2d, size = panel(volume, axis, index)
            ax = fig.add_subplot(grid[row, col])
            extent = (0, size[0], 0, size[1])
            ax.imshow(data2d, extent=extent, cmap=cmap, vmin=-vmax, vmax=vmax,
                      interpolation="nearest", origin="lower", aspect="equal")
            if mask2d.any() and not mask2d.all():
                ax.contour(mask2d.astype(np.float32), levels=[0.5], colors=["#8c8c8c"],
                           linewidths=0.6, extent=extent, origin="lower")
            ax.set_axis_off()
            if row == 0:
                corners = ("P", "A") if axis == 0 else ("L", "R")
                _label(ax, 0.02, 0.98, corners[0], "left", "top")
                _label(ax, 0.98, 0.98, corners[1], "right", "top")
            if row == 1:
                name = "xyz"[axis]
                if affine is not None:
                    ijk = [0.0, 0.0, 0.0]
                    ijk[axis] = float(index)
                    text = f"{name} = {_world(affine, ijk)[axis]:.0f} mm"
                else:
                    text = f"{name} = {index}"
                _label(ax, 0.03, 0.03, text, "left", "bottom")
        cax_holder = fig.add_subplot(grid[row, len(cuts)])
        cax_holder.set_axis_off()
        cax = cax_holder.inset_axes([0.3, 0.1, 0.16, 0.8])
        cbar = fig.colorbar(ScalarMappable(norm=Normalize(-vmax, vmax), cmap=cmap), cax=cax)
        ticks = [-vmax, -vmax / 2, 0.0, vmax / 2, vmax]
        cbar.set_ticks(ticks)
        cbar.set_ticklabels([_short(t) for t in ticks])
        cbar.ax.tick_params(colors=_FOREGROUND, labelsize=6.5, length=2)
        cbar.outline.set_edgecolor(_FOREGROUND)
        cbar.outline.set_linewidth(0.5)
        cax_holder.text(0.06, 0.5, label, rotation=90, transform=cax_holder.transAxes,
                        color=_FOREGROUND, fontsize=7, va="center", ha="center")

    numbers = (f"Inside the head: residual RMS {_short(rms)} {units}"
               + (f" ({100 * rms / robust:.2g} % of the input's robust maximum, "
                  f"P99.9 = {_short(robust)})" if robust > 0 else "")
               + f", mean {_short(mean)}; local mean (Gaussian, FWHM {fwhm_text}): RMS "
               f"{_short(smooth_rms)}.\n"
               "Top: speckle without anatomy = noise removed.  Bottom: the noise averages out; "
               "bands along edges or tissue-shaped patches = structure or intensity removed.")
    fig.text(0.005, 0.5 * text_in / height_in, numbers, color=_FOREGROUND, fontsize=7.5,
             va="center", ha="left", linespacing=1.5)
    if title:
        fig.suptitle(title, color=_FOREGROUND, fontsize=9, y=1 - 0.04 / height_in, va="top")

    out_file = Path(out_file)
    out_file.write_text(figure_to_svg(fig, dpi=dpi), encoding="utf-8")
    return out_file


def _label(ax, x: float, y: float, text: str, ha: str, va: str) -> None:
    """Small light label on a dark translucent box, readable over speckle."""
    ax.text(x, y, text, transform=ax.transAxes, color=_FOREGROUND, fontsize=6.5, ha=ha, va=va,
            bbox={"boxstyle": "square,pad=0.15", "facecolor": "black", "alpha": 0.6,
                  "linewidth": 0})


def figure_to_svg(fig, *, dpi: int = 110, quality: int = 80) -> str:
    """A matplotlib figure as a small SVG: one JPEG raster of the whole figure, embedded.

    Residual maps are mostly noise, which PNG cannot compress (a vector SVG from matplotlib
    embeds one PNG per panel: about 1 MB for a 1 mm head); a JPEG of the rendered figure is
    5-10 times smaller and looks the same at report size.
    """
    import base64

    from PIL import Image

    fig.set_dpi(dpi)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    height, width = rgba.shape[:2]
    buffer = io.BytesIO()
    Image.fromarray(rgba[..., :3]).save(buffer, format="JPEG", quality=quality, optimize=True)
    payload = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" '
        f'xmlns:xlink="http://www.w3.org/1999/xlink" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" preserveAspectRatio="xMidYMid meet">\n'
        f'<image width="{width}" height="{height}" '
        f'xlink:href="data:image/jpeg;base64,{payload}"/>\n'
        "</svg>\n"
    )


def _nice_ceiling(value: float) -> float:
    """Round ``value`` > 0 up to 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten, so the
    colour-bar ticks at ±value and ±value/2 are round numbers."""
    exponent = np.floor(np.log10(value))
    base = value / 10**exponent
    for step in (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
        if base <= step + 1e-9:
            return float(step * 10**exponent)
    return float(value)


def _short(value: float) -> str:
    """Compact number for figure labels: 3 significant digits, no exponent for 1e-3..1e5."""
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:.3g}"
    return f"{value:.2e}"
