"""Neural networks of the thesis (core layer: maths only, no I/O besides checkpoint files).

Registry names: ``rrdb_generator``, ``resnet_critic``, ``resnet10_features``,
``wavelet_unet_critic``, ``diffusion_unet`` (see :mod:`bids_enhance.models.registry`).
"""

from __future__ import annotations

from bids_enhance.models.blocks import VoxelShuffle, VoxelUnshuffle, voxel_shuffle, voxel_unshuffle
from bids_enhance.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    sha256_file,
)
from bids_enhance.models.critics import ResNetCritic, WaveletUNetCritic
from bids_enhance.models.diffusion import (
    NoiseSchedule,
    cosine_betas,
    ddim_sample,
    ddim_timesteps,
    linear_betas,
    neighbour_slices,
)
from bids_enhance.models.diffusion_unet import DiffusionUNet
from bids_enhance.models.feature_extractor import ResNet10Features
from bids_enhance.models.generator import RRDBGenerator
from bids_enhance.models.registry import MODELS, available_models, build_model, model_class
from bids_enhance.models.wavelet import HAAR_BANDS, HaarDWT3d, HaarIDWT3d, haar_dwt3d, haar_idwt3d

__all__ = [
    "HAAR_BANDS",
    "MODELS",
    "CheckpointError",
    "DiffusionUNet",
    "HaarDWT3d",
    "HaarIDWT3d",
    "NoiseSchedule",
    "RRDBGenerator",
    "ResNet10Features",
    "ResNetCritic",
    "VoxelShuffle",
    "VoxelUnshuffle",
    "WaveletUNetCritic",
    "available_models",
    "build_model",
    "cosine_betas",
    "ddim_sample",
    "ddim_timesteps",
    "haar_dwt3d",
    "haar_idwt3d",
    "linear_betas",
    "load_checkpoint",
    "model_class",
    "neighbour_slices",
    "read_checkpoint",
    "save_checkpoint",
    "sha256_file",
    "voxel_shuffle",
    "voxel_unshuffle",
]
