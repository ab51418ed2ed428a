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
from collections.abc import Iterator

import torch

from bids_enhance.seeding import check_seed, child_seed, numpy_generator

__all__ = ["IsolatedTorchRNG", "check_seed", "child_seed", "numpy_generator", "seeded_init"]


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
