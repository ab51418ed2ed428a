"""Tiny volumes and configurations shared by the training tests (2 CPU cores: keep them tiny)."""

from __future__ import annotations

import numpy as np

from bids_enhance.training import TrainConfig, TrainingVolume

TINY_GAN = {
    "generator": {"features": 4, "growth": 4, "num_blocks": 1},
    "critic": {"widths": (4, 8)},
    "feature_extractor": {"widths": (4, 8)},
}
TINY_UNET = {"features": 8, "channel_mults": (1, 2), "num_res_blocks": 1, "attention": False,
             "norm_groups": 4}


def head(shape=(24, 24, 24), *, seed: int = 0) -> np.ndarray:
    """A smooth head-like phantom in about [0, 1]: ellipsoid with a brighter core and a gentle
    texture, zero background."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    r = np.sqrt((grid ** 2).sum(0))
    phase = rng.uniform(0, 2 * np.pi, 3)
    texture = 0.1 * np.sin(3 * grid[0] + phase[0]) * np.cos(2 * grid[1] + phase[1]) \
        + 0.05 * np.sin(4 * grid[2] + phase[2])
    data = np.where(r < 0.85, 0.55 + texture, 0.0) + np.where(r < 0.5, 0.35, 0.0)
    return data.astype(np.float32)


def volumes(n: int = 2, shape=(24, 24, 24), *, first_seed: int = 0) -> list[TrainingVolume]:
    out = []
    for i in range(n):
        data = head(shape, seed=first_seed + i)
        out.append(TrainingVolume(subject=f"s{first_seed + i:02d}", data=data,
                                  mask=data > 0.05))
    return out


def tiny_config(task: str = "gan3p", **overrides) -> TrainConfig:
    base = {"task": task, "iterations": 4, "batch_size": 2, "patch_size": 16,
            "samples_per_volume": 4, "queue_length": 8, "log_every": 2, "checkpoint_every": 2,
            "validation_crop": 16, "device": "cpu"}  # CPU even where CUDA exists (bitwise tests)
    if task == "motion-ddpm":
        base.update(unet=dict(TINY_UNET), diffusion_steps=50, ddim_steps=4,
                    validation_slices=12)
    else:
        base.update({k: dict(v) for k, v in TINY_GAN.items()})
    base.update(overrides)
    return TrainConfig(**base)
