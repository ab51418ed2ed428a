from __future__ import annotations

import pytest
import torch

from bids_enhance.models import RRDBGenerator

TINY = dict(features=4, growth=4, num_blocks=1)


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"scale": 3}, "scale"),
    ({"scale": 4}, "scale"),
    ({"scale": True}, "scale"),
    ({"features": 0}, "features"),
    ({"growth": 2.5}, "growth"),
    ({"num_blocks": 0}, "num_blocks"),
    ({"negative_slope": -0.1}, "negative_slope"),
    ({"residual_scale": float("nan")}, "residual_scale"),
    ({"image_skip": 1}, "image_skip"),
    ({"image_skip": True, "out_channels": 2}, "image_skip"),
])
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        RRDBGenerator(**{**TINY, **kwargs})


def test_scale_one_has_no_upsampler_and_keeps_size():
    model = RRDBGenerator(**TINY, scale=1)
    assert isinstance(model.upsample, torch.nn.Identity)
    assert model(torch.randn(1, 1, 5, 6, 7)).shape == (1, 1, 5, 6, 7)


def test_odd_sizes_and_channels():
    model = RRDBGenerator(**TINY, in_channels=2, out_channels=3)
    assert model(torch.randn(1, 2, 3, 5, 4)).shape == (1, 3, 6, 10, 8)


def test_channels_last_gives_same_output():
    torch.manual_seed(0)
    model = RRDBGenerator(**TINY).eval()
    x = torch.randn(1, 1, 6, 6, 6)
    ref = model(x)
    model_cl = model.to(memory_format=torch.channels_last_3d)
    y = model_cl(x.contiguous(memory_format=torch.channels_last_3d))
    assert torch.allclose(y, ref, atol=1e-5)


def test_bf16_autocast():
    torch.manual_seed(0)
    model = RRDBGenerator(**TINY).eval()
    x = torch.rand(1, 1, 6, 6, 6)
    ref = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert y.dtype == torch.bfloat16
    assert torch.isfinite(y).all()
    assert (y.float() - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3


def test_rejects_2d_input():
    with pytest.raises(ValueError, match="D, H, W"):
        RRDBGenerator(**TINY)(torch.zeros(1, 1, 4, 4))


def test_image_skip_adds_the_box_geometry_trilinear_upsampling():
    """With the network's own output zeroed, an ``image_skip`` generator returns the trilinear x2
    upsampling of its input, and on a box-averaged linear ramp that is the ramp itself (HR voxel
    j sits at LR coordinate j/2 − 0.25) away from the border."""
    torch.manual_seed(0)
    model = RRDBGenerator(image_skip=True, **TINY).eval()
    with torch.no_grad():
        model.conv_last.weight.zero_()
        model.conv_last.bias.zero_()
    hr = torch.arange(16, dtype=torch.float32).view(1, 1, 16, 1, 1).expand(1, 1, 16, 4, 6)
    lr = torch.nn.functional.avg_pool3d(hr, 2)
    with torch.no_grad():
        out = model(lr)
    assert out.shape == hr.shape
    torch.testing.assert_close(out[:, :, 1:-1], hr[:, :, 1:-1], rtol=0, atol=1e-5)
    plain = RRDBGenerator(**TINY)
    assert not plain.image_skip and RRDBGenerator(scale=1, image_skip=True, **TINY)(lr).shape \
        == lr.shape


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"hr_features": 0}, "hr_features"),
    ({"space_to_depth": 1, "scale": 1}, "space_to_depth"),
    ({"space_to_depth": True, "scale": 2}, "space_to_depth"),
])
def test_compact_arguments_are_checked(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        RRDBGenerator(**{**TINY, **kwargs})


def test_narrow_hr_head_has_fewer_parameters_and_same_shapes():
    wide = RRDBGenerator(features=16, growth=8, num_blocks=1)
    narrow = RRDBGenerator(features=16, growth=8, num_blocks=1, hr_features=4)
    assert narrow.conv_hr.in_channels == 4 and narrow.upsample[0].out_channels == 32
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in wide.parameters())
    assert narrow(torch.randn(1, 1, 5, 6, 7)).shape == (1, 1, 10, 12, 14)
    # the default keeps the thesis layout (and old checkpoints' state dicts) unchanged
    assert set(wide.state_dict()) == set(RRDBGenerator(features=16, growth=8,
                                                       num_blocks=1).state_dict())


@pytest.mark.parametrize("shape", [(8, 6, 10), (5, 7, 9)])
def test_space_to_depth_keeps_size_and_runs_the_body_on_the_half_grid(shape):
    model = RRDBGenerator(**TINY, scale=1, space_to_depth=True, hr_features=2, image_skip=True)
    seen = []
    model.conv_first.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[2:])))
    x = torch.randn(1, 1, *shape)
    y = model(x)
    assert y.shape == x.shape
    assert seen == [tuple((n + 1) // 2 for n in shape)]
    assert model.conv_first.in_channels == 8


def test_space_to_depth_with_zero_head_returns_the_input():
    """image_skip at scale 1 adds the input: a network whose last conv is zero is the identity
    (odd sizes included, where the input is padded and cropped again)."""
    model = RRDBGenerator(**TINY, scale=1, space_to_depth=True, image_skip=True)
    torch.nn.init.zeros_(model.conv_last.weight)
    torch.nn.init.zeros_(model.conv_last.bias)
    x = torch.randn(1, 1, 5, 6, 7)
    assert torch.equal(model(x), x)
