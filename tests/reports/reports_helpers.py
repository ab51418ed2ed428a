"""Helpers for the report tests: HTML checks, a phantom, sidecars, a crash file."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

VOID = {"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "source", "wbr"}


class _Balance(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
            if tag in self.stack:
                while self.stack and self.stack.pop() != tag:
                    pass
        else:
            self.stack.pop()


def assert_balanced_html(text: str) -> None:
    """Every non-void element is closed, in order (the fragments are inlined into a page)."""
    parser = _Balance()
    parser.feed(text)
    parser.close()
    assert not parser.errors, parser.errors
    assert not parser.stack, f"unclosed elements: {parser.stack}"


def head(shape=(32, 34, 30), *, noise=0.0, seed=0) -> np.ndarray:
    """Head-like phantom: scalp shell, 'GM' shell, bright 'WM' core, zero background."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    r = np.sqrt((grid ** 2).sum(0))
    data = np.select([r < 0.45, r < 0.65, r < 0.8], [100.0, 60.0, 30.0], 0.0)
    if noise:
        data = np.hypot(data + rng.normal(0, noise, shape), rng.normal(0, noise, shape))
    return data.astype(np.float32)




def make_sidecar(*, sigma: float | None = 4.5, fixes=(), snr=(8.0, 12.0), cjv=(0.6, 0.45),
                 source="sub-01/anat/sub-01_T1w.nii.gz") -> dict:
    """An image sidecar as BuildSidecar writes it (interfaces/bids.py)."""
    meta = {
        "Description": "T1w image enhanced by bids_enhance (denoise).",
        "Sources": [f"bids:raw:{source}"],
        "SkullStripped": False,
        "EnhancementSteps": [{
            "Step": "denoise", "Method": "prinlm", "NoiseModel": "rician",
            "Parameters": {"search_radius": 3, "h_factor": 0.3333}, "Device": "cpu",
            "ElapsedSeconds": 12.5, "NoiseSigma": sigma,
            "NoiseSigmaEstimator": "Coupé et al. 2010 (wavelet, object mask, Koay-Basser)",
        }],
        "InputSanitising": {"Orientation": "RAS", "Shape": [32, 34, 30],
                            "VoxelSize": [2.0, 2.0, 2.0], "OriginalDataType": "int16",
                            "Fixes": list(fixes)},
        "IntensityNormalisation": {"Method": "divide by P99.9", "Scale": 100.0},
        "QualityMetrics": {
            "Before": {"snr_total": snr[0], "cnr": 2.0, "cjv": cjv[0], "efc": 0.59,
                       "fber": 116.0, "wm2max": 0.85, "snr_dietrich": None, "n_wm": 120.0},
            "After": {"snr_total": snr[1], "cnr": 2.7, "cjv": cjv[1], "efc": 0.57,
                      "fber": None, "wm2max": 0.89, "snr_dietrich": None, "n_wm": 120.0},
        },
    }
    return meta


CRASH_TEXT = """\
Node: bids_enhance_0_1_wf.sub_01_wf.echo_2_part_mag_T1w_wf.denoise_wf.denoise
Working directory: /work/bids_enhance_0_1_wf/sub_01_wf/echo_2_part_mag_T1w_wf/denoise_wf/denoise

Node inputs:

in_file = /work/sanitize/sub-01_echo-2_part-mag_T1w_valid_norm.nii.gz
method = prinlm
parameters = {'a': 1,
    'b': 2}

Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/nipype/pipeline/plugins/multiproc.py", line 67, in run_node
    result["result"] = node.run(updatehash=updatehash)
  File "/venv/lib/python3.11/site-packages/nipype/pipeline/engine/nodes.py", line 787, in _run_command
    raise NodeExecutionError(msg)
nipype.pipeline.engine.nodes.NodeExecutionError: Exception raised while executing Node denoise.

Traceback:
\tTraceback (most recent call last):
\t  File "<string>", line 2, in <module>
\tValueError: sub-01_echo-2_part-mag_T1w.nii.gz: noise estimate is not finite <nan>
"""


def write_figure_svg(path: Path, label: str = "figure") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('<?xml version="1.0" encoding="utf-8"?>\n'
                    '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100" '
                    f'viewBox="0 0 200 100"><text x="10" y="50">{label}</text></svg>\n')
    return path




def external_assets(text: str) -> list[str]:
    """``src``/``href`` of scripts, stylesheets, images, objects and frames that leave the
    machine (``http://``, ``https://`` or protocol-relative)."""
    pattern = re.compile(
        r"<(script|link|img|object|iframe|embed|source)\b[^>]*\b(?:src|href|data)\s*=\s*"
        r"[\"']((?:https?:)?//[^\"']*)", re.IGNORECASE)
    found = [m.group(2) for m in pattern.finditer(text)]
    found += re.findall(r"@import\s+url\(\s*[\"']?((?:https?:)?//[^)\"']*)", text)
    found += re.findall(r"url\(\s*[\"']?((?:https?:)?//[^)\"']*)", text)
    return found

