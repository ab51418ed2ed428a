"""Typed settings of a training run (:class:`TrainConfig`), plain-data round trip, per-task defaults.

A config is plain data (``to_dict``/``from_dict`` round-trip through JSON and checkpoints). Fields
left at ``None`` take the task's default in :meth:`TrainConfig.resolved`, which every trainer
calls first; the resolved config is what checkpoints and results record.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bids_enhance.training.seeding import check_seed

__all__ = ["GAN_TASKS", "PRECISIONS", "TASKS", "TASK_DEFAULTS", "TrainConfig", "resume_mismatches"]

GAN_TASKS = ("gan3p", "disgan", "motion-gan", "denoise")
TASKS = (*GAN_TASKS, "motion-ddpm")
PRECISIONS = ("auto", "bf16", "fp32")
FE_MODES = ("joint", "frozen")
LR_SCHEDULES = ("constant", "cosine")
#: pixel losses of the GAN generators: ``l1`` (the thesis' and ESRGAN's) or ``mse`` (the
#: conditional mean, what PSNR rewards: where the network cannot tell, L1 keeps the median)
PIXEL_LOSSES = ("l1", "mse")

#: what each task means: degradation preset, generator scale, critic, learning rate
TASK_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "gan3p": {"degradation": "sr-box-x2", "scale": 2, "critic_arch": "resnet_critic",
              "lr": 1e-4, "weight_decay": 0.0},
    "disgan": {"degradation": "sr-box-x2-rician", "scale": 2,
               "critic_arch": "wavelet_unet_critic", "lr": 1e-4, "weight_decay": 0.0},
    "motion-gan": {"degradation": "motion", "scale": 1, "critic_arch": "resnet_critic",
                   "lr": 1e-4, "weight_decay": 0.0},
    "denoise": {"degradation": "denoise-rician-wide", "scale": 1,
                "critic_arch": "resnet_critic", "lr": 1e-4, "weight_decay": 0.0},
    "motion-ddpm": {"degradation": "motion", "scale": 1, "critic_arch": None,
                    "lr": 1e-4, "weight_decay": 1e-2},
}

#: fields that may change when a run is resumed (they do not change what is computed; a resumed
#: run keeps the checkpoint's ``instance_noise_iterations``, which by default follows
#: ``iterations``, so extending a run does not bend the annealing it has started)
RESUMABLE_FIELDS = frozenset({"iterations", "checkpoint_every", "validate_every", "log_every",
                              "device", "compile", "validation_crop", "validation_slices",
                              "instance_noise_iterations"})


def _did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _choice(name: str, value: Any, options) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}"
                         f"{_did_you_mean(value, options)}")
    return value


def _int(name: str, value: Any, *, minimum: int, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}"
                         f"{' or None' if optional else ''}, got {value!r}")
    return int(value)


def _float(name: str, value: Any, *, minimum: float = 0.0, maximum: float = math.inf,
           optional: bool = False, open_min: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if value < minimum or (open_min and value == minimum) or value > maximum:
        bound = f"> {minimum}" if open_min else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}{f' and <= {maximum}' if maximum < math.inf else ''}"
                         f", got {value}")
    return value


def _kwargs(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{name} must be a mapping of keyword arguments, got {value!r}")
    return dict(value)


@dataclass
class TrainConfig:
    """Everything that defines a training run (besides the data).

    Data and patches
        ``task``: ``gan3p`` (three-player GAN, x2 super-resolution), ``disgan`` (wavelet U-Net
        critic, noisy x2 inputs), ``motion-gan`` (scale-1 generator on motion-corrupted inputs),
        ``denoise`` (scale-1 generator on Rician-noisy inputs; the learned denoiser is its
        pixel-loss stage: ``warmup_iterations = iterations``),
        ``motion-ddpm`` (conditional diffusion on 2D/2.5D slices).
        ``patch_size``: edge of the *target* patch in voxels (x2 tasks: HR 64 ↔ LR 32; diffusion:
        the in-plane edge of a slice patch). ``batch_size`` is per process (DDP: the global batch
        is ``batch_size × world size``). ``degradation``: a preset of
        :data:`bids_enhance.degrade.PRESETS` (default per task). ``realisations``: degraded copies
        per volume (different noise/motion draws). ``samples_per_volume``, ``queue_length``: of the
        TorchIO queue. ``background_weight``: sampling weight of patch centres outside the head
        mask relative to 1 inside. ``augment``: each 3D patch pair is turned by a random
        symmetry of the cube (flips along the axes and, for cubic patches, a permutation of
        them: 48 symmetries), the same for source and target — more variety from few training
        heads; assumes (near-)isotropic voxels; not for the slice-wise ``motion-ddpm``.
        ``intensity_augment``: each x2 pair's contrast changed by a random gamma (log γ in ±0.3,
        TorchIO's ``RandomGamma`` range) with its source recomputed as the box average of the
        new target; x2 tasks on the pure box-average degradation (``sr-box-x2``) only.
        ``phase_augment``: x2 patches cut at any voxel, not only at even ones, each source
        recomputed as the box average of its target — all 8 phases of the 2×2×2 box grid;
        ``sr-box-x2`` only, as ``intensity_augment``.

    Optimisation
        ``lr`` (default 1e-4), ``betas``, ``weight_decay`` (Adam for the GANs, AdamW for
        diffusion; default 0 and 1e-2), ``grad_clip`` (max global L2 norm per optimiser; ``None``
        disables), ``lr_schedule`` (``constant`` or ``cosine`` decay to 0 over ``iterations``).

    GANs
        ``pixel_loss`` (``l1``, default, or ``mse``: the generator's pixel loss, in the warm-up
        and the adversarial stage; the ``l1`` column of the loss log stays the L1 either way),
        ``loss_preset`` (``thesis`` or ``released-code``, see
        :data:`bids_enhance.training.losses.LOSS_PRESETS`), ``warmup_iterations`` (pixel-loss only,
        no critic), ``instance_noise_start`` (σ at the first adversarial iteration) annealed
        linearly to 0 over ``instance_noise_iterations`` (default: all adversarial iterations),
        ``feature_extractor_training`` (``joint``: trained with the generator's optimiser on the
        generator loss, as the authors' code; ``frozen``: fixed random weights),
        ``perceptual_layers`` (indices of the ResNet-10 layers compared; default all),
        ``generator``/``critic``/``feature_extractor``: keyword arguments of the networks.

    Diffusion
        ``unet`` (keyword arguments of :class:`~bids_enhance.models.DiffusionUNet`),
        ``schedule`` (``linear``/``cosine``), ``diffusion_steps`` (T), ``prediction``
        (``eps``/``v``), ``ema_decay``, ``neighbours`` (slices on each side as extra condition
        channels; 0 = 2D), ``slice_axis`` (voxel axis across slices), ``ddim_steps`` (validation
        sampling).

    Loop
        ``checkpoint_every``, ``validate_every`` (``None``: only at the end), ``log_every`` (CSV
        flush and log line), ``precision`` (``auto``: bf16 autocast on CUDA, fp32 on CPU),
        ``channels_last`` (``None``: on CUDA, and on the CPU for the 3D GANs), ``compile``
        (``torch.compile`` the networks), ``fused`` (fused Adam; ``None``: on CUDA), ``device``
        (``auto``, ``cpu``, ``cuda``, ``cuda:1`` …; under ``torchrun`` each rank takes
        ``cuda:LOCAL_RANK``),
        ``validation_crop`` (edge of the central crop of held-out images the default evaluator
        uses; ``None``: whole images), ``validation_slices`` (slices per held-out image for the
        diffusion evaluator).
    """

    task: str = "gan3p"
    iterations: int = 10_000
    batch_size: int = 4
    patch_size: int = 64
    degradation: str | None = None
    realisations: int = 1
    samples_per_volume: int = 16
    queue_length: int = 128
    background_weight: float = 0.0
    augment: bool = False
    intensity_augment: bool = False
    phase_augment: bool = False
    seed: int = 0
    # optimisation
    lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float | None = None
    grad_clip: float | None = 1.0
    lr_schedule: str = "constant"
    # GANs
    loss_preset: str = "thesis"
    pixel_loss: str = "l1"
    warmup_iterations: int = 0
    instance_noise_start: float = 1.0
    instance_noise_iterations: int | None = None
    feature_extractor_training: str = "joint"
    perceptual_layers: tuple[int, ...] | None = None
    generator: dict[str, Any] = field(default_factory=dict)
    critic: dict[str, Any] = field(default_factory=dict)
    feature_extractor: dict[str, Any] = field(default_factory=dict)
    # diffusion
    unet: dict[str, Any] = field(default_factory=dict)
    schedule: str = "linear"
    diffusion_steps: int = 1000
    prediction: str = "eps"
    ema_decay: float = 0.999
    neighbours: int = 1
    slice_axis: int = 2
    ddim_steps: int = 50
    # loop
    checkpoint_every: int = 1000
    validate_every: int | None = None
    log_every: int = 50
    precision: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    fused: bool | None = None
    device: str = "auto"
    validation_crop: int | None = 96
    validation_slices: int = 16

    def __post_init__(self) -> None:
        from bids_enhance.training.losses import LOSS_PRESETS

        _choice("task", self.task, TASKS)
        self.iterations = _int("iterations", self.iterations, minimum=1)
        self.batch_size = _int("batch_size", self.batch_size, minimum=1)
        self.patch_size = _int("patch_size", self.patch_size, minimum=4)
        if self.degradation is not None:
            from bids_enhance.degrade import PRESETS

            _choice("degradation", self.degradation, sorted(PRESETS))
        self.realisations = _int("realisations", self.realisations, minimum=1)
        self.samples_per_volume = _int("samples_per_volume", self.samples_per_volume, minimum=1)
        self.queue_length = _int("queue_length", self.queue_length, minimum=1)
        if self.queue_length < self.samples_per_volume:
            raise ValueError(f"queue_length ({self.queue_length}) must be >= samples_per_volume "
                             f"({self.samples_per_volume})")
        self.background_weight = _float("background_weight", self.background_weight)
        if not isinstance(self.augment, bool):
            raise ValueError(f"augment must be true or false, got {self.augment!r}")
        if self.augment and self.task == "motion-ddpm":
            raise ValueError("augment works on 3D patches; motion-ddpm trains on 2D/2.5D slices")
        if not isinstance(self.intensity_augment, bool):
            raise ValueError(f"intensity_augment must be true or false, "
                             f"got {self.intensity_augment!r}")
        if self.intensity_augment and self.task not in ("gan3p", "disgan"):
            raise ValueError(f"intensity_augment works on x2 box-average pairs; task "
                             f"{self.task!r} is not an x2 task")
        if not isinstance(self.phase_augment, bool):
            raise ValueError(f"phase_augment must be true or false, got {self.phase_augment!r}")
        if self.phase_augment and self.task not in ("gan3p", "disgan"):
            raise ValueError(f"phase_augment works on x2 box-average pairs; task "
                             f"{self.task!r} is not an x2 task")
        self.seed = check_seed(self.seed)
        self.lr = _float("lr", self.lr, optional=True, open_min=True)
        try:
            b1, b2 = (float(b) for b in self.betas)
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair of numbers, got {self.betas!r}") from None
        self.betas = (_float("betas[0]", b1, maximum=1.0), _float("betas[1]", b2, maximum=1.0))
        self.weight_decay = _float("weight_decay", self.weight_decay, optional=True)
        self.grad_clip = _float("grad_clip", self.grad_clip, optional=True, open_min=True)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("loss_preset", self.loss_preset, sorted(LOSS_PRESETS))
        _choice("pixel_loss", self.pixel_loss, PIXEL_LOSSES)
        self.warmup_iterations = _int("warmup_iterations", self.warmup_iterations, minimum=0)
        self.instance_noise_start = _float("instance_noise_start", self.instance_noise_start)
        self.instance_noise_iterations = _int("instance_noise_iterations",
                                              self.instance_noise_iterations, minimum=1,
                                              optional=True)
        _choice("feature_extractor_training", self.feature_extractor_training, FE_MODES)
        if self.perceptual_layers is not None:
            layers = self.perceptual_layers
            if isinstance(layers, int) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                  for i in layers) or not layers:
                raise ValueError(f"perceptual_layers must be None or a non-empty sequence of "
                                 f"layer indices, got {layers!r}")
            self.perceptual_layers = tuple(int(i) for i in layers)
        self.generator = _kwargs("generator", self.generator)
        self.critic = _kwargs("critic", self.critic)
        self.feature_extractor = _kwargs("feature_extractor", self.feature_extractor)
        self.unet = _kwargs("unet", self.unet)
        _choice("schedule", self.schedule, ("linear", "cosine"))
        self.diffusion_steps = _int("diffusion_steps", self.diffusion_steps, minimum=2)
        _choice("prediction", self.prediction, ("eps", "v"))
        self.ema_decay = _float("ema_decay", self.ema_decay, maximum=1.0)
        self.neighbours = _int("neighbours", self.neighbours, minimum=0)
        if self.slice_axis not in (0, 1, 2) or isinstance(self.slice_axis, bool):
            raise ValueError(f"slice_axis must be 0, 1 or 2, got {self.slice_axis!r}")
        self.ddim_steps = _int("ddim_steps", self.ddim_steps, minimum=1)
        if self.ddim_steps > self.diffusion_steps:
            raise ValueError(f"ddim_steps ({self.ddim_steps}) must be <= diffusion_steps "
                             f"({self.diffusion_steps})")
        self.checkpoint_every = _int("checkpoint_every", self.checkpoint_every, minimum=1)
        self.validate_every = _int("validate_every", self.validate_every, minimum=1,
                                   optional=True)
        self.log_every = _int("log_every", self.log_every, minimum=1)
        _choice("precision", self.precision, PRECISIONS)
        for name in ("channels_last", "fused"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{name} must be True, False or None (automatic), got {value!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be True or False, got {self.compile!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a string such as 'auto', 'cpu' or 'cuda:0', got "
                             f"{self.device!r}")
        self.validation_crop = _int("validation_crop", self.validation_crop, minimum=4,
                                    optional=True)
        # 3D SSIM (Gaussian window, sigma 1.5) needs 11 voxels along every axis
        self.validation_slices = _int("validation_slices", self.validation_slices, minimum=11)
        self._check_patch_fits_networks()

    def _check_patch_fits_networks(self) -> None:
        """Refuse patch sizes the networks cannot take, before any data is loaded."""
        if not self.is_gan:
            return
        defaults = TASK_DEFAULTS[self.task]
        if defaults["scale"] == 2 and self.patch_size % 2:
            raise ValueError(f"patch_size must be even for x2 super-resolution (the input patch "
                             f"is half of it), got {self.patch_size}")
        from bids_enhance.models.registry import model_class

        critic_cls = model_class(defaults["critic_arch"])
        widths = self.critic.get("widths")
        if widths is None:
            import inspect

            widths = inspect.signature(critic_cls).parameters["widths"].default
        levels = len(widths)
        if defaults["critic_arch"] == "resnet_critic":
            need = 2 ** (levels + 1)
            if self.patch_size < need:
                raise ValueError(f"patch_size {self.patch_size} is too small for the critic "
                                 f"({levels} blocks need at least {need})")
        elif self.patch_size % 2 ** (levels - 1):
            raise ValueError(f"patch_size {self.patch_size} must be divisible by "
                             f"{2 ** (levels - 1)} for the wavelet U-Net critic ({levels} levels)")
        if self.validation_crop is not None and self.validation_crop < 11:
            raise ValueError(f"validation_crop must be >= 11 (the 3D SSIM window), got "
                             f"{self.validation_crop}")
        if self.task in ("gan3p", "disgan") and self.patch_size % 2:
            raise ValueError(f"patch_size must be even for x2 super-resolution (HR patch "
                             f"{self.patch_size} ↔ LR patch {self.patch_size}/2)")

    # ------------------------------------------------------------------------------------------
    @property
    def is_gan(self) -> bool:
        return self.task in GAN_TASKS

    @property
    def scale(self) -> int:
        """Generator scale of the task (2 for super-resolution, 1 otherwise)."""
        return int(TASK_DEFAULTS[self.task]["scale"])

    @property
    def critic_arch(self) -> str | None:
        return TASK_DEFAULTS[self.task]["critic_arch"]

    def resolved(self) -> TrainConfig:
        """A copy with every ``None`` default filled for the task (degradation, lr, weight decay,
        instance-noise length)."""
        defaults = TASK_DEFAULTS[self.task]
        updates: dict[str, Any] = {}
        if self.degradation is None:
            updates["degradation"] = defaults["degradation"]
        if self.lr is None:
            updates["lr"] = defaults["lr"]
        if self.weight_decay is None:
            updates["weight_decay"] = defaults["weight_decay"]
        if self.instance_noise_iterations is None and self.is_gan:
            updates["instance_noise_iterations"] = max(self.iterations - self.warmup_iterations, 1)
        return dataclasses.replace(self, **updates) if updates else dataclasses.replace(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists instead of tuples): JSON- and checkpoint-safe."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` (with a suggestion)."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in names]
        if unknown:
            raise ValueError(f"unknown training setting {unknown[0]!r}"
                             f"{_did_you_mean(unknown[0], names)}")
        kwargs = dict(data)
        for key in ("betas", "perceptual_layers"):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        for key in ("generator", "critic", "feature_extractor", "unet"):
            if isinstance(kwargs.get(key), Mapping):
                kwargs[key] = {k: tuple(v) if isinstance(v, list) else v
                               for k, v in kwargs[key].items()}
        return cls(**kwargs)


def resume_mismatches(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Names of settings that differ between a saved (resolved) config and the current one,
    ignoring :data:`RESUMABLE_FIELDS`. A setting the saved config lacks (a checkpoint written
    before the setting existed) counts as its default, which is what that run did."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                if f.default is not dataclasses.MISSING}
    out = []
    for key in sorted(set(saved) | set(current)):
        if key in RESUMABLE_FIELDS:
            continue
        a, b = saved.get(key, defaults.get(key)), current.get(key)
        if _normalise(a) != _normalise(b):
            out.append(f"{key}: checkpoint {a!r}, now {b!r}")
    return out


def _normalise(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_normalise(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _normalise(v) for k, v in value.items()}
    return value
