"""benchmarks/motion.py: the shipped motion model against the corrupted input at several
severities, on small synthetic stand-ins for the held-out heads."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tests.conftest import phantom

ROOT = Path(__file__).resolve().parents[1]


def _held_out_phantoms(tmp_path, shape):
    """Synthetic stand-ins for the held-out heads, as ``prep`` writes them; their folder."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import train_default_weights as tdw

    npz = tmp_path / "npz"
    npz.mkdir()
    for i, name in enumerate(tdw.HELD_OUT):
        data = (phantom(shape, noise=2.0, seed=i) * 3).astype(np.int16)
        np.savez_compressed(npz / f"{name}.npz", data=data, affine=np.diag([1.0, 1, 1, 1]))
    return npz


def test_motion_benchmark_writes_a_row_per_head_severity_and_draw(tmp_path):
    npz = _held_out_phantoms(tmp_path, (32, 36, 30))
    import motion
    import train_default_weights as tdw

    out = tmp_path / "out"
    assert motion.main(["--npz-dir", str(npz), "--out", str(out), "--severities", "mild",
                        "severe", "--realisations", "2", "--kspace"]) == 0
    rows = json.loads((out / "motion.json").read_text())["rows"]
    assert len(rows) == len(tdw.HELD_OUT) * 2 * 2
    severe = [r for r in rows if r["severity"] == "severe"]
    # the draws differ (seeded per head, severity and realisation) and stay inside ±10°
    angles = [np.asarray(r["records"][0]["degrees"]) for r in severe]
    assert not np.allclose(angles[0], angles[1])
    assert all(np.abs(a).max() <= 10 for a in angles)
    assert all(np.isfinite(r["model"]["psnr"]) and np.isfinite(r["corrupted"]["psnr"])
               for r in rows)
    text = (out / "motion.md").read_text()
    assert "| mild | **mean of 4** |" in text and "±10°, ±10 mm" in text
    # --kspace: the motion's error lies in the lines from a moved head (and their mirrors)
    assert all(r["kspace"]["corrupted_error_in_moved_lines"] > 0.999 for r in rows)
    assert "model's error in the moved lines" in text


def test_moved_lines_hold_all_of_the_motion_error():
    """``--kspace``: the corrupted input differs from the reference only on the k-space lines
    that ``moved_lines`` names (a moved segment or its mirror), for odd and even lengths."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import motion

    from bids_enhance.degrade import RandomMotion, degrade
    from bids_enhance.training.seeding import numpy_generator

    for shape in ((30, 34, 40), (31, 33, 37)):
        clean = phantom(shape, noise=0.0, seed=3).astype(np.float32)
        corrupted, _, records = degrade(clean, np.eye(4), steps=(RandomMotion(
            degrees=10, translation=10, num_transforms=2),), rng=numpy_generator(5, *shape))
        error = motion.kspace_error(clean, corrupted)
        moved = motion.moved_lines(records, shape[-1])
        assert 0 < moved.sum() < shape[-1]
        assert error[~moved].sum() < 1e-8 * error.sum()
        summary = motion.kspace_summary(clean, corrupted, clean, records)
        assert summary["corrupted_error_in_moved_lines"] > 1 - 1e-8
        # the reference itself as the "model": it removes all of the error
        assert summary["model_error_in_moved_lines"] == 0.0
        assert len(summary["bands"]) == motion.KSPACE_BANDS


def test_motion_benchmark_with_ghosts_along_another_axis(tmp_path):
    """--phase-encoding-axis 0: segments along the first axis; the model runs told that axis
    and once on the volume as it is."""
    npz = _held_out_phantoms(tmp_path, (30, 34, 28))
    import motion

    out = tmp_path / "out"
    assert motion.main(["--npz-dir", str(npz), "--out", str(out), "--severities", "mild",
                        "--realisations", "1", "--phase-encoding-axis", "0"]) == 0
    rows = json.loads((out / "motion.json").read_text())["rows"]
    assert all(r["phase_encoding_axis"] == 0 and np.isfinite(r["model_as_is"]["psnr"])
               for r in rows)
    assert "not the training axis 2" in (out / "motion.md").read_text()
