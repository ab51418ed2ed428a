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
import re
import textwrap
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
#: Characters per line of the text under the residual mosaic (7.5 pt, about 0.056 inch a
#: character, on the 11 inches of the narrowest figure).
_TEXT_WIDTH = 185
#: How to read the residual mosaic of a denoising step (the default legend).
RESIDUAL_LEGEND = ("Top: speckle without anatomy = noise removed.  Bottom: the noise averages "
                   "out; bands along edges or tissue-shaped patches = structure or intensity "
                   "removed.",)


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


def masked_local_mean(volume: np.ndarray, mask: np.ndarray, *,
                      sigma_vox: Sequence[float]) -> np.ndarray:
    """Gaussian local mean of ``volume`` inside ``mask`` (both ``(X, Y, Z)``), NaN outside.

    A normalised convolution: ``G * (volume · mask) / G * mask`` with standard deviations
    ``sigma_vox`` (voxels), so values outside the mask neither leak into its edge nor count.
    Returns float32.
    """
    from scipy import ndimage as ndi

    mask = np.asarray(mask, dtype=bool)
    volume = np.asarray(volume, dtype=np.float32)
    if volume.shape != mask.shape:
        raise ValueError(f"mask must have the volume's shape {volume.shape}, got {mask.shape}")
    weight = ndi.gaussian_filter(mask.astype(np.float32), sigma_vox, mode="constant")
    total = ndi.gaussian_filter(np.where(mask, volume, 0.0).astype(np.float32), sigma_vox,
                                mode="constant")
    return np.where(mask, total / np.maximum(weight, 1e-6), np.nan).astype(np.float32)


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
                         title: str | None = None, legend: Sequence[str] | None = None,
                         dpi: int = 110) -> Path:
    """Write an SVG mosaic of ``before - after`` over the head's bounding box.

    Two rows of the same slices (``n_axial`` axial, one sagittal, one coronal):

    1. the residual itself: removed noise should be a structureless speckle;
    2. its local mean inside the head (Gaussian, ``smooth_mm`` FWHM but at least 2.5 voxels
       along each axis, normalised by the smoothed mask so the background does not leak into
       the head's edge): noise averages out there while anything coherent survives, so removed
       anatomy (edges, the cortical ribbon, vessels) and intensity shifts stand out even when
       they are much weaker than the noise. Outside the head it is not drawn (black): what a
       filter removes from the air (the whole Rician noise floor) would sit far off the colour
       scale; its mean is printed below the figure instead.

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
    legend
        Lines printed under the numbers, saying how to read the rows for the steps that ran
        (:func:`bids_enhance.reports.captions.residual_legend`); default
        :data:`RESIDUAL_LEGEND` (denoising).

    Returns the path written.
    """
    from matplotlib import gridspec
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

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
    # FWHM smooth_mm, but at least 2.5 voxels along each axis (thick slices); a normalised
    # convolution inside the head, NaN (drawn black) outside it.
    fwhm_vox = [max(float(smooth_mm) / z, 2.5) for z in zooms]
    fwhm_mm = [f * z for f, z in zip(fwhm_vox, zooms, strict=True)]
    smooth = masked_local_mean(residual, mask, sigma_vox=[f / 2.3548 for f in fwhm_vox])
    outside = ~mask
    outside_mean = float(np.mean(residual[outside])) if outside.any() else None
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
    cmap = _diverging_cmap().with_extremes(bad=_BACKGROUND)

    def panel(volume, axis: int, index: int):
        sl = list(box)
        sl[axis] = index
        keep = [a for a in range(3) if a != axis]
        size = tuple((box[a].stop - box[a].start) * zooms[a] for a in keep)
        return volume[tuple(sl)].T, mask[tuple(sl)].T, size

    sizes = [panel(residual, a, i)[2] for a, i in cuts]
    ratios = [w / h for w, h in sizes]

    # Text under the mosaic: the numbers, then the legend, each wrapped to the figure's width.
    numbers = (f"Inside the head: residual RMS {_short(rms)} {units}"
               + (f" ({100 * rms / robust:.2g} % of the input's robust maximum, "
                  f"P99.9 = {_short(robust)})" if robust > 0 else "")
               + f", mean {_short(mean)}; local mean (Gaussian, FWHM {fwhm_text}): RMS "
               f"{_short(smooth_rms)}"
               + (f".  Outside the head (black in the bottom row): mean {_short(outside_mean)}"
                  if outside_mean is not None else "") + ".")
    lines = [wrapped for paragraph in [numbers, *(RESIDUAL_LEGEND if legend is None else legend)]
             for wrapped in textwrap.wrap(paragraph, _TEXT_WIDTH, subsequent_indent="  ")]
    numbers = "\n".join(lines)

    # Layout (inches): two rows of equal height; panel widths follow the physical aspect ratio;
    # a colour-bar column on the right of each row; the text at the bottom.
    width_in, cbar_in = 11.0, 0.95
    text_in = 0.2 + 0.125 * len(lines)
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
            vmax = float(np.nanmax(np.abs(volume), initial=0.0)) or 1.0
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


# --------------------------------------------------------------------------------------------
# before/after (flicker)
# --------------------------------------------------------------------------------------------
#: Seconds per switch between the two images; each is held still for most of it.
FLICKER_SECONDS = 1.5
_FLICKER_STYLE = re.compile(
    r'<style type="text/css">\s*@keyframes (flickerAnimation[\w-]*).*?</style>', re.DOTALL)


def animate_flicker(svg: str) -> str:
    """The before/after SVG of nireports' ``SimpleBeforeAfterRPT``, animated by itself.

    nireports draws the "after" image (``.background-svg``) under the "before" image
    (``.foreground-svg``), whose opacity a keyframe animation toggles, paused until the mouse is
    over it: a reader who does not know that sees only the input. Here the animation runs from
    the start, each image is held still for most of the period (fade in the middle), the mouse
    over the figure pauses it, and readers who asked their system for reduced motion get the
    hover-to-play behaviour back. Returns ``svg`` unchanged when it has no such animation.
    """
    match = _FLICKER_STYLE.search(svg)
    if match is None:
        return svg
    name = match.group(1)
    style = (
        '<style type="text/css">\n'
        f"@keyframes {name} {{ 0%, 40% {{ opacity: 1; }} 60%, 100% {{ opacity: 0; }} }}\n"
        f".foreground-svg {{ animation: {FLICKER_SECONDS}s ease-in-out 0s infinite alternate "
        f"both running {name}; }}\n"
        "svg:hover .foreground-svg { animation-play-state: paused; }\n"
        "@media (prefers-reduced-motion: reduce) {\n"
        "  .foreground-svg { animation-play-state: paused; }\n"
        "  svg:hover .foreground-svg { animation-play-state: running; }\n"
        "}\n</style>")
    return svg[:match.start()] + style + svg[match.end():]


# --------------------------------------------------------------------------------------------
# super-resolution
# --------------------------------------------------------------------------------------------
def nearest_on_grid(lowres: np.ndarray, lowres_affine: np.ndarray, shape: Sequence[int],
                    affine: np.ndarray) -> np.ndarray:
    """``lowres`` shown on a finer grid (``shape``, ``affine``) by nearest neighbour, through
    world coordinates (``nibabel.processing.resample_from_to``, order 0, edges extended): every
    voxel takes the value of the input voxel it lies in, so the input's own voxels appear as
    blocks — what the scanner delivered, without interpolation."""
    import nibabel as nib
    from nibabel.processing import resample_from_to

    lowres = np.asarray(lowres)
    source = nib.Nifti1Image(lowres, np.asarray(lowres_affine, float))
    out = resample_from_to(source, (tuple(int(n) for n in shape[:3]), np.asarray(affine, float)),
                           order=0, mode="nearest")
    return np.asarray(out.dataobj, dtype=lowres.dtype)


def _detail_box(image2d: np.ndarray, mask2d: np.ndarray, size: int) -> tuple[slice, slice]:
    """A ``size``² window inside the head where the image has the most edges."""
    from scipy import ndimage as ndi

    size = min(size, *image2d.shape)
    energy = ndi.gaussian_gradient_magnitude(image2d.astype(np.float64), 1.0) * mask2d
    window = ndi.uniform_filter(energy, size, mode="constant")
    half = size // 2
    valid = np.zeros_like(window, dtype=bool)
    valid[half:image2d.shape[0] - (size - half) + 1, half:image2d.shape[1] - (size - half) + 1] = True
    window = np.where(valid, window, -np.inf)
    i, j = np.unravel_index(int(np.argmax(window)), window.shape)
    return slice(i - half, i - half + size), slice(j - half, j - half + size)


def psd_shells(volume: np.ndarray, zooms: Sequence[float], *, n_bins: int = 48
               ) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectral density (power × voxel volume, so grids of different
    voxel sizes are comparable) over shells in cycles/mm."""
    from bids_enhance.metrics.spectrum import radial_power_spectrum

    freqs, power = radial_power_spectrum(volume, spacing=tuple(zooms), n_bins=n_bins)
    return freqs, power * float(np.prod(zooms))


def plot_superres(lowres: np.ndarray, lowres_affine: np.ndarray, upsampled: np.ndarray,
                  after: np.ndarray, affine: np.ndarray, out_file: Path | str, *,
                  consistency: dict | None = None, projected: dict | None = None,
                  model_name: str | None = None, units: str = "image units",
                  detail_mm: float = 40.0, dpi: int = 110) -> Path:
    """Write an SVG that shows what x2 super-resolution did to one image.

    Top row, on one axial slice through the head: the output slice with the detail window
    outlined, then the window zoomed — the input's own voxels (nearest neighbour), the input
    interpolated with a cubic B-spline onto the output grid, the super-resolved output, and
    output − cubic (what the model added beyond interpolation). Bottom: radially averaged power
    spectral densities of the input, the cubic interpolation and the output (power per cycle/mm
    per voxel volume, so the grids are comparable), with the input's Nyquist frequency marked;
    and the data-consistency error.

    Arrays are ``(X, Y, Z)`` in RAS+ order (``nibabel.as_closest_canonical``); ``upsampled`` and
    ``after`` share the output grid ``affine``; ``lowres`` has ``lowres_affine``.
    ``consistency``: :func:`bids_enhance.inference.consistency_error` of the network's output;
    ``projected``: the same after ``--consistency project`` (None when not projected).
    """
    from matplotlib import gridspec
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from bids_enhance.image.mask import head_mask

    lowres = np.nan_to_num(np.asarray(lowres, dtype=np.float32))
    upsampled = np.nan_to_num(np.asarray(upsampled, dtype=np.float32))
    after = np.nan_to_num(np.asarray(after, dtype=np.float32))
    if after.ndim != 3 or upsampled.shape != after.shape:
        raise ValueError(f"upsampled and after must be 3D volumes of one shape, got "
                         f"{upsampled.shape} and {after.shape}")
    zooms = tuple(float(z) for z in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))
    lr_zooms = tuple(float(z) for z in np.linalg.norm(np.asarray(lowres_affine)[:3, :3], axis=0))
    nearest = nearest_on_grid(lowres, lowres_affine, after.shape, affine)

    mask = head_mask(upsampled)
    if not mask.any():
        mask = np.ones(after.shape, dtype=bool)
    box = bounding_box(mask)
    k = (box[2].start + box[2].stop - 1) // 2
    size = max(8, int(round(detail_mm / min(zooms[:2]))))
    win = _detail_box(upsampled[:, :, k], mask[:, :, k], size)
    vmax = float(np.percentile(upsampled[mask], 99.5)) or 1.0
    diff = after - upsampled
    dmax = _nice_ceiling(float(np.percentile(np.abs(diff[mask]), 99.5)) or 1.0)

    width_in = 11.0
    fig = Figure(figsize=(width_in, 5.4), facecolor=_BACKGROUND)
    FigureCanvasAgg(fig)
    grid = gridspec.GridSpec(1, 5, figure=fig, left=0.01, right=0.99, top=0.95, bottom=0.53,
                             wspace=0.04)
    gray = "gray"
    extent_full = (0, after.shape[0] * zooms[0], 0, after.shape[1] * zooms[1])
    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(after[:, :, k].T, cmap=gray, vmin=0, vmax=vmax, origin="lower",
              extent=extent_full, interpolation="nearest")
    ax.add_patch(Rectangle((win[0].start * zooms[0], win[1].start * zooms[1]),
                           (win[0].stop - win[0].start) * zooms[0],
                           (win[1].stop - win[1].start) * zooms[1], fill=False,
                           edgecolor="#ffcc33", linewidth=1.0))
    ax.set_axis_off()
    z_mm = _world(affine, [0.0, 0.0, float(k)])[2]
    _label(ax, 0.03, 0.03, f"z = {z_mm:.0f} mm", "left", "bottom")
    ax.set_title("output, axial", color=_FOREGROUND, fontsize=8)
    panels = [(nearest, f"input voxels ({' × '.join(f'{z:.2g}' for z in lr_zooms)} mm)", gray,
               (0, vmax)),
              (upsampled, "cubic B-spline", gray, (0, vmax)),
              (after, f"super-resolved ({' × '.join(f'{z:.2g}' for z in zooms)} mm)", gray,
               (0, vmax)),
              (diff, f"output − cubic (±{_short(dmax)})", _diverging_cmap(), (-dmax, dmax))]
    for col, (volume, title, cmap, (lo, hi)) in enumerate(panels, start=1):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(volume[win[0], win[1], k].T, cmap=cmap, vmin=lo, vmax=hi, origin="lower",
                  interpolation="nearest", aspect=zooms[1] / zooms[0])
        ax.set_axis_off()
        ax.set_title(title, color=_FOREGROUND, fontsize=8)

    ax = fig.add_axes((0.075, 0.09, 0.5, 0.36))
    ax.set_facecolor("#111111")
    spectra = [(lowres, lr_zooms, "input", "#9aa5b1", "-"),
               (upsampled, zooms, "cubic B-spline", "#4fa3e0", "--"),
               (after, zooms, "super-resolved", "#ffcc33", "-")]
    peak = 0.0
    for volume, spacing, label, colour, style in spectra:
        freqs, power = psd_shells(volume, spacing)
        keep = np.isfinite(power) & (power > 0) & (freqs > 0)
        ax.semilogy(freqs[keep], power[keep], style, color=colour, linewidth=1.3, label=label)
        peak = max(peak, float(power[keep].max()) if keep.any() else 0.0)
    if peak > 0:  # nine decades: enough for any image, no axis lost to numerical zeros
        ax.set_ylim(bottom=max(ax.get_ylim()[0], peak * 1e-9))
    nyquist = 0.5 / max(lr_zooms)
    ax.axvline(nyquist, color="#bbbbbb", linestyle=":", linewidth=0.9)
    ax.text(nyquist, 0.97, " input's Nyquist", transform=ax.get_xaxis_transform(),
            color=_FOREGROUND, fontsize=7, va="top", ha="left")
    ax.set_xlabel("spatial frequency (cycles/mm)", color=_FOREGROUND, fontsize=8)
    ax.set_ylabel(f"power spectral density ({units}² · mm³)", color=_FOREGROUND, fontsize=8)
    ax.tick_params(colors=_FOREGROUND, labelsize=7)
    for spine in ax.spines.values():
        spine.set_color("#666666")
    ax.legend(fontsize=7, facecolor="#222222", edgecolor="#444444", labelcolor=_FOREGROUND)

    lines = []
    if model_name:
        lines.append(f"Model: {model_name}")
    lines.append(f"Output: {after.shape[0]}×{after.shape[1]}×{after.shape[2]} voxels of "
                 f"{_mm_text(zooms)}")
    lines.append(f"Input:  {lowres.shape[0]}×{lowres.shape[1]}×{lowres.shape[2]} voxels of "
                 f"{_mm_text(lr_zooms)}")
    if consistency:
        lines.append("")
        lines.append("Data consistency (output degraded again as in")
        lines.append(f"training, '{consistency.get('method')}', vs the step's input)"
                     + (", before projection:" if projected else ":"))
        lines.append(f"  RMS error {_short(float(consistency['rmse']))} {units} "
                     f"({float(consistency['rmse_percent']):.2g} % of the input's")
        lines.append(f"  robust maximum), max {float(consistency['max_percent']):.2g} %")
        if projected:
            lines.append("Projected onto the input: RMS error now "
                         f"{float(projected['rmse_percent']):.1g} %")
        else:
            lines.append("Not projected onto the input (--consistency project)")
    else:
        lines.append("")
        lines.append("Data consistency: not measured (--consistency off)")
    lines += ["", "Above the input's Nyquist frequency the input has", "no information: power "
              "there comes from the", "interpolation (cubic) or from the model."]
    fig.text(0.62, 0.45, "\n".join(lines), color=_FOREGROUND, fontsize=7.5, va="top",
             ha="left", linespacing=1.45, family="monospace")
    out_file = Path(out_file)
    out_file.write_text(figure_to_svg(fig, dpi=dpi), encoding="utf-8")
    return out_file


def _mm_text(zooms: Sequence[float]) -> str:
    return " × ".join(f"{z:.3g}" for z in zooms) + " mm"
