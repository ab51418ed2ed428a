"""Shared fixtures. Tests never touch the network: outbound sockets are refused."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    if self.family == socket.AF_UNIX:
        return _real_connect(self, address)
    raise RuntimeError(f"tests must not open network connections (tried {address!r})")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20251127)


def phantom(shape=(20, 22, 18), *, noise=0.0, seed=0) -> np.ndarray:
    """A small head-like phantom: bright ellipsoid 'WM' in a dimmer shell, zero background."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    r = np.sqrt((grid ** 2).sum(0))
    data = np.where(r < 0.8, 60.0, 0.0) + np.where(r < 0.5, 40.0, 0.0)
    if noise:
        data = np.hypot(data + rng.normal(0, noise, shape), rng.normal(0, noise, shape))
    return data.astype(np.float32)


def write_bids(root: Path, images: dict[str, np.ndarray | bytes], *,
               affine: np.ndarray | None = None) -> Path:
    """Write a minimal BIDS dataset: {relative path: data or raw bytes}."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "test", "BIDSVersion": "1.10.0", "DatasetType": "raw"}))
    for rel, data in images.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine)
            img.set_qform(img.affine, 1)
            nib.save(img, path)
    return root


@pytest.fixture
def tiny_bids(tmp_path) -> Path:
    """Two subjects; sub-02 has two sessions and two runs in one of them."""
    return write_bids(tmp_path / "bids", {
        "sub-01/anat/sub-01_T1w.nii.gz": phantom(noise=3.0, seed=1),
        "sub-02/ses-a/anat/sub-02_ses-a_run-1_T1w.nii.gz": phantom(noise=3.0, seed=2),
        "sub-02/ses-a/anat/sub-02_ses-a_run-2_T1w.nii.gz": phantom(noise=3.0, seed=3),
        "sub-02/ses-b/anat/sub-02_ses-b_T1w.nii.gz": phantom(noise=3.0, seed=4),
        "sub-02/ses-b/anat/sub-02_ses-b_T2w.nii.gz": phantom(noise=3.0, seed=5),
    })
