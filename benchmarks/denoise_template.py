"""The learned denoiser against ODCT3D and PRI-NLM on a smooth, noise-free reference: the central
96³ of nilearn's MNI152 T1 template (1 mm; an average of 152 brains, so no texture of a single
scan), robust maximum → 1, with Rician noise of 3, 6 and 9 % of it; σ estimated by every method,
PSNR in the head mask. The same computation as the guard in tests/test_shipped_weights.py.

``--oracle`` gives every method the true σ instead (the protocol of benchmarks/denoise.py);
``--methods ... bm4d`` adds BM4D (the ``benchmark`` extra; it always gets the true σ, and takes
minutes per level on 2 cores). A noise-free reference separates a denoiser's quality from what
PSNR against a reference that carries its own noise rewards (docs/benchmarks/denoise.md).

    python benchmarks/denoise_template.py [--checkpoint PATH] [--threads 1]
    python benchmarks/denoise_template.py --oracle --methods prinlm odct3d learned bm4d
"""

from __future__ import annotations

import argparse

import numpy as np

METHODS = ("prinlm", "odct3d", "learned")
NAMES = {"prinlm": "PRI-NLM", "odct3d": "ODCT3D", "odct3d-wiener": "ODCT3D-Wiener",
         "blockmatch": "BM-DCT",
         "learned": "learned", "bm4d": "BM4D"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None,
                        help="a denoise checkpoint (default: the shipped weights)")
    parser.add_argument("--levels", type=float, nargs="+", default=[3, 6, 9])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(NAMES))
    parser.add_argument("--oracle", action="store_true",
                        help="give every method the true σ (default: each estimates it)")
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
    header = ["noisy", *args.methods]
    print(f"| noise | {' | '.join(NAMES.get(k, k) for k in header)} |\n"
          f"|---|{'---|' * len(header)}")
    for level in args.levels:
        rng = np.random.default_rng(2)
        sigma = level / 100 * float(np.percentile(clean, 99.9))
        noisy = np.hypot(clean + rng.normal(0, sigma, clean.shape),
                         rng.normal(0, sigma, clean.shape)).astype(np.float32)
        given = sigma if args.oracle else None
        outputs = {"noisy": noisy}
        for method in args.methods:
            if method == "learned":
                outputs[method] = learned_denoise(noisy, sigma=given,
                                                  checkpoint=args.checkpoint)[0]
            elif method == "bm4d":
                import bm4d

                outputs[method] = np.asarray(bm4d.bm4d(noisy, float(sigma)), dtype=np.float32)
            else:
                outputs[method] = denoise(noisy, method=method, noise_model="rician",
                                          sigma=given)[0]
        psnr = {k: evaluate(clean, np.asarray(v), mask=mask)["psnr"] for k, v in outputs.items()}
        print(f"| {level:g} % | " + " | ".join(f"{psnr[k]:.2f}" for k in outputs) + " |",
              flush=True)


if __name__ == "__main__":
    main()
