"""The project's one seed scheme: a master seed and named 63-bit child seeds.

Used by the participant run (``Settings.seed_for``: the seed of every image's simulated
degradation and diffusion sampling) and by training (:mod:`bids_enhance.training.seeding`, which
adds the torch RNG helpers). Child seeds are derived from a key (not from the order of calls),
so adding a consumer never shifts the others, and they are the same in every process and on
every DDP rank. Needs numpy only.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["check_seed", "child_seed", "numpy_generator"]


def check_seed(seed: object, *, name: str = "seed") -> int:
    """Return ``seed`` if it is an int in ``[0, 2**63)``; ``ValueError`` otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"{name} must be a non-negative integer, got {seed!r}")
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"{name} must be in [0, 2**63), got {seed}")
    return int(seed)


def child_seed(seed: int, *key: object) -> int:
    """A 63-bit child seed of ``seed`` for the purpose named by ``key`` (stable across runs,
    processes and Python versions; independent between keys)."""
    seed = check_seed(seed)
    digest = hashlib.sha256("\x1f".join(str(k) for k in key).encode()).digest()
    spawn_key = tuple(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4))
    state = np.random.SeedSequence(seed, spawn_key=spawn_key).generate_state(2, dtype=np.uint32)
    return (int(state[0]) | (int(state[1]) << 32)) & (2**63 - 1)


def numpy_generator(seed: int, *key: object) -> np.random.Generator:
    """``numpy.random.Generator`` seeded with :func:`child_seed` ``(seed, *key)``."""
    return np.random.default_rng(child_seed(seed, *key))
