from __future__ import annotations

import collections
import os
import pickle
import re

import numpy as np
import pytest
import torch

from bids_enhance import __version__
from bids_enhance.models import (
    CheckpointError,
    build_model,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    sha256_file,
)

from .conftest import TINY_GENERATOR

EXPECTED_KEYS = {"format", "format_version", "arch_name", "arch_kwargs", "state_dict",
                 "ema_state_dict", "degradation", "normalisation", "seed", "training_command",
                 "package_version", "torch_version", "created", "extra"}


def test_file_is_plain_data_and_self_describing(tiny_generator_checkpoint):
    path, digest = tiny_generator_checkpoint
    assert digest == sha256_file(path)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == EXPECTED_KEYS
    assert raw["format"] == "bids_enhance.checkpoint"
    assert raw["arch_name"] == "rrdb_generator" and raw["arch_kwargs"] == TINY_GENERATOR
    assert raw["package_version"] == __version__
    assert raw["seed"] == 7 and raw["degradation"] == {"kind": "box"}
    assert not list(path.parent.glob(".*.tmp"))  # atomic write leaves no temp file


def test_load_returns_model_and_meta(tiny_generator_checkpoint):
    path, digest = tiny_generator_checkpoint
    model, meta = load_checkpoint(path, expected_arch="rrdb_generator",
                                  expected_kwargs={"scale": 2}, expected_sha256=digest.upper())
    assert not model.training
    assert meta["sha256"] == digest and meta["weights"] == "model" and not meta["has_ema"]
    assert "state_dict" not in meta
    assert meta["training_command"] == ["bids_enhance", "bids", "out", "train"]


def test_tampered_file_is_refused(tiny_generator_checkpoint):
    path, digest = tiny_generator_checkpoint
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="modified"):
        load_checkpoint(path, expected_sha256=digest)


def test_wrong_architecture_refused_clearly(tiny_generator_checkpoint):
    path, _ = tiny_generator_checkpoint
    with pytest.raises(CheckpointError, match=r"holds rrdb_generator\(features=4, growth=4, "
                                              r"num_blocks=1, scale=2\), expected resnet_critic"):
        load_checkpoint(path, expected_arch="resnet_critic")
    with pytest.raises(CheckpointError, match=r"scale=2\), expected rrdb_generator\(scale=1\)"):
        load_checkpoint(path, expected_arch="rrdb_generator", expected_kwargs={"scale": 1})


def test_save_refuses_kwargs_that_do_not_rebuild_the_model(tmp_path):
    model = build_model("rrdb_generator", **TINY_GENERATOR)
    with pytest.raises(CheckpointError, match=r"does not match rrdb_generator\(features=8"):
        save_checkpoint(tmp_path / "x.pt", model=model, arch_name="rrdb_generator",
                        arch_kwargs={**TINY_GENERATOR, "features": 8})
    with pytest.raises(CheckpointError, match="RRDBGenerator"):
        save_checkpoint(tmp_path / "x.pt", model=model, arch_name="resnet_critic",
                        arch_kwargs={})
    with pytest.raises(CheckpointError, match=r"has extra \['upsample"):  # scale 1: no upsampler
        save_checkpoint(tmp_path / "x.pt", model=model, arch_name="rrdb_generator",
                        arch_kwargs={**TINY_GENERATOR, "scale": 1})
    assert not list(tmp_path.iterdir())


def test_weights_that_do_not_fit_are_refused(tmp_path, tiny_generator_checkpoint):
    path, _ = tiny_generator_checkpoint
    raw = torch.load(path, weights_only=True)
    raw["arch_kwargs"] = {**raw["arch_kwargs"], "growth": 8}
    torch.save(raw, tmp_path / "forged.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "forged.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_objects_are_never_unpickled(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "bids_enhance.checkpoint", "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match=r"holds a pickled Python object "
                                              r"\((builtins\.)?print\), which is never unpickled"):
        load_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="cannot be read as a safe torch checkpoint"):
        read_checkpoint(tmp_path / "plain.pkl")
    torch.save({"a": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a bids_enhance checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "missing.pt")


def test_newer_format_refused(tmp_path, tiny_generator_checkpoint):
    raw = torch.load(tiny_generator_checkpoint[0], weights_only=True)
    raw["format_version"] = 99
    torch.save(raw, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        read_checkpoint(tmp_path / "new.pt")


@pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.*")
def test_ema_weights_wrappers_and_metadata_conversion(tmp_path):
    torch.manual_seed(0)
    model = build_model("rrdb_generator", **TINY_GENERATOR)
    ema = torch.optim.swa_utils.AveragedModel(model)
    with torch.no_grad():
        for p in ema.module.parameters():
            p.add_(1.0)
    path = tmp_path / "sub" / "ema.pt"
    save_checkpoint(path, model=torch.compile(model), ema_model=ema, arch_name="rrdb_generator",
                    arch_kwargs=TINY_GENERATOR, seed=np.int64(3), extra={"path": tmp_path,
                                                                        "step": 10})
    loaded, meta = load_checkpoint(path)
    assert meta["weights"] == "ema" and meta["seed"] == 3 and meta["extra"]["path"] == str(tmp_path)
    assert torch.equal(loaded.conv_first.weight, ema.module.conv_first.weight)
    plain, meta = load_checkpoint(path, weights="model")
    assert torch.equal(plain.conv_first.weight, model.conv_first.weight)
    with pytest.raises(TypeError, match=r"extra\['bad'\]"):
        save_checkpoint(path, model=model, arch_name="rrdb_generator",
                        arch_kwargs=TINY_GENERATOR, extra={"bad": object()})


def test_failed_write_keeps_the_previous_file(tmp_path, tiny_generator_checkpoint, monkeypatch):
    path, digest = tiny_generator_checkpoint
    model = build_model("rrdb_generator", **TINY_GENERATOR)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model=model, arch_name="rrdb_generator", arch_kwargs=TINY_GENERATOR)
    assert sha256_file(path) == digest
    assert not list(path.parent.glob(".*.tmp"))


def test_checkpoints_get_umask_permissions_not_mkstemps_0600(tmp_path):
    import os
    import stat

    from bids_enhance.models.checkpoint import save_torch_atomic

    old = os.umask(0o022)
    try:
        save_torch_atomic({"a": 1}, tmp_path / "shared" / "state.pt")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "shared" / "state.pt").stat().st_mode)
    assert mode == 0o644
    assert [p.name for p in (tmp_path / "shared").iterdir()] == ["state.pt"]


class _Ordered(collections.OrderedDict):
    """A class torch's safe loader does not know (any class of the writer's code base)."""


def _garbage(kind: str, path):
    if kind == "random bytes":
        path.write_bytes(np.random.default_rng(3).bytes(4096))
    elif kind == "a truncated torch file":
        torch.save({"a": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "a pickle of a plain dict":
        path.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    else:
        value = {"class": _Ordered(a=1), "function": os.path.join}[kind]
        torch.save({"format": "bids_enhance.checkpoint", "arch_kwargs": value}, path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(("kind", "reason"), [
    ("random bytes", "unsupported pickle opcode"),
    ("a truncated torch file", "PytorchStreamReader failed reading zip archive"),
    ("a pickle of a plain dict", "unsupported pickle opcode"),
    ("class", r"holds a pickled Python object \([\w.]*_Ordered\), which is never unpickled"),
    ("function", r"holds a pickled Python object \(posixpath.join\), which is never unpickled"),
])
def test_unreadable_files_get_one_line_without_unsafe_advice(tmp_path, kind, reason):
    path = tmp_path / "garbage.pt"
    _garbage(kind, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a bids_enhance checkpoint (cannot be read as a safe "
                              "torch checkpoint")
    assert re.search(reason, message) and message.endswith(")")
    assert "\n" not in message and "\x1b" not in message
    for advice in ("weights_only", "safe_globals", "trust"):
        assert advice not in message.lower()


def _forge(tmp_path, checkpoint, **entries):
    raw = torch.load(checkpoint, weights_only=True)
    raw.update(entries)
    path = tmp_path / "forged.pt"
    torch.save(raw, path)
    return path


_STATE = "a dict {parameter name: tensor}"


@pytest.mark.parametrize(("entries", "expected"), [
    ({"arch_kwargs": [4, 4, 1, 2]}, "'arch_kwargs' entry: a list ([4, 4, 1, 2]), expected a dict"),
    ({"arch_kwargs": [["features", 4]]}, "'arch_kwargs' entry: a list"),
    ({"arch_kwargs": "features=4"}, "'arch_kwargs' entry: a str ('features=4'), expected a dict"),
    ({"arch_kwargs": 4}, "'arch_kwargs' entry: an int (4), expected a dict"),
    ({"arch_kwargs": None}, "'arch_kwargs' entry: None, expected a dict"),
    ({"arch_kwargs": {1: 2}}, "'arch_kwargs' entry: a dict ({1: 2}), expected a dict of keyword "
                              "arguments with str keys"),
    ({"arch_kwargs": {**TINY_GENERATOR, "features": torch.tensor(4)}},
     "'arch_kwargs' entry: 'features' is a Tensor"),
    ({"arch_name": 5}, "'arch_name' entry: an int (5), expected a registered model name"),
    ({"state_dict": [1, 2]}, f"'state_dict' entry: a list ([1, 2]), expected {_STATE}"),
    ({"state_dict": "weights"}, f"'state_dict' entry: a str ('weights'), expected {_STATE}"),
    ({"state_dict": None}, f"'state_dict' entry: None, expected {_STATE}"),
    ({"state_dict": {"conv_first.weight": 1.0}},
     "'state_dict' entry: 'conv_first.weight' is a float (1.0), expected a tensor"),
    ({"state_dict": {"conv_first.weight": [[0.5]]}},
     "'state_dict' entry: 'conv_first.weight' is a list ([[0.5]]), expected a tensor"),
    ({"state_dict": {3: torch.zeros(1)}}, "'state_dict' entry: has the key an int (3)"),
    ({"ema_state_dict": [torch.zeros(1)]}, "'ema_state_dict' entry: a list"),
    ({"extra": ["task", "gan3p"]}, "'extra' entry: a list"),
])
def test_entries_of_the_wrong_type_get_a_one_line_refusal(tmp_path, tiny_generator_checkpoint,
                                                           entries, expected):
    path = _forge(tmp_path, tiny_generator_checkpoint[0], **entries)
    for load in (load_checkpoint, read_checkpoint):
        with pytest.raises(CheckpointError) as info:
            load(path)
        message = str(info.value)
        assert message.startswith(f"checkpoint {path} has a malformed ")
        assert expected in message and "\n" not in message


def test_arguments_the_network_rejects_by_type_are_refused(tmp_path, tiny_generator_checkpoint):
    path = _forge(tmp_path, tiny_generator_checkpoint[0],
                  arch_kwargs={**TINY_GENERATOR, "features": [4]})
    with pytest.raises(CheckpointError,
                       match=r"holds rrdb_generator\(features=\[4\].*cannot build"):
        load_checkpoint(path)
