"""Randomness of a training run: one master seed, named child seeds, isolated torch RNG streams.

Every random draw of a run comes from the master seed ``seed``:

===============================  ===============================================================
key                              used for
===============================  ===============================================================
``("init",)``                    network initialisation (``torch.manual_seed`` inside
                                 ``torch.random.fork_rng``, so the global RNG is left as found)
``("degrade", subject, k)``      the ``numpy.random.Generator`` of realisation ``k`` of a
                                 volume's degradation (:func:`bids_enhance.degrade.degrade`)
``("patches", round)``           the torch RNG state of one pass ("round") of the TorchIO patch
                                 queue; TorchIO's samplers and the queue's shuffling draw from
                                 torch's *global* RNG, which :class:`IsolatedTorchRNG` swaps in
                                 and out around every call into TorchIO
``("step-noise",)``              the ``torch.Generator`` of the training step (instance noise of
                                 the GANs; timesteps and noise of the diffusion model)
``("validation",)``              validation-time randomness (degradation of held-out images,
                                 DDIM start noise)
===============================  ===============================================================

Child seeds are derived from the key (not from the order of calls), so adding a consumer never
shifts the others, and every DDP rank derives the same seeds.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["IsolatedTorchRNG", "check_seed", "child_seed", "numpy_generator", "seeded_init"]


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


@contextlib.contextmanager
def seeded_init(seed: int, *key: object) -> Iterator[None]:
    """Run a block (e.g. building networks) with torch's global CPU RNG seeded from
    ``child_seed(seed, *key)``; the global RNG state is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(child_seed(seed, *key))
        yield


class IsolatedTorchRNG:
    """A private state of torch's global CPU RNG.

    Code that insists on the global RNG (TorchIO's samplers, ``torch.utils.data`` shuffling)
    runs inside :meth:`active`: the private state is swapped in, and afterwards the advanced
    private state is kept and the caller's global state restored. Interleaving such code with
    the training step therefore neither perturbs nor is perturbed by anything else.
    """

    def __init__(self, seed: int) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(check_seed(seed))
            self._state = torch.get_rng_state()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        outer = torch.get_rng_state()
        torch.set_rng_state(self._state)
        try:
            yield
        finally:
            self._state = torch.get_rng_state()
            torch.set_rng_state(outer)
