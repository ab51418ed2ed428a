"""Devices, precision and determinism of inference (:func:`~bids_enhance.inference.sliding.infer_volume`).

``"auto"`` precision is bf16 autocast on CUDA (bf16-capable GPUs) and fp32 on CPU; cuDNN runs
deterministically and ``torch.use_deterministic_algorithms`` is on (warn-only) for the call.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

__all__ = ["PRECISIONS", "autocast_context", "deterministic", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"auto"`` → ``"bf16"`` on a bf16-capable CUDA device, ``"fp32"`` otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    return precision


def autocast_context(precision: str, device: torch.device | str
                     ) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``bf16``/``fp16``; a null context for ``fp32``."""
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])


@contextlib.contextmanager
def deterministic(device: torch.device | str) -> Iterator[None]:
    """Deterministic kernels for the duration of the block (cuDNN deterministic, no benchmark
    autotuning, ``torch.use_deterministic_algorithms(True, warn_only=True)``); the previous
    settings are restored afterwards."""
    device = torch.device(device)
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if device.type == "cuda":
        # cuBLAS is deterministic with a fixed workspace; torch checks this variable per call
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic = saved[2]
        torch.backends.cudnn.benchmark = saved[3]


