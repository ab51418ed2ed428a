from __future__ import annotations

import pytest
import torch

from bids_enhance.models import ResNet10Features, ResNetCritic, WaveletUNetCritic


def test_resnet_critic_patch_logits_and_size_check():
    critic = ResNetCritic(widths=(4, 8))
    out = critic(torch.randn(2, 1, 8, 12, 16))
    assert out.shape == (2, 1, 2, 3, 4)
    with pytest.raises(ValueError, match=">= 8"):
        critic(torch.randn(1, 1, 4, 8, 8))
    with pytest.raises(ValueError, match="widths"):
        ResNetCritic(widths=())


def test_resnet_critic_default_widths_on_thesis_patch_size_shape():
    # 4 blocks halve 64³ four times (shape only, via the meta device: no compute)
    with torch.device("meta"):
        critic = ResNetCritic()
        assert critic(torch.empty(1, 1, 64, 64, 64)).shape == (1, 1, 4, 4, 4)


def test_wavelet_critic_detail_bands_reach_the_output():
    torch.manual_seed(0)
    critic = WaveletUNetCritic(widths=(4, 8, 8))
    x = torch.randn(1, 1, 8, 8, 8)
    out = critic(x)
    assert out.shape == (1, 1, 8, 8, 8)
    out.sum().backward()
    for down in critic.downs:
        assert down.high.weight.grad.abs().sum() > 0  # the 7 detail bands feed the decoder
        assert down.low.weight.grad.abs().sum() > 0   # the LLL band feeds the encoder
        assert down.high.in_channels == 7 * down.low.in_channels


def test_wavelet_critic_size_check_and_channels_last():
    critic = WaveletUNetCritic(widths=(4, 4, 4)).eval()
    with pytest.raises(ValueError, match="divisible by 4"):
        critic(torch.randn(1, 1, 6, 8, 8))
    x = torch.randn(1, 1, 8, 8, 8)
    ref = critic(x)
    cl = critic.to(memory_format=torch.channels_last_3d)
    y = cl(x.contiguous(memory_format=torch.channels_last_3d))
    assert torch.allclose(y, ref, atol=1e-5)
    with pytest.raises(ValueError, match="widths"):
        WaveletUNetCritic(widths=(4,))


def test_resnet10_features_widths_and_names():
    fe = ResNet10Features(widths=(4, 4, 8, 8))
    feats = fe(torch.randn(2, 1, 16, 16, 16))
    assert [tuple(f.shape) for f in feats] == [(2, 4, 4, 4, 4), (2, 4, 2, 2, 2),
                                               (2, 8, 1, 1, 1), (2, 8, 1, 1, 1)]
    keys = fe.state_dict().keys()
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight",
            "layer3.0.downsample.0.weight"} <= set(keys)
    assert not any(p.grad is not None for p in fe.parameters())
