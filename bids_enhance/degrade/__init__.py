"""Degradation simulation: x2 low resolution, Rician/Gaussian noise, rigid motion, ghosting.

Each degradation is a deterministic step (a frozen dataclass holding every parameter) with a random
twin that draws those parameters from a seeded ``numpy.random.Generator``; steps compose into a
:class:`Degradation` (or a named preset) and every applied step yields a JSON record that
:func:`replay` turns back into the identical output. TorchIO is imported only when a motion or
ghosting step runs. :func:`simulate` degrades a clean image from one seed and keeps the clean
reference on the grid outputs are compared on (simulation mode, held-out evaluation).
"""

from bids_enhance.degrade._base import STEP_KINDS, DegradationStep, Step, step_from_record
from bids_enhance.degrade.ghosting import Ghosting, RandomGhosting
from bids_enhance.degrade.lowres import (
    LowResMethod,
    LowResolution,
    downsample,
    lowres_affine,
    upsampled_affine,
    upsampled_shape,
)
from bids_enhance.degrade.motion import Motion, RandomMotion, add_motion
from bids_enhance.degrade.noise import (
    Noise,
    NoiseMethod,
    RandomNoise,
    add_gaussian_noise,
    add_rician_noise,
    sigma_from_fraction,
)
from bids_enhance.degrade.pipeline import (
    PRESETS,
    Degradation,
    degrade,
    input_channels,
    prefilter_of,
    replay,
)
from bids_enhance.degrade.prefilter import Prefilter
from bids_enhance.degrade.simulation import Simulation, crop_reference, simulate

__all__ = [
    "PRESETS",
    "STEP_KINDS",
    "Degradation",
    "DegradationStep",
    "Ghosting",
    "LowResMethod",
    "LowResolution",
    "Motion",
    "Noise",
    "NoiseMethod",
    "Prefilter",
    "RandomGhosting",
    "RandomMotion",
    "RandomNoise",
    "Simulation",
    "Step",
    "add_gaussian_noise",
    "add_motion",
    "add_rician_noise",
    "crop_reference",
    "degrade",
    "downsample",
    "input_channels",
    "lowres_affine",
    "prefilter_of",
    "replay",
    "sigma_from_fraction",
    "simulate",
    "step_from_record",
    "upsampled_affine",
    "upsampled_shape",
]
