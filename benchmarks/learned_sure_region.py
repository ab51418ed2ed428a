#!/usr/bin/env python
"""Where the learned denoiser's SURE weight is measured, and what that costs.

``--denoise-method learned`` averages the network with PRI-NLM, weighted by SURE on cubes of
the head (:mod:`bids_enhance.inference.learned`). This runs the real
:func:`~bids_enhance.inference.learned.learned_denoise` (whole head, true σ, the noise of
``benchmarks/denoise.py``: same seed, volume position and level) once per region variant and
reports its wall time, PRI-NLM's weight and the PSNR of the average (head and central crop, the
metrics of ``benchmarks/denoise.py``). A variant sets the module's ``SURE_CUBE``,
``SURE_MARGIN``, ``SURE_OCTANTS`` and ``SURE_HALO`` for its runs::

    python benchmarks/learned_sure_region.py --threads 2 \\
        --volumes niivue_T1wGd_brain_1mm@0 benchmarks/results/pd_like/mni152_PDlike_1mm.nii.gz@0 \\
        --variants 32,12,8,auto 40,12,4,0 --out benchmarks/results/sure_region

``--volumes`` entries are ``NAME_OR_PATH@POSITION`` (the volume's position in the
``benchmarks/denoise.py`` run whose noise is repeated, its ``--index-offset``). A variant is
``CUBE,MARGIN,OCTANTS,HALO[,HEAD]``: OCTANTS 8 (all of them), 4 (one of each pair of opposite
octants: every half of the head, left/right, front/back, top/bottom, holds two) or 2 (two
opposite octants: every half holds one); HEAD (optional) the margin in voxels of the head's box
that the denoiser runs on (``HEAD_MARGIN``), or ``whole`` to run on the whole image
(``CROP_BELOW = 0``). ``--profile N`` also prints the N most expensive calls of each
run (cumulative time, :mod:`cProfile`). Run by hand; results in ``<out>.csv`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import platform
import pstats
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import denoise as bench  # noqa: E402  (benchmarks/denoise.py: data, noise, metrics)

#: OCTANTS → the octant corners that hold a cube
OCTANT_SETS = {
    8: tuple(np.ndindex(2, 2, 2)),
    4: ((0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0)),
    2: ((0, 0, 0), (1, 1, 1)),
}


def parse_variant(text: str) -> dict:
    cube, margin, octants, halo, *rest = text.split(",")
    if int(octants) not in OCTANT_SETS:
        raise argparse.ArgumentTypeError(f"OCTANTS must be one of {sorted(OCTANT_SETS)}")
    if len(rest) > 1 or (rest and rest[0] != "whole" and not rest[0].isdigit()):
        raise argparse.ArgumentTypeError("the fifth field, HEAD, is a margin in voxels or "
                                         "'whole'")
    return {"name": text, "cube": int(cube), "margin": int(margin),
            "octants": OCTANT_SETS[int(octants)], "halo": halo if halo == "auto" else int(halo),
            "head": rest[0] if rest else None}


def parse_volume(text: str) -> tuple[Path, int]:
    name, _, position = text.rpartition("@")
    if not name:
        name, position = text, "0"
    path = Path(name)
    if not path.exists():
        path = bench.DATA_DIR / f"{name}.nii.gz"
    if not path.exists():
        path = bench.DATA_DIR.parent / name
    return path, int(position)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", nargs="+", type=parse_volume, required=True)
    parser.add_argument("--levels", nargs="+", type=float, default=list(bench.DEFAULT_LEVELS))
    parser.add_argument("--variants", nargs="+", type=parse_variant, required=True)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sure_region"))
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="print the N most expensive calls of each run (cProfile)")
    args = parser.parse_args(argv)

    import nibabel as nib
    import torch

    torch.set_num_threads(args.threads)
    import bids_enhance.inference.learned as learned
    from bids_enhance.degrade import add_rician_noise
    from bids_enhance.degrade.noise import sigma_from_fraction
    from bids_enhance.image.mask import head_mask

    defaults = {"HEAD_MARGIN": learned.HEAD_MARGIN, "CROP_BELOW": learned.CROP_BELOW}
    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for path, position in args.volumes:
        name = path.name.replace(".nii.gz", "").replace(".nii", "")
        clean = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        head = head_mask(clean)
        masks = {"head": head, "brain": head if name in bench.SKULL_STRIPPED else None}
        crop = bench.central_crop(head, args.crop)
        for li, level in enumerate(args.levels):
            sigma = sigma_from_fraction(clean, level / 100.0)
            rng = np.random.default_rng(np.random.SeedSequence([bench.SEED, position, li]))
            noisy = add_rician_noise(clean, sigma=sigma, rng=rng)
            for variant in args.variants:
                learned.SURE_CUBE, learned.SURE_MARGIN = variant["cube"], variant["margin"]
                learned.SURE_OCTANTS, learned.SURE_HALO = variant["octants"], variant["halo"]
                learned.HEAD_MARGIN = (defaults["HEAD_MARGIN"] if variant["head"] in (None, "whole")
                                       else int(variant["head"]))
                learned.CROP_BELOW = 0.0 if variant["head"] == "whole" else defaults["CROP_BELOW"]
                profiler = cProfile.Profile() if args.profile else None
                t0 = time.perf_counter()
                if profiler is not None:
                    profiler.enable()
                out, model = learned.learned_denoise(noisy, sigma=sigma)
                seconds = time.perf_counter() - t0
                if profiler is not None:
                    profiler.disable()
                    pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile)
                row = {"volume": name, "level_pct": level, "variant": variant["name"],
                       "seconds": seconds, "weight": model["aggregate"]["weight"],
                       "box_fraction": (float(np.prod([b - a for a, b in model["region"]["box"]]))
                                        / noisy.size if "region" in model else 1.0),
                       "threads": args.threads,
                       **bench.evaluate(clean, out, masks, crop, False)}
                rows.append(row)
                print(f"{name} {level:g}% {variant['name']:>14s}: {seconds:6.1f} s  "
                      f"w {row['weight']:.3f}  head {row['psnr_head']:.2f}  "
                      f"crop {row['psnr_crop']:.2f}", flush=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"`python benchmarks/learned_sure_region.py` on {platform.machine()}, "
             f"{args.threads} thread(s); variant = cube, margin, octants, halo[, head margin]; "
             "box = the fraction of the voxels the denoiser ran on.", "",
             "| volume | level % | variant | box | seconds | w | PSNR head | PSNR crop |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['volume']} | {r['level_pct']:g} | {r['variant']} | {r['box_fraction']:.2f} | "
              f"{r['seconds']:.1f} | {r['weight']:.3f} | {r['psnr_head']:.2f} | "
              f"{r['psnr_crop']:.2f} |" for r in rows]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
