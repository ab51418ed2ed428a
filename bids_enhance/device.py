"""The one way a device name becomes a ``torch.device`` (classical filters, inference, training).

``"auto"`` (or ``None``) picks CUDA when it is usable, else the CPU; ``"cuda"`` means this
process's GPU (``cuda:LOCAL_RANK`` under ``torchrun``, else ``cuda:0``). A malformed name is a
``ValueError`` with a suggestion; a CUDA device that was asked for and is not usable is a
``RuntimeError`` with a hint — never a silent fallback to the CPU.
"""

from __future__ import annotations

import difflib

import torch

__all__ = ["GPU_HINT", "resolve_device"]

GPU_HINT = ("check `nvidia-smi`, run Docker with `--gpus all` or Apptainer/Singularity with "
            "`--nv`, or pass device='cpu'")
_NAMES = ("cpu", "cuda", "auto")


def resolve_device(device: str | torch.device | None = "auto", *,
                   local_rank: int = 0) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``/``None`` or a ``torch.device`` → a usable
    ``torch.device`` (see the module docstring for the rules and errors)."""
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = "auto" if device is None else str(device).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        close = difflib.get_close_matches(name, _NAMES, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got {device!r}{hint}")
    if dev.type == "cpu":
        return dev
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was requested but CUDA is not available "
                           f"(torch {torch.__version__}): {GPU_HINT}")
    count = torch.cuda.device_count()
    index = 0 if dev.index is None else dev.index
    if index >= count:
        raise RuntimeError(f"device {device!r} was requested but only {count} CUDA device(s) "
                           f"are visible: {GPU_HINT}")
    return torch.device("cuda", index)
