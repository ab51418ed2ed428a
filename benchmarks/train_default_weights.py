#!/usr/bin/env python
"""Train the default weights of bids_enhance on one GPU: x2 super-resolution models ready to copy
into ``bids_enhance/data/models/``.

Two steps, on two machines:

1. ``prep`` (CPU side, needs nibabel): convert the real T1w volumes of
   ``/work/shared/data/t1_highres`` into compressed ``.npz`` files (raw voxel values in their
   stored dtype, the affine, voxel sizes, source file and licence) plus ``manifest.json``, in a
   git-ignored folder small enough to carry to a GPU node (about 30 MB)::

       python benchmarks/train_default_weights.py prep      # → benchmarks/results/t1_highres_npz

2. ``train`` (GPU node: torch, numpy and scipy; no nibabel, TorchIO or nipype needed — patches
   come from :class:`bids_enhance.training.NumpyPatchStream` when TorchIO is missing)::

       PYTHONPATH=. python benchmarks/train_default_weights.py train --out $OUT/default_weights

   trains, in this order (``--models`` picks some; each fits a 10-minute command):

   ``gan3p_l1_x2``  the three-player GAN's generator after its pixel-loss (L1) warm-up alone: a
                    PSNR-oriented x2 model (task ``gan3p``, degradation ``sr-box-x2``);
   ``gan3p_x2``     the same run continued adversarially (three-player GAN: relativistic critic,
                    ResNet-10 perceptual loss, instance noise annealed to 0) — resumed from
                    ``gan3p_l1_x2``'s training state, so it needs that one first;
   ``disgan_x2``    DISGAN (wavelet U-Net critic) on box-averaged inputs with Rician noise of
                    1–5 % (``sr-box-x2-rician``), with an L1 warm-up of ``--disgan-warmup`` of its
                    iterations.

   Training volumes: ``brainchop_T1w_1mm``, ``niivue_T1wGd_brain_1mm``, ``hanke_T1w_0.67mm``;
   held out (never trained on, used for validation and the model cards):
   ``niivue_otsu_T1w_1mm``, ``arc2017_T1w_1mm``. Without ``--iterations`` each stage gets as many
   iterations as fit ``--budget-min`` minutes, from a timed probe of both training phases.
   Every model is evaluated on the whole held-out volumes against trilinear, cubic B-spline and
   zero-filled k-space interpolation (METHODS.md protocol) and shipped as

       <out>/ship/<name>/checkpoint.pt, model_card.json (checkpoint file + sha256, data, command,
                         held-out metrics), model_card.md, losses.csv, validation.csv, losses.png

   which is what ``bids_enhance/data/models/<name>/`` expects (``docker/verify_models.py``
   checks it: only ``checkpoint.pt`` is a weight file there). The full training directories
   (resumable state, critic, optimiser) stay in ``--work``. ``<out>/summary.{json,md}`` compares
   the models; which one becomes the ``superres`` default is decided on those numbers.

``--smoke`` runs the whole path with tiny networks, 64³ crops and a few iterations on the CPU
(minutes): a check that the script works, not a model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path("/work/shared/data/t1_highres")
NPZ_DIR = ROOT / "benchmarks" / "results" / "t1_highres_npz"
TRAINING = ("brainchop_T1w_1mm", "niivue_T1wGd_brain_1mm", "hanke_T1w_0.67mm")
HELD_OUT = ("niivue_otsu_T1w_1mm", "arc2017_T1w_1mm")
#: where each volume comes from (/work/shared/data/README.md); recorded in the model cards
SOURCES = {
    "hanke_T1w_0.67mm": "datalad example-dicom-structural via CBICA/NiChart_Project test data "
                        "(licence not stated there)",
    "niivue_otsu_T1w_1mm": "niivue/niivue (BSD-2)",
    "brainchop_T1w_1mm": "neuroneural/brainchop t1_crop.nii.gz (MIT)",
    "arc2017_T1w_1mm": "neurolabusc/allineate benchmark inputs (public-domain notice)",
    "niivue_T1wGd_brain_1mm": "niivue/niivue (figshare dataset per its README)",
}
MODELS = ("gan3p_l1_x2", "gan3p_x2", "disgan_x2")
TASKS = {"gan3p_l1_x2": "gan3p", "gan3p_x2": "gan3p", "disgan_x2": "disgan"}
PRESETS = {"gan3p": "sr-box-x2", "disgan": "sr-box-x2-rician"}
DESCRIPTIONS = {
    "gan3p_l1_x2": "x2 super-resolution, RRDB generator of the three-player GAN after its "
                   "pixel-loss (L1) warm-up only (PSNR-oriented)",
    "gan3p_x2": "x2 super-resolution, three-player GAN (Wang et al. 2023): L1 warm-up, then "
                "adversarial training with a ResNet-10 perceptual loss",
    "disgan_x2": "x2 super-resolution with noise removal, DISGAN (Wang et al. 2023)",
}
SMOKE_NETWORKS = {"generator": {"features": 8, "growth": 4, "num_blocks": 1},
                  "critic": {"widths": [8, 16]},
                  "feature_extractor": {"widths": [8, 8, 16, 16]}}
LOGGER = logging.getLogger("train_default_weights")


# ---------------------------------------------------------------------------------------------
# prep (CPU side)
# ---------------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def prep(data_dir: Path, out: Path) -> Path:
    """Write ``<name>.npz`` (``data`` in its stored dtype, ``affine``) per volume and
    ``manifest.json``."""
    import nibabel as nib

    out.mkdir(parents=True, exist_ok=True)
    manifest = {"training": list(TRAINING), "held_out": list(HELD_OUT), "volumes": {}}
    for name in (*TRAINING, *HELD_OUT):
        source = data_dir / f"{name}.nii.gz"
        img = nib.load(str(source))
        slope, inter = img.header.get_slope_inter()
        if slope not in (None, 1.0) or inter not in (None, 0.0):
            data = img.get_fdata(dtype=np.float32)  # scaled integers: store the real values
        else:  # the stored integers themselves (asanyarray may promote them to float64)
            data = img.dataobj.get_unscaled()
        data = np.asarray(data).reshape(img.shape[:3])
        np.savez_compressed(out / f"{name}.npz", data=data, affine=img.affine)
        manifest["volumes"][name] = {
            "file": f"{name}.npz", "source": f"t1_highres/{source.name}",
            "source_sha256": _sha256(source), "origin": SOURCES.get(name),
            "shape": list(data.shape), "dtype": str(data.dtype),
            "voxel_size": [float(z) for z in img.header.get_zooms()[:3]],
            "orientation": "".join(nib.aff2axcodes(img.affine)),
        }
        print(f"{name}: {data.shape} {data.dtype} → {out / (name + '.npz')}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


# ---------------------------------------------------------------------------------------------
# train (GPU side)
# ---------------------------------------------------------------------------------------------
def _package_version() -> str:
    """bids_enhance's version from pyproject.toml when the package is not installed (a source
    checkout on a GPU node), recorded in checkpoints and model cards."""
    import bids_enhance

    if not bids_enhance.__version__.startswith("0.0.0"):
        return bids_enhance.__version__
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    import bids_enhance.models.checkpoint as checkpoint_module

    bids_enhance.__version__ = version
    checkpoint_module.__version__ = version
    return version


def _central_crop(data: np.ndarray, size: int | None) -> np.ndarray:
    if not size:
        return data
    out = data
    for axis, n in enumerate(data.shape):
        if n > size:
            start = (n - size) // 2
            out = np.take(out, np.arange(start, start + size), axis=axis)
    return np.ascontiguousarray(out)


def load_volumes(npz_dir: Path, names, *, crop: int | None = None) -> list:
    """Normalised :class:`~bids_enhance.training.TrainingVolume` s (robust maximum → 1, as the
    app normalises its inputs) of the named volumes."""
    from bids_enhance.image.intensity import normalise
    from bids_enhance.training import TrainingVolume

    out = []
    for name in names:
        with np.load(npz_dir / f"{name}.npz") as npz:
            data = _central_crop(npz["data"].astype(np.float32), crop)
            affine = npz["affine"].astype(np.float64)
        normalised, _ = normalise(data)
        out.append(TrainingVolume(subject=name, data=normalised, affine=affine))
    return out


def _config(name: str, args, *, iterations: int, warmup: int, adversarial: int):
    from bids_enhance.training import TrainConfig

    task = TASKS[name]
    fields = dict(
        task=task, iterations=iterations, warmup_iterations=warmup,
        instance_noise_iterations=max(adversarial, 1), batch_size=args.batch_size,
        patch_size=args.patch_size, degradation=PRESETS[task], seed=args.seed,
        realisations=args.realisations if task == "disgan" else 1,
        samples_per_volume=args.samples_per_volume, queue_length=args.samples_per_volume,
        loss_preset=args.loss_preset, lr_schedule=args.lr_schedule, device=args.device,
        compile=args.compile, checkpoint_every=max(iterations // 4, 1),
        validate_every=max(iterations // args.validations, 1), log_every=args.log_every,
        validation_crop=args.validation_crop)
    if args.smoke:
        fields.update({k: dict(v) for k, v in SMOKE_NETWORKS.items()})
    fields.setdefault("generator", {})["image_skip"] = args.image_skip
    return TrainConfig(**fields)


def _stream(volumes, cfg):
    from bids_enhance.training import NumpyPatchStream, PairedPatchStream, geometry_for

    try:
        import torchio  # noqa: F401

        cls = PairedPatchStream
    except ImportError:
        cls = NumpyPatchStream
    return cls(volumes, degradation=cfg.degradation, geometry=geometry_for(cfg), seed=cfg.seed,
               realisations=cfg.realisations, samples_per_volume=cfg.samples_per_volume,
               queue_length=cfg.queue_length, background_weight=cfg.background_weight)


def probe_throughput(volumes, cfg, *, phase: str, steps: int = 8, warm: int = 3) -> float:
    """Iterations per second of ``phase`` (``"l1"`` or ``"adversarial"``), from a throw-away
    trainer on real batches (first ``warm`` steps untimed: cuDNN autotuning, compilation)."""
    import torch

    from bids_enhance.training import build_trainer
    from bids_enhance.training.ddp import DistributedContext

    ctx = DistributedContext.from_env(cfg.device)
    trainer = build_trainer(cfg, context=ctx)
    stream = _stream(volumes, cfg)
    first = 0 if phase == "l1" else trainer.config.warmup_iterations
    trainer.train(True)
    t0 = None
    for i in range(warm + steps):
        if i == warm:
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            t0 = time.perf_counter()
        source, target = stream.next_batch(cfg.batch_size)
        trainer.train_step(source, target, first + i)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    rate = steps / (time.perf_counter() - t0)
    del trainer
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()
    ctx.close()
    LOGGER.info("probe %s: %.2f it/s (batch %d, patch %d³)", phase, rate, cfg.batch_size,
                cfg.patch_size)
    return rate


def _budget_iterations(rate: float, minutes: float, *, reserve_s: float) -> int:
    return max(int(rate * max(minutes * 60.0 - reserve_s, 5.0)), 10)


def run_stage(name: str, args, train_vols, val_vols, *, iterations: int, warmup: int,
              adversarial: int, resume: Path | None) -> dict:
    """Train (or continue) one model in ``<work>/<name>``; returns the TrainingResult dict."""
    from bids_enhance.training import build_trainer, fit
    from bids_enhance.training.ddp import DistributedContext
    from bids_enhance.training.validation import make_default_evaluator

    cfg = _config(name, args, iterations=iterations, warmup=warmup, adversarial=adversarial)
    out_dir = args.work / name
    if out_dir.exists() and resume is None:
        shutil.rmtree(out_dir)  # a fresh run: no stale checkpoint to be mistaken for this one
    ctx = DistributedContext.from_env(cfg.device)
    try:
        trainer = build_trainer(cfg, context=ctx)
        stream = _stream(train_vols, trainer.config)
        evaluate = make_default_evaluator(trainer, val_vols)
        command = ["python", "benchmarks/train_default_weights.py", *sys.argv[1:]]
        LOGGER.info("%s: %d iterations (%d L1 warm-up), %s, stream %s", name, iterations,
                    warmup, cfg.device, type(stream).__name__)
        from bids_enhance.image.intensity import ROBUST_PERCENTILE

        result = fit(trainer, stream, out_dir=out_dir, evaluate=evaluate, resume=resume,
                     normalisation={"method": "robust-max-scale",
                                    "percentile": ROBUST_PERCENTILE,
                                    "function": "bids_enhance.image.intensity.normalise"},
                     training_command=command, progress=False)
    finally:
        ctx.close()
    return result.to_dict()


def evaluate_held_out(checkpoint: Path, task: str, npz_dir: Path, *, device: str, seed: int,
                      crop: int | None) -> list[dict]:
    """The model and the interpolation baselines on the whole held-out volumes, in the format of
    :class:`bids_enhance.interfaces.training.CompareToReference` (for the model card)."""
    from bids_enhance.degrade import degrade
    from bids_enhance.image.intensity import normalise
    from bids_enhance.image.mask import head_mask
    from bids_enhance.inference import run_checkpoint, upsample_baseline
    from bids_enhance.metrics.quality import evaluate
    from bids_enhance.training.seeding import numpy_generator

    comparisons = []
    for name in HELD_OUT:
        with np.load(npz_dir / f"{name}.npz") as npz:
            data = _central_crop(npz["data"].astype(np.float32), crop)
            affine = npz["affine"].astype(np.float64)
        hr, _ = normalise(data[tuple(slice(0, n - n % 2) for n in data.shape)])
        lr, lr_affine, _ = degrade(hr, affine, steps=PRESETS[task],
                                   rng=numpy_generator(seed, "held-out", name))
        mask = head_mask(hr)
        out, out_affine, info = run_checkpoint(checkpoint, lr, lr_affine, device=device,
                                               consistency="measure")
        if out.shape != hr.shape or not np.allclose(out_affine, affine, atol=1e-5):
            raise RuntimeError(f"{name}: the x2 output does not lie on the reference grid")
        row = {"label": f"t1_highres/{name}.nii.gz",
               "protocol": "reference / its 99.9th percentile in the head mask; metrics in the "
                           "head mask; 3D SSIM (Gaussian σ 1.5)",
               "enhanced": evaluate(hr, out, mask=mask), "baselines": {},
               "consistency_rmse_percent": info["consistency"]["rmse_percent"],
               "inference_seconds": info.get("inference_seconds")}
        for kind in ("trilinear", "cubic", "kspace"):
            base, _ = upsample_baseline(lr, lr_affine, kind=kind, method="box")
            row["baselines"][kind] = evaluate(hr, base, mask=mask)
        LOGGER.info("held out %s: model PSNR %.2f dB, cubic %.2f dB", name,
                    row["enhanced"]["psnr"], row["baselines"]["cubic"]["psnr"])
        comparisons.append(row)
    return comparisons


def ship(name: str, result: dict, comparisons: list[dict], args, version: str,
         manifest: dict) -> Path:
    """``<out>/ship/<name>/``: checkpoint.pt, model cards, losses — nothing else."""
    from bids_enhance.training.card import build_model_card, render_markdown
    from bids_enhance.utils import dump_json

    src = args.work / name
    dest = args.out / "ship" / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(src / "checkpoint.pt", dest / "checkpoint.pt")
    (dest / "checkpoint.pt").chmod(0o644)  # the package is shared, whatever the umask
    sha = _sha256(dest / "checkpoint.pt")
    if sha != result["checkpoint_sha256"]:
        raise RuntimeError(f"{dest / 'checkpoint.pt'} changed while copying")
    for extra in ("losses.csv", "validation.csv", "losses.png"):
        if (src / extra).is_file():
            shutil.copy2(src / extra, dest / extra)
    origin = manifest.get("volumes", {})
    card = build_model_card(
        name=name, result=result, comparisons=comparisons,
        train_sources=[f"t1_highres/{v}.nii.gz — {SOURCES.get(v)}; sha256 "
                       f"{origin.get(v, {}).get('source_sha256')}" for v in TRAINING],
        val_sources=[f"t1_highres/{v}.nii.gz — {SOURCES.get(v)}" for v in HELD_OUT],
        command=result.get("config", {}).get("command") or
        ["python", "benchmarks/train_default_weights.py", *sys.argv[1:]])
    card["description"] = DESCRIPTIONS[name]
    card["software"]["bids_enhance"] = version
    card["smoke_test"] = bool(args.smoke)
    (dest / "model_card.json").write_text(dump_json(card))
    (dest / "model_card.md").write_text(render_markdown(card))
    return dest


def _summary(args, shipped: dict[str, dict]) -> None:
    from bids_enhance.utils import dump_json

    lines = ["# Default weights: training summary", "",
             f"Command: `python benchmarks/train_default_weights.py {' '.join(sys.argv[1:])}`",
             "", "| model | iterations | wall time (s) | it/s | held-out PSNR model / cubic (dB) "
             "| gain over cubic (dB) | SSIM model / cubic |", "|---|---|---|---|---|---|---|"]
    for name, info in shipped.items():
        ev = info["card"]["held_out_evaluation"]
        means = ev.get("mean", {})
        gain = (ev.get("psnr_gain_over_cubic_db") or {}).get("mean")
        lines.append(
            f"| {name} | {info['card']['training']['iterations']} | "
            f"{info['card']['training']['wall_time_s']:.0f} | "
            f"{info['card']['training']['iterations_per_s']:.2f} | "
            f"{means.get('model', {}).get('psnr', float('nan')):.2f} / "
            f"{means.get('cubic', {}).get('psnr', float('nan')):.2f} | "
            f"{gain if gain is None else f'{gain:+.2f}'} | "
            f"{means.get('model', {}).get('ssim', float('nan')):.4f} / "
            f"{means.get('cubic', {}).get('ssim', float('nan')):.4f} |")
    lines += ["", "Copy `ship/<name>/` to `bids_enhance/data/models/<name>/` (the `superres` "
              "step loads `gan3p_x2`, `superres-denoise` loads `disgan_x2`; `gan3p_l1_x2` is "
              "available with `--checkpoint superres=…`)."]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    (args.out / "summary.json").write_text(dump_json({n: {"card": i["card"], "path": str(
        i["path"])} for n, i in shipped.items()}))


def train(args) -> int:
    import torch

    sys.path.insert(0, str(ROOT))
    version = _package_version()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        handlers=[logging.StreamHandler(sys.stdout),
                                  logging.FileHandler(args.out / "train.log")], force=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        LOGGER.error("--device %s but no CUDA device is visible", args.device)
        return 2
    manifest_path = args.npz_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    crop = args.crop or (64 if args.smoke else None)
    train_vols = load_volumes(args.npz_dir, TRAINING, crop=crop)
    val_vols = load_volumes(args.npz_dir, HELD_OUT, crop=crop)
    LOGGER.info("bids_enhance %s, torch %s, device %s; training on %s; held out %s", version,
                torch.__version__, args.device, ", ".join(TRAINING), ", ".join(HELD_OUT))
    shipped: dict[str, dict] = {}
    summary_file = args.out / "summary.json"
    if summary_file.is_file():  # models shipped by an earlier invocation (one per command)
        for name, info in json.loads(summary_file.read_text()).items():
            shipped[name] = {"card": info["card"], "path": Path(info["path"])}

    for name in args.models:
        task = TASKS[name]
        if args.iterations:
            total = args.iterations
        else:
            probe_cfg = _config(name, args, iterations=10**6,
                                warmup=10**6 if name == "gan3p_l1_x2" else 0,
                                adversarial=10**6)
            phase = "l1" if name == "gan3p_l1_x2" else "adversarial"
            rate = probe_throughput(train_vols, probe_cfg, phase=phase)
            if name == "disgan_x2":  # warm-up steps are faster: weight the two phases
                l1_rate = probe_throughput(train_vols, _config(
                    name, args, iterations=10**6, warmup=10**6, adversarial=1), phase="l1")
                w = args.disgan_warmup
                rate = 1.0 / (w / l1_rate + (1 - w) / rate)
            total = _budget_iterations(rate, args.budget_min, reserve_s=args.reserve_s)
        resume = None
        if name == "gan3p_l1_x2":
            iterations, warmup, adversarial = total, total, max(total, 1)
        elif name == "gan3p_x2":
            base = args.work / "gan3p_l1_x2" / "checkpoint.pt"
            if not base.is_file():
                LOGGER.error("gan3p_x2 continues gan3p_l1_x2: train that first (%s missing)",
                             base)
                return 2
            from bids_enhance.models import read_checkpoint

            done = int(read_checkpoint(base)["extra"]["iteration"])
            iterations, warmup, adversarial = done + total, done, total
            resume = base
            # continue in a copy, so gan3p_l1_x2's own directory stays as it was shipped
            target = args.work / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(base.parent, target)
            resume = target / "checkpoint.pt"
        else:
            warmup = int(round(args.disgan_warmup * total))
            iterations, adversarial = total, max(total - warmup, 1)
        result = run_stage(name, args, train_vols, val_vols, iterations=iterations,
                           warmup=warmup, adversarial=adversarial, resume=resume)
        comparisons = evaluate_held_out(args.work / name / "checkpoint.pt", task, args.npz_dir,
                                        device=args.device, seed=args.seed, crop=crop)
        dest = ship(name, result, comparisons, args, version, manifest)
        card = json.loads((dest / "model_card.json").read_text())
        shipped[name] = {"card": card, "path": dest}
        _summary(args, shipped)
        LOGGER.info("%s shipped to %s (sha256 %s)", name, dest, card["checkpoint"]["sha256"])
    LOGGER.info("summary: %s", args.out / "summary.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prep", help="convert the NIfTI volumes to .npz (needs nibabel)")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    p.add_argument("--out", type=Path, default=NPZ_DIR)
    t = sub.add_parser("train", help="train, evaluate and ship the models (GPU)")
    t.add_argument("--npz-dir", type=Path, default=NPZ_DIR)
    t.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "default_weights")
    t.add_argument("--work", type=Path, default=None,
                   help="training directories (resumable state); default <out>/runs")
    t.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    t.add_argument("--device", default="cuda")
    t.add_argument("--budget-min", type=float, default=7.0,
                   help="minutes of training per model (iterations sized by a timed probe)")
    t.add_argument("--reserve-s", type=float, default=60.0,
                   help="seconds of each budget kept for validation and checkpoints")
    t.add_argument("--iterations", type=int, default=None, help="fixed iterations per stage")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--patch-size", type=int, default=64, help="HR patch edge (LR: half)")
    t.add_argument("--samples-per-volume", type=int, default=32)
    t.add_argument("--realisations", type=int, default=4, help="noise draws per volume (DISGAN)")
    t.add_argument("--loss-preset", choices=("thesis", "released-code"),
                   default="released-code",
                   help="generator loss weights (METHODS.md); released-code = L1-dominated")
    t.add_argument("--lr-schedule", choices=("constant", "cosine"), default="cosine")
    t.add_argument("--disgan-warmup", type=float, default=0.3,
                   help="share of DISGAN's iterations spent in the L1 warm-up")
    t.add_argument("--validations", type=int, default=5, help="validations during each stage")
    t.add_argument("--validation-crop", type=int, default=96)
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--compile", action="store_true", help="torch.compile the networks")
    t.add_argument("--image-skip", action=argparse.BooleanOptionalAction, default=True,
                   help="generator learns the residual over trilinear x2 (RRDBGenerator "
                        "image_skip): converges much faster in a short GPU budget")
    t.add_argument("--crop", type=int, default=None,
                   help="central crop of every volume (voxels per axis); --smoke: 64")
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--seed", type=int, default=20251127)
    t.add_argument("--smoke", action="store_true",
                   help="tiny networks, 64³ crops, CPU: proves the script runs end to end")
    args = parser.parse_args(argv)
    if args.command == "prep":
        prep(args.data_dir, args.out)
        return 0
    args.work = args.work or args.out / "runs"
    if args.smoke:
        args.device = "cpu" if args.device == "cuda" else args.device
        args.batch_size = min(args.batch_size, 2)
        args.patch_size = min(args.patch_size, 16)
        args.samples_per_volume = min(args.samples_per_volume, 4)
        args.validation_crop = min(args.validation_crop, 32)
        args.log_every = min(args.log_every, 2)
        args.realisations = min(args.realisations, 2)
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
