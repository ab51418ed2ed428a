from __future__ import annotations

import pytest

from bids_enhance.models import MODELS, RRDBGenerator, available_models, build_model
from bids_enhance.models.registry import describe_arch, registered_name


def test_names():
    assert available_models() == ("rrdb_generator", "resnet_critic", "resnet10_features",
                                  "wavelet_unet_critic", "diffusion_unet")
    assert MODELS["rrdb_generator"] is RRDBGenerator


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match="did you mean 'rrdb_generator'"):
        build_model("rrdb_generater")
    with pytest.raises(ValueError, match="Known models"):
        build_model("unet")


def test_unknown_argument_suggests():
    with pytest.raises(ValueError, match="did you mean 'features'"):
        build_model("rrdb_generator", feature=4)


def test_build_and_describe():
    model = build_model("rrdb_generator", features=4, growth=4, num_blocks=1)
    assert registered_name(model) == "rrdb_generator"
    assert describe_arch("rrdb_generator", {"scale": 2, "features": 4}) == \
        "rrdb_generator(features=4, scale=2)"


def test_size_presets_build_for_every_gan_task():
    from bids_enhance.models.registry import SIZES, size_preset

    assert set(SIZES) == {"compact", "thesis"}
    for task, scale in (("gan3p", 2), ("disgan", 2), ("motion-gan", 1)):
        compact = size_preset("compact", task)
        generator = build_model("rrdb_generator", scale=scale, **compact["generator"])
        thesis = build_model("rrdb_generator", scale=scale, **size_preset("thesis", task)["generator"])
        n = sum(p.numel() for p in generator.parameters())
        assert n < sum(p.numel() for p in thesis.parameters()) / 3
        assert compact["generator"]["image_skip"] is True
    assert size_preset("compact", "motion-gan")["generator"]["space_to_depth"] is True
    size_preset("compact", "gan3p")["generator"]["features"] = 1  # a copy
    assert SIZES["compact"]["gan3p"]["generator"]["features"] == 32
    with pytest.raises(ValueError, match="did you mean 'compact'"):
        size_preset("compakt", "gan3p")


def test_compact_diffusion_unet_is_a_small_fraction_of_the_thesis_one():
    import torch

    from bids_enhance.models.registry import size_preset

    def build(size):
        return build_model("diffusion_unet", image_channels=1, condition_channels=3,
                           **size_preset(size, "motion-ddpm")["unet"])

    compact, thesis = build("compact"), build("thesis")
    n = sum(p.numel() for p in compact.parameters())
    assert n < sum(p.numel() for p in thesis.parameters()) / 10
    assert compact.size_multiple == 8  # four levels: slices padded to a multiple of 8
    x = torch.zeros(1, 1, 24, 32)
    with torch.no_grad():
        assert compact(x, torch.tensor([3]), torch.zeros(1, 3, 24, 32)).shape == x.shape
