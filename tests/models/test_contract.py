"""Contract suite over every registered model (table-driven): shapes for each configuration,
finite outputs, determinism under a seed, checkpoint round-trip, wrong architecture refused."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from bids_enhance.models import CheckpointError, available_models, build_model, load_checkpoint
from bids_enhance.models import save_checkpoint as save


@dataclass(frozen=True)
class Case:
    name: str
    kwargs: dict
    inputs: Callable[[torch.Generator], tuple]
    out_shapes: list[tuple[int, ...]]
    id: str


def _randn(*shape):
    return lambda g: (torch.randn(*shape, generator=g),)


def _diffusion_inputs(g):
    return (torch.randn(2, 1, 8, 8, generator=g), torch.tensor([0, 999]),
            torch.randn(2, 3, 8, 8, generator=g))


DIFF = dict(features=8, channel_mults=(1, 2), num_res_blocks=1, norm_groups=4,
            condition_channels=3, attention_heads=2)
CASES = [
    Case("rrdb_generator", dict(features=4, growth=4, num_blocks=1, scale=2),
         _randn(1, 1, 6, 6, 6), [(1, 1, 12, 12, 12)], "generator-x2"),
    Case("rrdb_generator", dict(features=4, growth=4, num_blocks=1, scale=1),
         _randn(1, 1, 6, 6, 6), [(1, 1, 6, 6, 6)], "generator-x1"),
    Case("resnet_critic", dict(widths=(4, 8)), _randn(2, 1, 8, 8, 8), [(2, 1, 2, 2, 2)],
         "resnet-critic"),
    Case("resnet10_features", dict(widths=(4, 4, 8, 8)), _randn(2, 1, 16, 16, 16),
         [(2, 4, 4, 4, 4), (2, 4, 2, 2, 2), (2, 8, 1, 1, 1), (2, 8, 1, 1, 1)], "resnet10"),
    Case("wavelet_unet_critic", dict(widths=(4, 8, 8)), _randn(1, 1, 8, 8, 8),
         [(1, 1, 8, 8, 8)], "wavelet-critic"),
    Case("diffusion_unet", DIFF, _diffusion_inputs, [(2, 1, 8, 8)], "diffusion-concat"),
    Case("diffusion_unet", {**DIFF, "conditioning": "separate"}, _diffusion_inputs,
         [(2, 1, 8, 8)], "diffusion-separate"),
]
IDS = [c.id for c in CASES]


def _outputs(model, case, seed=0):
    with torch.no_grad():
        out = model(*case.inputs(torch.Generator().manual_seed(seed)))
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _build(case, seed=0):
    torch.manual_seed(seed)
    return build_model(case.name, **case.kwargs)


def test_every_registered_model_is_covered():
    assert {c.name for c in CASES} == set(available_models())


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_shapes_and_finite(case):
    model = _build(case)
    for mode in ("train", "eval"):
        model.train(mode == "train")
        outs = _outputs(model, case)
        assert [tuple(o.shape) for o in outs] == case.out_shapes, mode
        assert all(torch.isfinite(o).all() for o in outs), mode


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_deterministic_under_a_seed(case):
    a, b = _build(case, seed=5), _build(case, seed=5)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    for x, y in zip(_outputs(a.eval(), case), _outputs(b.eval(), case), strict=True):
        assert torch.equal(x, y)
    c = _build(case, seed=6)
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_checkpoint_round_trip_gives_identical_outputs(case, tmp_path):
    model = _build(case).eval()
    path = tmp_path / f"{case.id}.pt"
    digest = save(path, model=model, arch_name=case.name, arch_kwargs=case.kwargs, seed=0)
    loaded, meta = load_checkpoint(path, expected_arch=case.name, expected_sha256=digest)
    assert type(loaded) is type(model) and meta["arch_kwargs"] == case.kwargs
    for x, y in zip(_outputs(model, case), _outputs(loaded, case), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_wrong_architecture_refused(case, tmp_path):
    model = _build(case)
    path = tmp_path / "m.pt"
    save(path, model=model, arch_name=case.name, arch_kwargs=case.kwargs)
    other = next(n for n in available_models() if n != case.name)
    with pytest.raises(CheckpointError, match=f"holds {case.name}\\(.*\\), expected {other}"):
        load_checkpoint(path, expected_arch=other)
    with pytest.raises(CheckpointError, match="does not match"):
        bigger = {**case.kwargs}
        key = "features" if "features" in bigger else "widths"
        bigger[key] = bigger[key] * 2 if key == "features" else tuple(2 * w for w in bigger[key])
        save(path, model=model, arch_name=case.name, arch_kwargs=bigger)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bf16_autocast_gives_finite_close_outputs(case):
    model = _build(case).eval()
    ref = _outputs(model, case)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _outputs(model, case)
    for o, r in zip(out, ref, strict=True):
        assert torch.isfinite(o).all()
        assert (o.float() - r).abs().max() <= 0.05 * r.abs().max() + 1e-3
