"""bids_enhance: a BIDS-App that denoises, super-resolves and motion-corrects 3D structural MRI."""

from __future__ import annotations

import os

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("bids_enhance")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

# The app never opens a network connection: nipype's update check (etelemetry) is switched off
# before anything imports nipype.
os.environ.setdefault("NIPYPE_NO_ET", "1")
os.environ.setdefault("NO_ET", "1")

__all__ = ["__version__"]
