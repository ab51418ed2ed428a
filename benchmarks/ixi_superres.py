#!/usr/bin/env python
"""x2 super-resolution of other subjects: IXI T1w heads at 2 mm, super-resolved from their
2×2×2 box average (4 mm), against cubic B-spline — a check that a model generalises beyond the
few 1 mm heads it was trained and evaluated on.

The IXI volumes in ``../shared/data/ixi_t1_2mm`` (IXI dataset, brain-development.org, CC BY-SA
3.0; downsampled to 2 mm and byte-quantised by the redistributor) were never used to train the
shipped weights. Protocol as METHODS.md (reference / its 99.9th percentile in the head mask,
PSNR in the head mask).

    python benchmarks/ixi_superres.py --last 3                      # the shipped superres model
    python benchmarks/ixi_superres.py --checkpoint OUT/models/gan3p --last 20
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ixi_t1_2mm"  # ../shared/data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint or model folder (default: the shipped superres model)")
    parser.add_argument("--last", type=int, default=3, help="the last N subjects by name")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import nibabel as nib
    import torch

    from bids_enhance.degrade import degrade
    from bids_enhance.image.intensity import normalise
    from bids_enhance.image.mask import head_mask
    from bids_enhance.inference import run_checkpoint, upsample_baseline
    from bids_enhance.inference.weights import resolve_model
    from bids_enhance.metrics.quality import evaluate

    torch.set_num_threads(args.threads)
    model = resolve_model("superres", args.checkpoint)
    gains = []
    for path in sorted(args.data_dir.glob("*.nii.gz"))[-args.last:]:
        img = nib.load(path)
        data = img.get_fdata(dtype=np.float32)
        hr, _ = normalise(data[tuple(slice(0, n - n % 2) for n in data.shape)])
        lr, lr_affine, _ = degrade(hr, img.affine, steps="sr-box-x2", rng=0)
        out, _, _ = run_checkpoint(model.path, lr, lr_affine, expected_sha256=model.sha256,
                                   consistency=None)
        cubic, _ = upsample_baseline(lr, lr_affine, kind="cubic", method="box")
        mask = head_mask(hr)
        a = evaluate(hr, out, mask=mask)["psnr"]
        b = evaluate(hr, cubic, mask=mask)["psnr"]
        gains.append(a - b)
        print(f"{path.name}: model {a:.2f} dB, cubic {b:.2f} dB, gain {a - b:+.2f} dB", flush=True)
    print(f"mean gain {np.mean(gains):+.2f} dB over {len(gains)} subject(s), worst "
          f"{np.min(gains):+.2f} dB ({Path(model.path).parent.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
