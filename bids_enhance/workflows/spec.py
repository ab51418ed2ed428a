"""The run-wide settings of the enhancement chain (:class:`ChainSpec`) and the chain vocabulary.

One :class:`ChainSpec` is made per run (by the command line, :meth:`ChainSpec.from_settings`,
or by hand from Python) and handed down the participant workflow builders of
:mod:`bids_enhance.workflows.base` unchanged: the settings every image shares (the chain, its
methods and models, the device, the seed, simulation mode, the run's identity). What differs per
image (its path, its seed, its ``desc-preproc`` name) stays an argument of the per-image builder.

This module imports neither nipype nor torch: the spec is validated before any graph is built,
and nipype nodes never receive it (only the plain values it holds go into interfaces).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from bids_enhance import steps as registry

__all__ = [
    "DESC_LABELS",
    "X2_RES_LABEL",
    "ChainSpec",
    "inference_budget_gb",
    "is_x2",
    "order_chain",
    "output_desc",
    "run_metadata",
]

#: ``desc-`` label fragment of each step (base labels listed in ``bids/dataset.py``).
DESC_LABELS = {name: step.desc for name, step in registry.STEPS.items()}
#: ``res-`` label of images on the x2 grid (its meaning goes into the sidecar's ``Resolution``)
X2_RES_LABEL = "x2"


def order_chain(steps: Iterable[str]) -> list[str]:
    """``steps`` in :data:`~bids_enhance.steps.CHAIN_ORDER`, without repeats."""
    steps = set(steps)
    unknown = sorted(steps - set(registry.CHAIN_ORDER))
    if unknown:
        raise ValueError(f"unknown enhancement step(s) {unknown}; "
                         f"known: {list(registry.CHAIN_ORDER)}")
    return [s for s in registry.CHAIN_ORDER if s in steps]


def is_x2(steps: Iterable[str]) -> bool:
    """Whether a chain ends on the x2 grid (it has an x2 super-resolution step)."""
    return any(s in registry.X2_STEPS for s in steps)


def output_desc(steps: Iterable[str], *, simulated: bool = False) -> str:
    """``desc-`` label of the final image of a chain: ``denoised``, ``denoisedSuperres``,
    ``motioncorrSuperresDenoised``; in simulation mode ``simDenoised``."""
    first, *rest = order_chain(steps)
    label = DESC_LABELS[first] + "".join(DESC_LABELS[s][0].upper() + DESC_LABELS[s][1:]
                                         for s in rest)
    return "sim" + label[0].upper() + label[1:] if simulated else label


def run_metadata(*, command_line: str | None = None, run_id: str | None = None) -> dict:
    """``{"CommandLine", "RunId"}`` of an image sidecar (what is given): the invocation that
    wrote the image, and the run whose settings are in ``sub-<label>/log/<RunId>/``."""
    out = {}
    if command_line:
        out["CommandLine"] = str(command_line)
    if run_id:
        out["RunId"] = str(run_id)
    return out


def inference_budget_gb(settings) -> float | None:
    """Memory budget of one generative inference node: ``--gpu-mem`` on a GPU; on the CPU
    ``--mem`` shared by the processes that may run at once (None: a share of what is free)."""
    if settings.device != "cpu":
        return settings.gpu_mem_gb
    if settings.mem_gb is None:
        return None
    parallel = max(1, (settings.nprocs or 1) // max(1, settings.omp_nthreads or 1))
    return settings.mem_gb / parallel


@dataclass(frozen=True, kw_only=True)
class ChainSpec:
    """The settings of the enhancement chain that every image of a run shares.

    Validated and normalised on construction: ``enhance`` becomes a tuple in chain order
    (unknown steps and an empty chain are refused), every generative step needs its model in
    ``models`` (the learned denoising method without one runs the shipped weights), and
    simulation mode excludes ``fmriprep_compat``.

    ``models``: the verified checkpoint of every generative step (and of the learned denoiser
    when one was given; :meth:`bids_enhance.inference.weights.ResolvedModel.to_dict`), held as a
    read-only mapping of copies: the builders never change it. ``consistency``: what x2 steps
    do about data consistency. ``mem_budget_gb``: the memory budget of generative inference (GPU
    memory on CUDA; None: a share of the free memory). ``command_line`` (the invocation, as a
    shell would read it) and ``run_id`` (the run's UUID, the name of its
    ``sub-<label>/log/<run_id>`` folder) go into every image sidecar as ``CommandLine`` and
    ``RunId``; None leaves them out. ``simulate``: a degradation preset (see
    :func:`bids_enhance.workflows.base.init_enhance_image_wf`).

    Frozen, comparable, hashable (``models`` is left out of the hash) and picklable.
    """

    enhance: tuple[str, ...]
    random_seed: int
    denoise_method: str = registry.AUTO_DENOISE
    noise_model: str = "rician"
    device: str = "cpu"
    omp_nthreads: int = 1
    sloppy: bool = False
    simulate: str | None = None
    fmriprep_compat: bool = False
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)
    consistency: str = "measure"
    mem_budget_gb: float | None = None
    command_line: str | None = None
    run_id: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.enhance, str):
            raise TypeError("enhance must be a sequence of step names, not a string")
        chain = tuple(order_chain(self.enhance))
        if not chain:
            raise ValueError("the chain needs at least one enhancement step; known: "
                             f"{list(registry.CHAIN_ORDER)}")
        if self.denoise_method not in registry.DENOISE_CHOICES:
            raise ValueError(f"denoise_method must be one of {list(registry.DENOISE_CHOICES)}, "
                             f"got {self.denoise_method!r}")
        models = MappingProxyType({str(step): copy.deepcopy(dict(model))
                                   for step, model in (self.models or {}).items()})
        # (the learned denoiser without a model runs the shipped weights, resolved in the node)
        missing = [s for s in chain if registry.STEPS[s].generative and s not in models]
        if missing:
            raise ValueError(f"no model given for the generative step(s) {missing}")
        simulate = self.simulate or None
        if simulate is not None and self.fmriprep_compat:
            raise ValueError("simulate and fmriprep_compat exclude each other: a simulated "
                             "result is no desc-preproc input for fMRIPrep")
        object.__setattr__(self, "enhance", chain)
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "simulate", simulate)
        object.__setattr__(self, "omp_nthreads", int(self.omp_nthreads))
        object.__setattr__(self, "random_seed", int(self.random_seed))

    def __reduce__(self):
        # a mappingproxy does not pickle (nor deepcopy): rebuild from plain values
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["models"] = dict(self.models)
        return _rebuild, (values,)

    @classmethod
    def from_settings(cls, settings) -> ChainSpec:
        """The spec of a participant run from the command line's
        :class:`~bids_enhance.config.Settings`: its chain options, the inference memory budget
        (:func:`inference_budget_gb`), its command line and run UUID."""
        import shlex

        return cls(
            enhance=tuple(settings.enhance), random_seed=settings.random_seed,
            denoise_method=settings.denoise_method, noise_model=settings.noise_model,
            device=settings.device, omp_nthreads=settings.omp_nthreads, sloppy=settings.sloppy,
            simulate=settings.simulate, fmriprep_compat=settings.fmriprep_compat,
            models=settings.models, consistency=settings.consistency,
            mem_budget_gb=inference_budget_gb(settings),
            command_line=shlex.join(["bids_enhance", *settings.argv]),
            run_id=settings.run_uuid)

    # -- derived -------------------------------------------------------------------------------
    @property
    def simulated(self) -> bool:
        """Simulation mode: each image is degraded first, and the result compared with it."""
        return self.simulate is not None

    @property
    def is_x2(self) -> bool:
        """The chain ends in x2 super-resolution."""
        return is_x2(self.enhance)

    @property
    def x2_model(self) -> Mapping[str, Any] | None:
        """The model of the chain's x2 step (None without one)."""
        return next((self.models[s] for s in self.enhance if s in registry.X2_STEPS), None)

    @property
    def lowres_method(self) -> str:
        """The down-sampling geometry the x2 model inverts (``box`` without one)."""
        return (self.x2_model or {}).get("lowres_method") or "box"

    @property
    def desc(self) -> str:
        """``desc-`` label of the enhanced image (:func:`output_desc`)."""
        return output_desc(self.enhance, simulated=self.simulated)

    @property
    def res(self) -> str | None:
        """``res-`` label of the enhanced image: x2 on the finer grid, None on the source's
        (simulation mode brings x2 results back onto the source's grid)."""
        return X2_RES_LABEL if self.is_x2 and not self.simulated else None

    @property
    def grid_factor(self) -> int:
        """Voxels of the enhanced image per source voxel (memory estimates of the nodes that
        read it)."""
        return 8 if self.is_x2 else 1

    @property
    def reference_baselines(self) -> list[str]:
        """Simulation mode: what the result is compared with besides the degraded input."""
        return ["trilinear", "cubic", "kspace"] if self.is_x2 else ["identity"]

    @property
    def run_metadata(self) -> dict[str, str]:
        """``CommandLine`` and ``RunId`` of the image sidecars (:func:`run_metadata`)."""
        return run_metadata(command_line=self.command_line, run_id=self.run_id)

    @property
    def model_lines(self) -> list[str]:
        """One line per model, for the subject summary."""
        return [f"{step}: {(m.get('summary') or {}).get('name')} ({m.get('origin')} weights, "
                f"sha256 {m['sha256'][:12]}…)" for step, m in self.models.items()]

    def for_suffix(self, suffix: str | None) -> ChainSpec:
        """The spec an image of BIDS ``suffix`` is enhanced with: ``denoise_method`` ``auto``
        resolved to the method its contrast gets (:func:`bids_enhance.steps.resolve_denoise_method`);
        the spec itself when there is nothing to resolve."""
        method = registry.resolve_denoise_method(self.denoise_method, suffix)
        return self if method == self.denoise_method else replace(self, denoise_method=method)

    def description(self, suffix: str) -> str:
        """The ``Description`` of the sidecar of an enhanced ``suffix`` image."""
        if self.is_x2 and not self.simulated:
            geometry = ("x2 super-resolved onto a grid twice as fine that covers the source's "
                        "field of view (world coordinates preserved); same orientation and "
                        "intensity scale as the source")
        elif self.is_x2:
            geometry = ("x2 super-resolved back onto the source's grid; same orientation and "
                        "intensity scale as the source")
        else:
            geometry = "same grid, orientation and intensity scale as the source"
        return (f"{suffix} image enhanced by bids_enhance ({', '.join(self.enhance)}); "
                f"{geometry}."
                + (f" Simulation mode: the source was first degraded ({self.simulate})."
                   if self.simulated else ""))


def _rebuild(values: dict[str, Any]) -> ChainSpec:
    return ChainSpec(**values)
