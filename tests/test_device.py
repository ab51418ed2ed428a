"""One device resolver for the classical filters, inference and training (issue 11)."""

from __future__ import annotations

import pytest
import torch

from bids_enhance.device import resolve_device


def test_every_layer_uses_the_same_resolver():
    from bids_enhance.classical import _common
    from bids_enhance.inference import sliding
    from bids_enhance.training import ddp

    assert _common.resolve_device is sliding.resolve_device is ddp.resolve_device \
        is resolve_device


@pytest.mark.parametrize("name", ["cpu", "CPU", " cpu ", torch.device("cpu")])
def test_cpu(name):
    assert resolve_device(name) == torch.device("cpu")


def test_auto_and_none_pick_what_is_usable():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected and resolve_device(None).type == expected


@pytest.mark.parametrize("name", ["gpu0", "cdua", "mps", "tpu:1"])
def test_malformed_names_are_value_errors_with_a_hint(name):
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda', 'cuda:N' or 'auto'"):
        resolve_device(name)


def test_a_typo_gets_a_suggestion():
    with pytest.raises(ValueError, match="did you mean 'cuda'"):
        resolve_device("cdua")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1", torch.device("cuda", 0)])
def test_cuda_without_a_gpu_is_a_runtime_error_never_a_cpu_fallback(name):
    with pytest.raises(RuntimeError, match="CUDA is not available.*--gpus all"):
        resolve_device(name, local_rank=1)


def test_the_core_never_imports_training():
    """Inference, models and the other core packages stand below training (issue 11)."""
    import re
    from pathlib import Path

    import bids_enhance

    root = Path(bids_enhance.__file__).parent
    core = ("bids", "classical", "degrade", "image", "inference", "metrics", "models", "reports")
    pattern = re.compile(r"^\s*(from|import)\s+bids_enhance\.training\b", re.MULTILINE)
    offenders = [str(p.relative_to(root)) for package in core
                 for p in (root / package).rglob("*.py") if pattern.search(p.read_text())]
    assert not offenders
