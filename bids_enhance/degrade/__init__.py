"""Degradation simulation (noise now; low resolution and motion follow)."""

from bids_enhance.degrade.noise import add_gaussian_noise, add_rician_noise

__all__ = ["add_gaussian_noise", "add_rician_noise"]
