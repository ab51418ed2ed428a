"""The one vocabulary of enhancement steps and classical denoising methods.

Every layer imports its step and method names, choices, labels, phrases and default-weight
folders from here; this module imports nothing of the package and nothing heavy (no nipype, no
torch), so the CLI, the core, the interfaces, the workflows and the reports can all use it.
Adding a step or a classical method touches this registry and the code that computes it, nothing
else (``tests/test_steps.py`` keeps the names from spreading again).

:data:`STEPS` is ordered as a chain applies its steps (``motion`` first: a model of motion
artefacts sees the image as acquired; super-resolution last: it changes the grid).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "CHAIN_ORDER",
    "CLASSICAL",
    "AUTO_DENOISE",
    "AUTO_DENOISE_BY_SUFFIX",
    "DEFAULT_DENOISE_METHOD",
    "DEFAULT_ENHANCE",
    "DENOISE",
    "DENOISE_CHOICES",
    "DENOISE_METHODS",
    "GENERATIVE",
    "GENERATIVE_STEPS",
    "LEARNED_AGGREGATES",
    "LEARNED_METHODS",
    "MOTION",
    "PIPELINE_METHODS",
    "STEPS",
    "SUPERRES",
    "SUPERRES_DENOISE",
    "X2_STEPS",
    "DenoiseMethod",
    "resolve_denoise_method",
    "Step",
    "StepRecord",
]

#: :attr:`Step.kind` of a step run by a classical filter / by a trained network
CLASSICAL = "classical"
GENERATIVE = "generative"


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class DenoiseMethod:
    """One denoising method of :func:`bids_enhance.classical.denoise`.

    ``parameters``: its tunable keyword arguments and their defaults, in signature order (a test
    checks them against the function); ``sloppy``: the ones ``--sloppy`` overrides.
    ``methods_text``: the methods-boilerplate clause, formatted with the parameters in use;
    ``None`` for a method the pipeline does not offer (``offered=False``).
    ``learned``: a trained network rather than a classical filter: its function returns
    ``(out, model record)``, ``task`` is the ``train --model`` task whose checkpoints it runs and
    ``default_model`` the folder of its shipped weights under the models dir.
    """

    name: str
    abbreviation: str
    title: str  # report tables
    summary: str  # --denoise-method help
    cited: str  # short citation in help texts
    reference_keys: tuple[str, ...]  # keys of bids_enhance/data/boilerplate.bib, own paper first
    function: str  # "module:function", imported lazily
    parameters: Mapping[str, Any] = field(default_factory=dict)
    sloppy: Mapping[str, Any] = field(default_factory=dict)
    methods_text: str | None = None
    offered: bool = True  # a --denoise-method choice (and a node of the participant workflow)
    learned: bool = False
    task: str | None = None
    default_model: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "parameters", _frozen(self.parameters))
        object.__setattr__(self, "sloppy", _frozen(self.sloppy))


_METHODS = (
    DenoiseMethod(
        name="odct3d", abbreviation="ODCT3D",
        title="ODCT3D: oracle-based 3D discrete cosine transform filter (Manjón et al. 2012)",
        summary="oracle DCT filter alone", cited="Manjón 2012",
        reference_keys=("manjon2012",),
        function="bids_enhance.classical.odct:odct3d",
        parameters={"memory_budget_gb": 0.5},
        methods_text=(
            "was denoised with the oracle-based 3D discrete cosine transform filter (ODCT3D) "
            "[@manjon2012] alone, the fast first stage of PRI-NLM: overlapping 4×4×4 DCT "
            "blocks were hard-thresholded at 2.7σ, and a second pass kept the noisy "
            "coefficients where this first estimate (the oracle) exceeded σ"),
    ),
    DenoiseMethod(
        name="odct3d-wiener", abbreviation="ODCT3D-Wiener",
        title="ODCT3D-Wiener: ODCT3D with an empirical Wiener second pass (bids_enhance; "
              "Manjón et al. 2012, Dabov et al. 2007)",
        summary="oracle DCT filter with a Wiener second pass", cited="Manjón 2012, Dabov 2007",
        reference_keys=("manjon2012", "dabov2007"),
        function="bids_enhance.classical.odct:odct3d_wiener",
        parameters={"memory_budget_gb": 0.5},
        methods_text=(
            "was denoised with the oracle-based 3D discrete cosine transform filter with an "
            "empirical Wiener second pass (ODCT3D-Wiener) [@manjon2012; @dabov2007]: "
            "overlapping 4×4×4 DCT blocks were hard-thresholded at 2.7σ, and this first "
            "estimate guided a second pass that scaled every noisy coefficient by the Wiener "
            "gain o²/(o²+σ²) of the first estimate's coefficient o"),
    ),
    DenoiseMethod(
        name="blockmatch", abbreviation="BM-DCT",
        title="BM-DCT: block-matching collaborative filter, the two stages of BM4D with a "
              "Rician bias correction (bids_enhance; Maggioni et al. 2013, Dabov et al. 2007)",
        summary="block-matching collaborative filter (BM4D's two stages)",
        cited="Maggioni 2013, Dabov 2007",
        reference_keys=("maggioni2013", "dabov2007", "manjon2012"),
        function="bids_enhance.classical.blockmatch:blockmatch",
        parameters={"search_radius": 3, "group_size": 16, "memory_budget_gb": 0.25},
        sloppy={"search_radius": 1},
        methods_text=(
            "was denoised with a block-matching collaborative filter (BM-DCT), the two stages of "
            "BM4D [@maggioni2013; @dabov2007]: every 4×4×4 block on a grid of stride 3 was "
            "grouped with the most similar blocks within a search radius of {search_radius} "
            "voxels, each group was transformed by a 3D DCT within the blocks and a 1D DCT "
            "across them and hard-thresholded at 2.7σ, and this first estimate guided a second "
            "grouping of {group_size} blocks whose coefficients were scaled by their empirical "
            "Wiener gain; the Rician bias was corrected by inverting the Rician mean, as in "
            "ODCT3D [@manjon2012]"),
    ),
    DenoiseMethod(
        name="prinlm", abbreviation="PRI-NLM",
        title="PRI-NLM: prefiltered rotationally invariant non-local means (Manjón et al. 2012)",
        summary="ODCT-guided rotation-invariant NLM", cited="Manjón 2012",
        reference_keys=("manjon2012", "buades2005", "coupe2008"),
        function="bids_enhance.classical.prinlm:prinlm",
        parameters={"search_radius": 3, "guide": None, "h_factor": 1.0 / 3.0,
                    "memory_budget_gb": 0.5},
        sloppy={"search_radius": 1},
        methods_text=(
            "was denoised with the prefiltered rotationally invariant non-local means filter "
            "(PRI-NLM) [@manjon2012]: the image was first filtered with the oracle-based 3D "
            "discrete cosine transform filter (ODCT3D) [@manjon2012], and this prefiltered "
            "image guided a rotationally invariant non-local means filter [@buades2005; "
            "@coupe2008] (search radius {search_radius} voxels)"),
    ),
    DenoiseMethod(
        name="sanlm", abbreviation="SANLM",
        title="SANLM: spatially adaptive non-local means (Manjón et al. 2010)",
        summary="spatially adaptive NLM", cited="Manjón 2010",
        reference_keys=("manjon2010", "coupe2008"),
        function="bids_enhance.classical.sanlm:sanlm",
        parameters={"search_radius": 3, "patch_radius": 1},
        sloppy={"search_radius": 1},
        methods_text=(
            "was denoised with the spatially adaptive non-local means filter (SANLM) "
            "[@manjon2010; @coupe2008], which adapts the filtering strength to the local noise "
            "level (search radius {search_radius} voxels, patch radius {patch_radius} voxel)"),
    ),
    DenoiseMethod(
        name="learned", abbreviation="learned denoiser",
        title="Learned denoiser: scale-1 RRDB generator trained on simulated Rician noise "
              "(bids_enhance)",
        summary="a trained 3D network (shipped CPU-trained weights, or --checkpoint "
                "denoise=PATH)",
        cited="RRDB generator of Wang 2023",
        reference_keys=("wang2023threeplayer",),
        function="bids_enhance.inference.learned:learned_denoise",
        parameters={"checkpoint": None, "sha256": None, "aggregate": "prinlm",
                    "min_gain_db": 0.03},
        methods_text=(
            "was denoised with a learned denoiser: the residual-in-residual dense block "
            "generator of the three-player GAN [@wang2023threeplayer] at scale 1, trained with "
            "a pixel (L1) loss on images with simulated Rician noise of 1–12 % of the robust "
            "maximum; the network is not given the noise level"),
        learned=True, task="denoise", default_model="denoise_learned",
    ),
)
#: Every classical method of :func:`bids_enhance.classical.denoise`, by name.
DENOISE_METHODS: Mapping[str, DenoiseMethod] = _frozen({m.name: m for m in _METHODS})
#: ``--denoise-method`` choices (the default first).
PIPELINE_METHODS: tuple[str, ...] = tuple(m.name for m in _METHODS if m.offered)
DEFAULT_DENOISE_METHOD = PIPELINE_METHODS[0]
#: ``--denoise-method auto``, the pipeline's default: each image gets the method its contrast is
#: best served by (docs/benchmarks/denoise.md): PRI-NLM for proton-density-weighted images
#: (flat contrast: non-local averaging leads at high noise, the block-transform filters trail it
#: by up to 1.8 dB), :data:`DEFAULT_DENOISE_METHOD` (ODCT3D) for every other suffix.
AUTO_DENOISE = "auto"
AUTO_DENOISE_BY_SUFFIX: Mapping[str, str] = _frozen({"PDw": "prinlm", "PD": "prinlm"})
#: ``--denoise-method`` choices: ``auto`` (the default), then every offered method.
DENOISE_CHOICES: tuple[str, ...] = (AUTO_DENOISE, *PIPELINE_METHODS)


def resolve_denoise_method(method: str, suffix: str | None) -> str:
    """The method that denoises an image of BIDS ``suffix`` when ``method`` was asked for:
    ``method`` itself, or for ``auto`` the one :data:`AUTO_DENOISE_BY_SUFFIX` names (ODCT3D
    where it names none)."""
    if method != AUTO_DENOISE:
        return method
    return AUTO_DENOISE_BY_SUFFIX.get(suffix or "", DEFAULT_DENOISE_METHOD)


#: The learned denoising method(s): a trained network behind the ``denoise`` step.
LEARNED_METHODS: tuple[str, ...] = tuple(m.name for m in _METHODS if m.learned)
#: Classical methods the learned denoiser's output can be averaged with, SURE choosing the weight
#: (``learned_denoise(aggregate=...)``; the first is its default).
LEARNED_AGGREGATES: tuple[str, ...] = (DENOISE_METHODS["prinlm"].name,)
#: Prefilter stacks that hand a learned denoiser a further classical method's output as a
#: channel, and that method (``input+prinlm``: PRI-NLM, a non-local estimate beside the filter).
STACK_CHANNEL_METHODS: Mapping[str, str] = _frozen({"input+prinlm": DENOISE_METHODS["prinlm"].name})


@dataclass(frozen=True)
class Step:
    """One ``--enhance`` step.

    ``desc``: its fragment of the output's ``desc-`` label; ``description``: the
    ``descriptions.tsv`` sentence of that label alone; ``phrase``: its part of a chain's
    sentence; ``help``: its ``--enhance`` help; ``label`` / ``noun``: how the report names it in
    tables / running text; ``look_for``: what the before/after figure should show.
    ``methods_text``: training task → methods-boilerplate sentence of a generative step (the
    first task's when the checkpoint names none; a classical step's text is its method's).
    ``tasks``: the ``train --model`` tasks whose checkpoints it runs; ``task_references``: what
    a model of each task cites (keys of ``bids_enhance/data/boilerplate.bib``, the paper that
    introduced the network first); ``default_model``: the
    folder of its shipped weights under the models dir; ``presets``: the degradation presets
    that check it in simulation mode (x2 steps: those of the model's down-sampling geometry).
    """

    name: str
    kind: str  # CLASSICAL or GENERATIVE
    scale: int  # 1: same grid; 2: x2 grid
    desc: str
    description: str
    phrase: str
    help: str
    label: str
    noun: str
    look_for: str
    removes_noise: bool = False
    methods_text: Mapping[str, str] = field(default_factory=dict)
    tasks: tuple[str, ...] = ()
    task_references: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default_model: str | None = None
    presets: tuple[str, ...] = ()
    no_default_hint: str = ""  # added to the refusal when no default weights are shipped

    def __post_init__(self):
        if self.kind not in (CLASSICAL, GENERATIVE):
            raise ValueError(f"kind must be {CLASSICAL!r} or {GENERATIVE!r}, got {self.kind!r}")
        if self.scale not in (1, 2):
            raise ValueError(f"scale must be 1 or 2, got {self.scale!r}")
        object.__setattr__(self, "methods_text", _frozen(self.methods_text))
        object.__setattr__(self, "task_references", _frozen(self.task_references))

    @property
    def generative(self) -> bool:
        return self.kind == GENERATIVE

    @property
    def x2(self) -> bool:
        return self.scale == 2


_GAN3P_TEXT = (
    "The image was super-resolved by a factor of two along each axis with the generator of "
    "a three-player generative adversarial network [@wang2023threeplayer] (residual-in-"
    "residual dense blocks and a 3D voxel shuffle)")
_X2_DESCRIPTION = (" On a grid twice as fine covering the same field of view (res-x2; "
                   "Resolution in the sidecar), same intensity scale as the source.")

MOTION = Step(
    name="motion", kind=GENERATIVE, scale=1, desc="motioncorr",
    description="Motion artefacts reduced by a trained model (GAN or conditional diffusion; the "
                "sidecar names it and its sha256). Same grid and intensity scale as the "
                "source.",
    phrase="motion artefacts reduced by a trained model",
    help="motion-artefact correction, motion-gan or motion-ddpm model",
    label="motion correction", noun="motion correction",
    look_for="fewer motion artefacts (ghosts and ripples repeated across the head) with the "
             "anatomy left in place",
    methods_text={
        "motion-gan": (
            "Motion artefacts were reduced with the generator of a three-player generative "
            "adversarial network [@wang2023threeplayer] trained on pairs of clean images and "
            "images with simulated rigid motion"),
        "motion-ddpm": (
            "Motion artefacts were reduced with a conditional denoising diffusion model "
            "[@ho2020ddpm] trained on pairs of clean slices and slices with simulated rigid "
            "motion, sampled with DDIM [@song2021ddim]"),
    },
    tasks=("motion-gan", "motion-ddpm"), default_model="motion_gan",
    # the motion GAN is the three-player GAN with a scale-1 generator
    task_references={"motion-gan": ("wang2023threeplayer",),
                     "motion-ddpm": ("ho2020ddpm", "song2021ddim")},
    presets=("motion", "motion-ghosting"),
)
_ABBREVIATIONS = tuple(DENOISE_METHODS[m].abbreviation for m in PIPELINE_METHODS
                       if not DENOISE_METHODS[m].learned)
DENOISE = Step(
    name="denoise", kind=CLASSICAL, scale=1, desc="denoised",
    description="Denoised with a classical filter (" + " or ".join(_ABBREVIATIONS)
                + ") or the learned denoiser (--denoise-method; the sidecar names the method, "
                "its parameters and, for the learned one, its model). Same grid and intensity "
                "scale as the source.",
    phrase="denoised (" + ", ".join(_ABBREVIATIONS) + " or the learned denoiser)",
    help="classical " + "/".join(_ABBREVIATIONS) + ", or the learned denoiser",
    label="denoising", noun="denoising",
    look_for="removed noise and texture with preserved edges (cortical ribbon, ventricles, "
             "vessels)",
    removes_noise=True,
    tasks=tuple(DENOISE_METHODS[m].task for m in LEARNED_METHODS),
    task_references={DENOISE_METHODS[m].task: DENOISE_METHODS[m].reference_keys
                     for m in LEARNED_METHODS},
    default_model=DENOISE_METHODS[LEARNED_METHODS[0]].default_model,
    presets=("denoise-rician", "denoise-rician-wide", "noise-rician-3", "noise-rician-6", "noise-rician-9",
             "noise-gaussian-3"),
)
SUPERRES = Step(
    name="superres", kind=GENERATIVE, scale=2, desc="superres",
    description="x2 super-resolution by a three-player GAN (the sidecar names the model, its "
                "sha256 and the data-consistency error)." + _X2_DESCRIPTION,
    phrase="x2 super-resolved by a three-player GAN",
    help="x2 super-resolution, three-player GAN",
    label="x2 super-resolution (three-player GAN)", noun="x2 super-resolution",
    look_for="sharper edges and finer detail than in the interpolated input",
    methods_text={"gan3p": _GAN3P_TEXT},
    tasks=("gan3p",), default_model="gan3p_l1_x2",
    task_references={"gan3p": ("wang2023threeplayer",)},
)
SUPERRES_DENOISE = Step(
    name="superres-denoise", kind=GENERATIVE, scale=2, desc="superresDenoised",
    description="x2 super-resolution with noise removal by DISGAN (the sidecar names the model, "
                "its sha256 and the data-consistency error)." + _X2_DESCRIPTION,
    phrase="x2 super-resolved and denoised by DISGAN",
    help="x2 super-resolution with noise removal, DISGAN",
    label="x2 super-resolution with noise removal (DISGAN)",
    noun="x2 super-resolution with noise removal",
    look_for="sharper edges, finer detail and less noise than in the interpolated input",
    removes_noise=True,
    methods_text={"disgan": (
        "The image was super-resolved by a factor of two along each axis, and its noise "
        "removed, with the generator of DISGAN [@wang2023disgan], a generative adversarial "
        "network whose critic is a 3D U-Net informed by the Haar wavelet transform")},
    tasks=("disgan",), default_model="disgan_x2",
    task_references={"disgan": ("wang2023disgan",)},
    no_default_hint=("; or use `--enhance denoise superres` ("
                     + DENOISE_METHODS[DEFAULT_DENOISE_METHOD].abbreviation
                     + ", then the shipped x2 model)"),
)

#: Every ``--enhance`` step, by name, in the order a chain applies them.
STEPS: Mapping[str, Step] = _frozen(
    {s.name: s for s in (MOTION, DENOISE, SUPERRES, SUPERRES_DENOISE)})
#: The order a chain applies its steps in, whatever order they were asked for.
CHAIN_ORDER: tuple[str, ...] = tuple(STEPS)
#: Steps that run a trained network.
GENERATIVE_STEPS: tuple[str, ...] = tuple(s.name for s in STEPS.values() if s.generative)
#: Steps whose output lies on the x2 grid (always last in a chain).
X2_STEPS: tuple[str, ...] = tuple(s.name for s in STEPS.values() if s.x2)
#: ``--enhance`` default.
DEFAULT_ENHANCE: tuple[str, ...] = (DENOISE.name,)


@dataclass(frozen=True)
class StepRecord:
    """What one step of a chain did: the ``out_info`` JSON of its node, typed.

    ``kind``: :data:`CLASSICAL` (the denoise step's record, also of the learned method: method,
    σ, parameters, and ``model`` for the learned one) or :data:`GENERATIVE` (a trained network's
    inference record: ``sha256``, ``model`` task, patching, consistency). ``info`` is the record
    itself. Records written before ``kind`` existed are told apart by their content.
    """

    step: str
    kind: str
    info: Mapping[str, Any]

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> StepRecord:
        kind = info.get("kind")
        if kind is None:  # an older record: only a trained network's names its checkpoint
            kind = GENERATIVE if "sha256" in info else CLASSICAL
        if kind not in (CLASSICAL, GENERATIVE):
            raise ValueError(f"step record kind must be {CLASSICAL!r} or {GENERATIVE!r}, got "
                             f"{kind!r}")
        return cls(step=str(info.get("step") or DENOISE.name), kind=kind, info=info)

    @property
    def generative(self) -> bool:
        return self.kind == GENERATIVE

