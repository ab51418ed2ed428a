"""Figure captions of the subject report, built from the enhancement steps that ran.

A denoise-only report must not talk about super-resolution, and a super-resolution report must
not explain removed noise: each image's captions are composed from its :class:`Chain` (the
steps of its sidecar's ``EnhancementSteps``, simulation preset and noise model). The IQM
reportlet carries the chain as ``data-*`` attributes (:meth:`Chain.html_attributes`), so the
report assembler finds it next to the figures it captions (:meth:`Chain.from_html`).

Step names, labels and phrases come from :mod:`bids_enhance.steps`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bids_enhance.steps import CHAIN_ORDER, DENOISE, MOTION, STEPS

__all__ = ["CAPTIONS", "STEP_LABELS", "STEP_NOUNS", "Chain", "caption", "residual_legend",
           "superres_annotations"]

#: Step → how the report names it (summary, method tables).
STEP_LABELS = {name: step.label for name, step in STEPS.items()}
#: Step → noun phrase used in running text ("the image after denoising and x2 ...").
STEP_NOUNS = {name: step.noun for name, step in STEPS.items()}


@dataclass(frozen=True)
class Chain:
    """The steps applied to one image, in order, and what the captions need to know besides.

    ``simulated``: the degradation preset in simulation mode (the "input" of the views is then
    the simulated image), else ``None``. ``noise_model``: the denoising step's (``rician`` or
    ``gaussian``), ``None`` without one or when unknown.
    """

    steps: tuple[str, ...]
    simulated: str | None = None
    noise_model: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "steps", tuple(s for s in CHAIN_ORDER if s in self.steps))

    @property
    def x2(self) -> bool:
        return any(STEPS[s].x2 for s in self.steps)

    @property
    def removes_noise(self) -> bool:
        return any(STEPS[s].removes_noise for s in self.steps)

    @classmethod
    def from_sidecar(cls, sidecar: Mapping) -> Chain:
        """The chain of an image sidecar (``BuildSidecar``'s ``EnhancementSteps``)."""
        steps = [s for s in sidecar.get("EnhancementSteps") or [] if isinstance(s, Mapping)]
        simulation = sidecar.get("Simulation") or {}
        noise = next((s.get("NoiseModel") for s in steps
                      if s.get("Step") == DENOISE.name and s.get("NoiseModel")), None)
        return cls(steps=tuple(str(s.get("Step")) for s in steps),
                   simulated=str(simulation.get("Preset") or "simulation") if simulation
                   else None,
                   noise_model=str(noise) if noise else None)

    def html_attributes(self) -> str:
        """``data-steps="…"`` (and ``data-simulated``, ``data-noise-model``), escaped, with a
        leading space, for the element that holds an image's reportlet."""
        attrs = {"steps": " ".join(self.steps), "simulated": self.simulated,
                 "noise-model": self.noise_model}
        return "".join(f' data-{k}="{html.escape(v, quote=True)}"' for k, v in attrs.items()
                       if v is not None)

    @classmethod
    def from_html(cls, text: str) -> Chain | None:
        """The chain written by :meth:`html_attributes` into ``text`` (first element that has
        ``data-steps``); ``None`` when there is none."""
        tag = re.search(r"<[a-zA-Z][^>]*\sdata-steps=\"[^\"]*\"[^>]*>", text)
        if tag is None:
            return None
        attrs = {k: html.unescape(v) for k, v in
                 re.findall(r"\sdata-([a-z-]+)=\"([^\"]*)\"", tag.group(0))}
        return cls(steps=tuple(attrs.get("steps", "").split()),
                   simulated=attrs.get("simulated"), noise_model=attrs.get("noise-model"))

    # -- phrases ------------------------------------------------------------------------------
    def after_text(self) -> str:
        """"the image after denoising and x2 super-resolution"."""
        return "the image after " + _join(STEP_NOUNS[s] for s in self.steps) if self.steps \
            else "the enhanced image"

    def before_text(self) -> str:
        """What the "before" of the views is: the input or the simulated input, interpolated
        onto the x2 grid when the chain ends in super-resolution."""
        text = (f"the simulated input (the source degraded with the <code>"
                f"{html.escape(self.simulated)}</code> preset)" if self.simulated
                else "the input image")
        if self.x2:
            text += ", interpolated with a cubic B-spline onto the x2 output grid,"
        return text


def _join(items: Iterable[str]) -> str:
    items = list(items)
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------------------------
# Captions: each returns (subtitle, description); the description is HTML.
# --------------------------------------------------------------------------------------------
def flicker_caption(chain: Chain) -> tuple[str, str]:
    look = [STEPS[s].look_for for s in chain.steps]
    text = (f"{_sentence(chain.before_text())} and {chain.after_text()} alternate on the same "
            "slices and the same intensity scale. <strong>The figure switches between the two "
            "by itself</strong>; the label in its top-left corner names the image shown, and "
            "holding the mouse over the figure pauses it. Look for "
            + (_join(look) + ", and for " if look else "") + "new artefacts.")
    return "Before and after", text


def residual_caption(chain: Chain) -> tuple[str, str]:
    if chain.x2:
        subtitle = "What changed beyond interpolation (interpolated input − output)"
    else:
        subtitle = "What was removed (input − output)"
    parts = [f"Signed difference between {chain.before_text()} and {chain.after_text()}, in "
             "the input's intensity units (top row)."]
    if chain.removes_noise:
        parts.append("Removed noise looks like fine speckle of both colours without anatomy; "
                     "removed structure shows as bands of one colour that follow edges.")
    if MOTION.name in chain.steps:
        parts.append("Removed motion artefacts look like ghosts or ripples repeated across the "
                     "head; anatomy that was moved or blurred shows as bands of one colour "
                     "along edges.")
    if chain.x2:
        parts.append("The super-resolution model adds detail the cubic interpolation cannot "
                     "make: expected along edges (sharper than the interpolation); texture in "
                     "flat tissue, or edges the input does not show, is the model's invention.")
    bias = (" (with a Rician noise model a small positive mean is the removed noise bias)"
            if DENOISE.name in chain.steps and chain.noise_model == "rician" else "")
    parts.append("The bottom row is the local mean of the difference inside the head (outside "
                 "it is not shown): noise averages out there while coherent changes of "
                 "structure or intensity remain. A mean far from zero inside the head means the "
                 f"intensity scale changed{bias}.")
    return subtitle, " ".join(parts)


def residual_legend(chain: Chain) -> list[str]:
    """Plain-text lines printed in the residual figure itself: how to read its two rows for
    the steps of ``chain``."""
    top = []
    if chain.removes_noise:
        top.append("speckle without anatomy = noise removed")
    if MOTION.name in chain.steps:
        top.append("ghosts or ripples repeated across the head = motion artefacts removed")
    if chain.x2:
        top.append("fine detail along edges = sharpening beyond the cubic interpolation, "
                   "texture in flat tissue = invented by the model")
    lines = ["Top: " + "; ".join(top) + "."] if top else []
    lines.append("Bottom (inside the head): the noise averages out; bands along edges or "
                 "tissue-shaped patches = structure or intensity "
                 + ("changed." if chain.x2 else "removed."))
    return lines


def superres_caption(chain: Chain) -> tuple[str, str]:
    earlier = [s for s in chain.steps if not STEPS[s].x2]
    source = ("the simulated low-resolution input" if chain.simulated
              else "the input image")
    if earlier:
        source = (f"the input of the super-resolution step ({source} after "
                  f"{_join(STEP_NOUNS[s] for s in earlier)})")
    text = (f"A detail of one axial slice, zoomed: {source} with its own voxels, the same "
            "interpolated with a cubic B-spline, the super-resolved output, and what the model added beyond interpolation (output − "
            "cubic); below, the power spectra of the three. Detail that is real lies on edges "
            "that the input already hints at; structure the input cannot support (texture in "
            "flat tissue, edges that are not in the cubic image) is the network's invention. "
            "The data-consistency error says how far the output, degraded again as the "
            f"network's training inputs were, is from {source}.")
    return "Super-resolution in detail", text


#: ``captions:`` key of the report specification → caption builder.
CAPTIONS = {"flicker": flicker_caption, "residual": residual_caption,
            "superres": superres_caption}


def superres_annotations(sidecar: Mapping) -> dict:
    """What the super-resolution figure (:func:`bids_enhance.reports.figures.plot_superres`)
    annotates, from the image's sidecar: the data-consistency error of the step that changed
    the grid (``consistency``), the error after projection when it was projected
    (``projected``), and the model's name with its sha256 (``model_name``)."""
    step = next((s for s in sidecar.get("EnhancementSteps") or []
                 if s.get("VoxelSizeOut") and s.get("VoxelSizeOut") != s.get("VoxelSizeIn")),
                {})
    model = step.get("Model") or {}
    name = model.get("Name") or model.get("Task")
    return {"consistency": step.get("ConsistencyError"),
            "projected": step.get("ConsistencyErrorAfterProjection")
            if step.get("ConsistencyProjected") else None,
            "model_name": f"{name} (sha256 {str(model.get('Sha256'))[:12]}…)" if name else None}


def caption(kind: str, chain: Chain) -> tuple[str, str]:
    """(subtitle, description HTML) of reportlet ``kind`` (a :data:`CAPTIONS` key)."""
    if kind not in CAPTIONS:
        raise ValueError(f"unknown caption {kind!r}; known: {sorted(CAPTIONS)}")
    return CAPTIONS[kind](chain)
