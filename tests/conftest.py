"""Shared fixtures. Tests never touch the network: outbound sockets are refused."""

from __future__ import annotations

import socket

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
