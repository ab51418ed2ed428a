"""The learned denoiser against ODCT3D and PRI-NLM on a smooth, noise-free reference: the central
96³ of nilearn's MNI152 T1 template (1 mm; an average of 152 brains, so no texture of a single
scan), robust maximum → 1, with Rician noise of 3, 6 and 9 % of it; σ estimated by every method,
PSNR in the head mask. The same computation as the guard in tests/test_shipped_weights.py.

    python benchmarks/denoise_template.py [--checkpoint PATH] [--threads 1]
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None,
                        help="a denoise checkpoint (default: the shipped weights)")
    parser.add_argument("--levels", type=float, nargs="+", default=[3, 6, 9])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch
    from nilearn.datasets import load_mni152_template

    from bids_enhance.classical import denoise
    from bids_enhance.image.intensity import normalise
    from bids_enhance.image.mask import head_mask
    from bids_enhance.inference.learned import learned_denoise
    from bids_enhance.metrics.quality import evaluate

    torch.set_num_threads(args.threads)
    data = load_mni152_template(resolution=1).get_fdata(dtype=np.float32)
    crop = tuple(slice(n // 2 - 48, n // 2 + 48) for n in data.shape)
    clean, _ = normalise(data[crop])
    mask = head_mask(clean)
    print("| noise | noisy | PRI-NLM | ODCT3D | learned |\n|---|---|---|---|---|")
    for level in args.levels:
        rng = np.random.default_rng(2)
        sigma = level / 100 * float(np.percentile(clean, 99.9))
        noisy = np.hypot(clean + rng.normal(0, sigma, clean.shape),
                         rng.normal(0, sigma, clean.shape)).astype(np.float32)
        outputs = {"noisy": noisy,
                   "prinlm": denoise(noisy, method="prinlm", noise_model="rician")[0],
                   "odct3d": denoise(noisy, method="odct3d", noise_model="rician")[0],
                   "learned": learned_denoise(noisy, checkpoint=args.checkpoint)[0]}
        psnr = {k: evaluate(clean, np.asarray(v), mask=mask)["psnr"] for k, v in outputs.items()}
        print(f"| {level:g} % | " + " | ".join(f"{psnr[k]:.2f}" for k in outputs) + " |",
              flush=True)


if __name__ == "__main__":
    main()
