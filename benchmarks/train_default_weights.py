#!/usr/bin/env python
"""Train the default weights of bids_enhance on one GPU: x2 super-resolution models ready to copy
into ``bids_enhance/data/models/``.

Two steps, on two machines:

1. ``prep`` (CPU side, needs nibabel): convert the real T1w volumes of
   ``../shared/data/t1_highres`` (next to the checkout) into compressed ``.npz`` files (raw voxel values in their
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
import os
import shutil
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: the project's shared data, found from the checkout (``<repo>/../shared/data``), never by an
#: absolute path; ``BIDS_ENHANCE_SHARED_DATA`` overrides it
SHARED_DATA = Path(os.environ.get("BIDS_ENHANCE_SHARED_DATA", ROOT.parent / "shared" / "data"))
DATA_DIR = SHARED_DATA / "t1_highres"
NPZ_DIR = ROOT / "benchmarks" / "results" / "t1_highres_npz"
TRAINING = ("brainchop_T1w_1mm", "niivue_T1wGd_brain_1mm", "hanke_T1w_0.67mm")
HELD_OUT = ("niivue_otsu_T1w_1mm", "arc2017_T1w_1mm")
#: the seed of the held-out heads' degradations (``ship --seed``'s default; the model cards)
HELD_OUT_SEED = 20251127
#: the learned denoiser's split: every volume of benchmarks/denoise.py's T1w/T2w/FLAIR rows is
#: held out (three T1w, one T2w with skull, the FLAIR); it trains on the other two T1w heads,
#: the brain-extracted T2w and twelve IXI heads (2 mm, another scanner; subject variety)
IXI_DENOISE = ("IXI013-HH-1212_T1", "IXI014-HH-1236_T1", "IXI015-HH-1258_T1",
               "IXI033-HH-1259_T1", "IXI034-HH-1260_T1", "IXI039-HH-1261_T1",
               "IXI048-HH-1326_T1", "IXI049-HH-1358_T1", "IXI051-HH-1328_T1",
               "IXI052-HH-1343_T1", "IXI056-HH-1327_T1", "IXI057-HH-1342_T1")
DENOISE_TRAINING = ("brainchop_T1w_1mm", "hanke_T1w_0.67mm", "arcM2208_T2w_brain_1mm",
                    *IXI_DENOISE)
DENOISE_HELD_OUT = ("niivue_otsu_T1w_1mm", "arc2017_T1w_1mm", "niivue_T1wGd_brain_1mm",
                    "arcM2265_T2w_1mm", "niivue_FLAIR_brain_1mm")
#: the learned denoiser's ≤ 1 mm training heads (its split without the IXI heads)
DENOISE_TRAINING_1MM = tuple(v for v in DENOISE_TRAINING if v not in IXI_DENOISE)
#: the superres/motion training heads plus two T2w and a FLAIR at 1 mm (six heads)
TRAINING_1MM = (*TRAINING, "arcM2208_T2w_brain_1mm", "arcM2265_T2w_1mm",
                "niivue_FLAIR_brain_1mm")
#: where each volume lies under ../shared/data
SHARED_FILES = {
    **{n: f"t1_highres/{n}.nii.gz" for n in (*TRAINING, *HELD_OUT)},
    "arcM2208_T2w_brain_1mm": "t2/arcM2208_T2w_brain_1mm.nii.gz",
    "arcM2265_T2w_1mm": "t2/arcM2265_T2w_1mm.nii.gz",
    "niivue_FLAIR_brain_1mm": "flair/niivue_FLAIR_brain_1mm.nii.gz",
    **{n: f"ixi_t1_2mm/{n}.nii.gz" for n in IXI_DENOISE},
}
#: training volumes derived from a shared one: name → (source volume, its contrast), remapped
#: onto proton-density contrast by benchmarks/pd_like.py (no PD scan is offline)
DERIVED_PD = {"arcM2208_T2w_brain_1mm_PDlike": ("arcM2208_T2w_brain_1mm", "T2w"),
              "brainchop_T1w_1mm_PDlike": ("brainchop_T1w_1mm", "T1w")}
SHARED_FILES.update({n: SHARED_FILES[src] for n, (src, _) in DERIVED_PD.items()})
#: where each volume comes from (../shared/data/README.md); recorded in the model cards
SOURCES = {
    "hanke_T1w_0.67mm": "datalad example-dicom-structural via CBICA/NiChart_Project test data "
                        "(licence not stated there)",
    "niivue_otsu_T1w_1mm": "niivue/niivue (BSD-2)",
    "brainchop_T1w_1mm": "neuroneural/brainchop t1_crop.nii.gz (MIT)",
    "arc2017_T1w_1mm": "neurolabusc/allineate benchmark inputs (public-domain notice)",
    "niivue_T1wGd_brain_1mm": "niivue/niivue (figshare dataset per its README)",
    "arcM2208_T2w_brain_1mm": "neurolabusc/T2lesion (MIT)",
    "arcM2265_T2w_1mm": "niivue-demo-images (BSD-2)",
    "niivue_FLAIR_brain_1mm": "niivue/niivue (BSD-2)",
    **{n: "IXI dataset, brain-development.org (CC BY-SA 3.0), 2 mm as redistributed in "
          "CBICA/NiChart_Project" for n in IXI_DENOISE},
}


SOURCES.update({n: f"{SOURCES[src]}, remapped from {contrast} onto PD contrast through its "
                   "three tissue means (benchmarks/pd_like.py)"
                for n, (src, contrast) in DERIVED_PD.items()})


def split_for(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training, held-out) volume names of the model ``name``."""
    return SPLITS.get(name, (TRAINING, HELD_OUT))


MODELS = ("gan3p_l1_x2", "gan3p_x2", "disgan_x2", "motion_gan", "denoise_rician",
          "denoise_odct", "denoise_odct_1mm", "gan3p_l1_x2_ft", "gan3p_l1_x2_ixi",
          "gan3p_l1_x2_1mm", "disgan_x2_odct", "disgan_x2_odct_adv", "denoise_odct_zero",
          "gan3p_x2_1mm", "motion_ddpm", "motion_gan_1mm", "motion_gan_ctx", "gan3p_l1_x2_wide",
          "gan3p_l1_x2_aug", "gan3p_l1_x2_aug2", "denoise_stack", "denoise_stack_sigma",
          "denoise_stack_aug", "denoise_stack_ixi",
          "denoise_stack_ft", "denoise_stack_wiener", "denoise_stack_prinlm",
          "denoise_stack_lowsigma", "denoise_stack_bm", "denoise_stack_pd",
          "denoise_stack_pd_prinlm", "motion_gan_deep", "gan3p_l1_x2_gamma", "gan3p_l1_x2_p64",
          "gan3p_l1_x2_aug3", "gan3p_l1_x2_phase", "gan3p_l1_x2_gamma2",
          "gan3p_l1_x2_mse", "motion_gan_mse", "motion_gan_l1")
TASKS = {"gan3p_l1_x2": "gan3p", "gan3p_x2": "gan3p", "gan3p_x2_1mm": "gan3p",
         "disgan_x2": "disgan",
         "disgan_x2_odct": "disgan", "disgan_x2_odct_adv": "disgan",
         "gan3p_l1_x2_ft": "gan3p", "gan3p_l1_x2_ixi": "gan3p", "gan3p_l1_x2_1mm": "gan3p",
         "gan3p_l1_x2_wide": "gan3p", "gan3p_l1_x2_aug": "gan3p",
         "gan3p_l1_x2_aug2": "gan3p", "gan3p_l1_x2_gamma": "gan3p", "gan3p_l1_x2_aug3": "gan3p",
         "gan3p_l1_x2_p64": "gan3p", "gan3p_l1_x2_phase": "gan3p", "gan3p_l1_x2_gamma2": "gan3p",
         "gan3p_l1_x2_mse": "gan3p", "motion_gan_mse": "motion-gan",
         "motion_gan_l1": "motion-gan",
         "motion_gan": "motion-gan", "motion_ddpm": "motion-ddpm",
         "motion_gan_1mm": "motion-gan", "motion_gan_ctx": "motion-gan",
         "motion_gan_deep": "motion-gan",
         "denoise_rician": "denoise", "denoise_odct": "denoise",
         "denoise_odct_1mm": "denoise", "denoise_odct_zero": "denoise",
         "denoise_stack": "denoise", "denoise_stack_sigma": "denoise",
         "denoise_stack_aug": "denoise", "denoise_stack_ixi": "denoise",
         "denoise_stack_ft": "denoise", "denoise_stack_wiener": "denoise",
         "denoise_stack_prinlm": "denoise", "denoise_stack_lowsigma": "denoise",
         "denoise_stack_bm": "denoise", "denoise_stack_pd": "denoise",
         "denoise_stack_pd_prinlm": "denoise"}
PRESETS = {"gan3p": "sr-box-x2", "disgan": "sr-box-x2-rician-wide", "motion-gan": "motion",
           "motion-ddpm": "motion",
           "denoise": "denoise-rician-wide"}
#: (training, held-out) volumes of the models that do not use TRAINING / HELD_OUT; the 1 mm
#: refinement leaves the 2 mm IXI heads out (another voxel size)
SPLITS = {
    "denoise_rician": (DENOISE_TRAINING, DENOISE_HELD_OUT),
    "denoise_odct": (DENOISE_TRAINING, DENOISE_HELD_OUT),
    "denoise_odct_1mm": (DENOISE_TRAINING_1MM, DENOISE_HELD_OUT),
    "denoise_odct_zero": (DENOISE_TRAINING_1MM, DENOISE_HELD_OUT),
    # the guided refinement: ODCT3D's output and the noisy input (and σ) as channels
    "denoise_stack": (DENOISE_TRAINING_1MM, DENOISE_HELD_OUT),
    "denoise_stack_sigma": (DENOISE_TRAINING_1MM, DENOISE_HELD_OUT),
    "denoise_stack_aug": (DENOISE_TRAINING_1MM, DENOISE_HELD_OUT),
    # do 2 mm heads of more subjects help the learned denoiser? the shipped model trained further
    # on its three heads and six IXI heads (a third of the patches from the 1 mm heads)
    "denoise_stack_ixi": ((*DENOISE_TRAINING_1MM, *IXI_DENOISE[:6]), DENOISE_HELD_OUT),
    # its control: the same continuation on the three heads only (a warm restart, no new data)
    "denoise_stack_ft": (DENOISE_TRAINING_1MM, DENOISE_HELD_OUT),
    # the shipped model trained further with ODCT3D-Wiener as its prefilter, same heads
    "denoise_stack_wiener": (DENOISE_TRAINING_1MM, DENOISE_HELD_OUT),
    # the shipped model (denoise_stack_wiener) trained further with log-uniform noise levels
    "denoise_stack_lowsigma": (DENOISE_TRAINING_1MM, DENOISE_HELD_OUT),
    # the shipped model (denoise_stack_wiener) trained further on BM-DCT's output
    "denoise_stack_bm": (DENOISE_TRAINING_1MM, DENOISE_HELD_OUT),
    # the shipped model trained further on its three heads and two of them remapped onto PD
    # contrast (benchmarks/pd_like.py): the PD stand-ins of the benchmark are held out
    "denoise_stack_pd": ((*DENOISE_TRAINING_1MM, *DERIVED_PD), DENOISE_HELD_OUT),
    # … the same heads, with PRI-NLM's output as a third channel beside BM-DCT's (started from
    # the shipped weights, the new channel's stem weights at zero)
    "denoise_stack_pd_prinlm": ((*DENOISE_TRAINING_1MM, *DERIVED_PD), DENOISE_HELD_OUT),
    # … and PRI-NLM's output as a third channel (started from denoise_stack_wiener)
    "denoise_stack_prinlm": (DENOISE_TRAINING_1MM, DENOISE_HELD_OUT),
    # do the IXI heads help super-resolution? the same continuation of the shipped L1 model
    # with (``_ixi``: 2 mm → 4 mm pairs of twelve more subjects) and without them (``_ft``)
    "gan3p_l1_x2_ixi": ((*TRAINING, *IXI_DENOISE), HELD_OUT),
    # … and with three more 1 mm heads of other contrasts (T2w with and without skull, FLAIR)
    "gan3p_l1_x2_1mm": (TRAINING_1MM, HELD_OUT),
    # the shipped superres model grown by a second RRDB (started as the identity), same heads
    "gan3p_l1_x2_wide": (TRAINING_1MM, HELD_OUT),
    # the shipped superres model trained further on the same heads, each patch pair turned by a
    # random symmetry of the cube (48 views of each patch: does that stand in for more heads?)
    "gan3p_l1_x2_aug": (TRAINING_1MM, HELD_OUT),
    # … and a second warm restart of it, the same recipe (does the augmentation keep paying?)
    "gan3p_l1_x2_aug2": (TRAINING_1MM, HELD_OUT),
    # … and a third, each pair also given a random gamma (its source recomputed as the box
    # average): does a change of contrast stand in for more heads, as other contrasts did?
    "gan3p_l1_x2_gamma": (TRAINING_1MM, HELD_OUT),
    # … its control: the same restart from the same weights (gan3p_l1_x2_aug2) without the gamma
    "gan3p_l1_x2_aug3": (TRAINING_1MM, HELD_OUT),
    # the shipped generator trained further on 64³ patches instead of 32³ (its training view
    # as wide as it sees at inference, fewer borders in each patch), otherwise its recipe
    "gan3p_l1_x2_p64": (TRAINING_1MM, HELD_OUT),
    # the shipped generator trained further with patches cut at any voxel, each input recomputed
    # as the box average of its patch: all 8 phases of the 2×2×2 box grid, where the whole
    # head's box average offers one (8 LR renditions of each head), otherwise its recipe
    "gan3p_l1_x2_phase": (TRAINING_1MM, HELD_OUT),
    # … its control: the same restart from the same weights without the phases
    "gan3p_l1_x2_gamma2": (TRAINING_1MM, HELD_OUT),
    # … and the same restart with the mean squared error as its pixel loss instead of L1
    # (PSNR rewards the conditional mean; L1 keeps the median where the network cannot tell)
    "gan3p_l1_x2_mse": (TRAINING_1MM, HELD_OUT),
    # the shipped motion model trained further with the mean squared error instead of L1 (the
    # recipe of motion_gan_ctx): L1 leaves a ghost the network is unsure of in place
    "motion_gan_mse": (TRAINING_1MM, HELD_OUT),
    # … its L1 twin: the same restart from the same weights with L1 (is the gain the loss's?)
    "motion_gan_l1": (TRAINING_1MM, HELD_OUT),
    # the adversarial stage of the shipped superres model, on its heads
    "gan3p_x2_1mm": (TRAINING_1MM, HELD_OUT),
    # the shipped motion model, trained further on six 1 mm heads
    "motion_gan_1mm": (TRAINING_1MM, HELD_OUT),
    # the shipped motion model trained further on the same heads with 64³ patches (a view as
    # wide as its receptive field, where 32³ patches hid the ghosts' sources); no cube-symmetry
    # augmentation: TorchIO's motion ghosts run along the last array axis only, and turning
    # patches would ask the network to undo them along all three
    "motion_gan_ctx": (TRAINING_1MM, HELD_OUT),
    # the shipped motion model grown by a third RRDB (more capacity, same view and heads)
    "motion_gan_deep": (TRAINING_1MM, HELD_OUT),
    # superres-denoise: the shipped superres model's heads
    "disgan_x2_odct": (TRAINING_1MM, HELD_OUT),
    "disgan_x2_odct_adv": (TRAINING_1MM, HELD_OUT),
}
#: adversarial runs that start from the L1 generator given by ``--init-from`` (fresh critic and
#: feature extractor, their own learning-rate schedule, no warm-up)
ADVERSARIAL_FROM_INIT = ("gan3p_x2", "gan3p_x2_1mm", "disgan_x2_odct_adv")
#: models trained with the pixel loss alone (no adversarial stage)
PIXEL_ONLY = ("motion_gan_1mm", "motion_gan_ctx", "motion_gan_deep", "gan3p_l1_x2_wide",
              "gan3p_l1_x2_aug", "gan3p_l1_x2_aug2", "gan3p_l1_x2_gamma",
              "gan3p_l1_x2_aug3", "gan3p_l1_x2_p64", "gan3p_l1_x2_phase", "gan3p_l1_x2_gamma2",
              "gan3p_l1_x2_mse", "motion_gan_mse", "motion_gan_l1", "gan3p_l1_x2", "gan3p_l1_x2_ft", "gan3p_l1_x2_ixi", "gan3p_l1_x2_1mm",
              "denoise_stack", "denoise_stack_sigma",
              "denoise_stack_aug", "denoise_stack_ixi", "denoise_stack_ft", "denoise_stack_wiener",
              "denoise_stack_prinlm", "denoise_stack_lowsigma", "denoise_stack_bm",
              "denoise_stack_pd", "denoise_stack_pd_prinlm", "denoise_rician", "denoise_odct",
              "denoise_odct_1mm", "denoise_odct_zero")
#: conditional-diffusion models (no generator, no warm-up: one loss from the first iteration)
DIFFUSION = ("motion_ddpm",)
#: a model trained on another preset than its task's
MODEL_PRESETS = {"disgan_x2_odct": "sr-box-x2-rician-wide-odct",
                 "disgan_x2_odct_adv": "sr-box-x2-rician-wide-odct",
                 "denoise_odct": "denoise-rician-wide-odct",
                 "denoise_odct_1mm": "denoise-rician-wide-odct",
                 "denoise_odct_zero": "denoise-rician-wide-odct",
                 "denoise_stack": "denoise-rician-wide-odct-stack",
                 "denoise_stack_sigma": "denoise-rician-wide-odct-stack-sigma",
                 "denoise_stack_aug": "denoise-rician-wide-odct-stack",
                 "denoise_stack_ixi": "denoise-rician-wide-odct-stack",
                 "denoise_stack_ft": "denoise-rician-wide-odct-stack",
                 "denoise_stack_wiener": "denoise-rician-wide-odct-wiener-stack",
                 "denoise_stack_prinlm": "denoise-rician-wide-odct-wiener-stack-prinlm",
                 "denoise_stack_lowsigma": "denoise-rician-logwide-odct-wiener-stack",
                 "denoise_stack_bm": "denoise-rician-wide-blockmatch-stack",
                 "denoise_stack_pd": "denoise-rician-wide-blockmatch-stack",
                 "denoise_stack_pd_prinlm": "denoise-rician-wide-blockmatch-stack-prinlm"}
#: models whose training patches are turned by random symmetries of the cube
AUGMENTED = ("gan3p_l1_x2_aug", "gan3p_l1_x2_aug2", "gan3p_l1_x2_gamma", "gan3p_l1_x2_aug3",
             "gan3p_l1_x2_p64", "gan3p_l1_x2_phase", "gan3p_l1_x2_gamma2",
             "gan3p_l1_x2_mse",
             "denoise_stack_aug",
             "denoise_stack_ixi",
             "denoise_stack_ft",
             "denoise_stack_wiener", "denoise_stack_prinlm", "denoise_stack_lowsigma",
             "denoise_stack_bm", "denoise_stack_pd", "denoise_stack_pd_prinlm")
#: models whose training pairs also get a random gamma (their source recomputed as the box average)
INTENSITY_AUGMENTED = ("gan3p_l1_x2_gamma", "gan3p_l1_x2_p64", "gan3p_l1_x2_phase",
                       "gan3p_l1_x2_gamma2", "gan3p_l1_x2_mse")
#: models trained with the mean squared error as their pixel loss (the others: L1)
MSE_LOSS = ("gan3p_l1_x2_mse", "motion_gan_mse")
#: models whose x2 patches are cut at any voxel, their source recomputed as the box average
PHASE_AUGMENTED = ("gan3p_l1_x2_phase",)
DESCRIPTIONS = {
    "gan3p_l1_x2": "x2 super-resolution, RRDB generator of the three-player GAN after its "
                   "pixel-loss (L1) warm-up only (PSNR-oriented)",
    "gan3p_l1_x2_ft": "x2 super-resolution, RRDB generator (L1 only): the shipped L1 model "
                      "trained further on the same three heads (control of gan3p_l1_x2_ixi)",
    "gan3p_l1_x2_ixi": "x2 super-resolution, RRDB generator (L1 only): the shipped L1 model "
                       "trained further on the three heads plus twelve IXI heads (2 mm → 4 mm)",
    "gan3p_l1_x2_1mm": "x2 super-resolution, RRDB generator of the three-player GAN, pixel-loss "
                       "(L1) stage only (PSNR-oriented): 12000 iterations on three T1w heads, "
                       "then 2000 more on those plus two T2w heads and a FLAIR at 1 mm",
    "gan3p_l1_x2_wide": "x2 super-resolution, RRDB generator of the three-player GAN, pixel-loss "
                        "(L1) stage only: the shipped superres generator grown by more RRDBs "
                        "(each started as the identity) and trained further on its six 1 mm "
                        "heads",
    "gan3p_l1_x2_aug": "x2 super-resolution, RRDB generator of the three-player GAN, pixel-loss "
                       "(L1) stage only: the shipped superres generator trained further on its "
                       "six 1 mm heads, each patch pair turned by a random symmetry of the cube",
    "gan3p_l1_x2_aug2": "x2 super-resolution, RRDB generator of the three-player GAN, pixel-loss "
                        "(L1) stage only: the shipped superres generator (itself trained with "
                        "cube-symmetry augmentation) trained further on its six 1 mm heads, "
                        "each patch pair turned by a random symmetry of the cube",
    "gan3p_l1_x2_gamma": "x2 super-resolution, RRDB generator of the three-player GAN, "
                         "pixel-loss (L1) stage only: the shipped superres generator trained "
                         "further on its six 1 mm heads, each patch pair turned by a random "
                         "symmetry of the cube and given a random gamma (log γ in ±0.3)",
    "gan3p_l1_x2_aug3": "x2 super-resolution, RRDB generator of the three-player GAN, "
                        "pixel-loss (L1) stage only: gan3p_l1_x2_aug2 trained further on its six "
                        "1 mm heads, each patch pair turned by a random symmetry of the cube "
                        "(the control of gan3p_l1_x2_gamma: the same restart without the gamma)",
    "gan3p_l1_x2_p64": "x2 super-resolution, RRDB generator of the three-player GAN, "
                       "pixel-loss (L1) stage only: the shipped superres generator trained "
                       "further on 64³ patches of its six 1 mm heads (cube symmetries and a "
                       "random gamma, as before)",
    "gan3p_l1_x2_phase": "x2 super-resolution, RRDB generator of the three-player GAN, "
                         "pixel-loss (L1) stage only: the shipped superres generator trained "
                         "further on its six 1 mm heads with patches cut at any voxel, each "
                         "input recomputed as the 2×2×2 box average of its patch (all 8 phases "
                         "of the box grid), cube symmetries and a random gamma as before",
    "gan3p_l1_x2_gamma2": "x2 super-resolution, RRDB generator of the three-player GAN, "
                          "pixel-loss (L1) stage only: the shipped superres generator trained "
                          "further on its six 1 mm heads, cube symmetries and a random gamma "
                          "(the control of gan3p_l1_x2_phase: the same restart without the "
                          "phases)",
    "gan3p_l1_x2_mse": "x2 super-resolution, RRDB generator of the three-player GAN, "
                       "pixel-loss stage only, with the mean squared error instead of L1: the "
                       "shipped superres generator trained further on its six 1 mm heads, cube "
                       "symmetries and a random gamma as before",
    "motion_gan_mse": "retrospective motion-artefact correction, the scale-1 generator of the "
                      "three-player GAN: the shipped motion model trained further on the same "
                      "six 1 mm heads and 64³ patches with the mean squared error as its pixel "
                      "loss instead of L1",
    "motion_gan_l1": "retrospective motion-artefact correction, the scale-1 generator of the "
                     "three-player GAN: the shipped motion model (before motion_gan_mse) trained "
                     "further on the same six 1 mm heads and 64³ patches with L1 (the twin of "
                     "motion_gan_mse)",
    "gan3p_x2": "x2 super-resolution, three-player GAN (Wang et al. 2023): L1 warm-up, then "
                "adversarial training with a ResNet-10 perceptual loss",
    "gan3p_x2_1mm": "x2 super-resolution, three-player GAN (Wang et al. 2023): the shipped L1 "
                    "generator (gan3p_l1_x2_1mm), then adversarial training with a relativistic "
                    "critic and a jointly trained ResNet-10 perceptual loss on the same six heads",
    "disgan_x2": "x2 super-resolution with noise removal, DISGAN (Wang et al. 2023)",
    "disgan_x2_odct": "x2 super-resolution with noise removal: ODCT3D (σ estimated) on the "
                      "input grid, then the generator of DISGAN (Wang et al. 2023), initialised "
                      "from the shipped superres model and trained on box-averaged inputs with "
                      "Rician noise of 1-9 % of the robust maximum, filtered by ODCT3D",
    "disgan_x2_odct_adv": "x2 super-resolution with noise removal: ODCT3D (σ estimated), then "
                          "DISGAN (Wang et al. 2023) trained adversarially (3D Haar-wavelet "
                          "U-Net critic, ResNet-10 perceptual loss) from the L1 generator of "
                          "disgan_x2_odct",
    "motion_ddpm": "retrospective motion-artefact correction, conditional diffusion (DDPM "
                   "trained with the ε loss, DDIM sampling) on 2.5D slices: the corrupted slice "
                   "and its two neighbours as the condition, trained on TorchIO-simulated rigid "
                   "motion",
    "motion_gan_1mm": "retrospective motion-artefact correction, the scale-1 generator of the "
                      "three-player GAN: the shipped motion model trained further with the "
                      "pixel loss on six 1 mm heads (three T1w, two T2w, a FLAIR)",
    "motion_gan_ctx": "retrospective motion-artefact correction, the scale-1 generator of the "
                      "three-player GAN: the shipped motion model trained further with the "
                      "pixel loss on the same six 1 mm heads, on 64³ patches (a wider view)",
    "motion_gan_deep": "retrospective motion-artefact correction, the scale-1 generator of the "
                       "three-player GAN: the shipped motion model grown by a third RRDB (which "
                       "starts as the identity) and trained further with the pixel loss on the "
                       "same six 1 mm heads, on 64³ patches",
    "motion_gan": "retrospective motion-artefact correction, three-player GAN with a scale-1 "
                  "generator (thesis), trained on TorchIO-simulated rigid motion",
    "denoise_rician": "noise removal (--denoise-method learned): the scale-1 RRDB generator, "
                      "pixel loss (L1) only, blind to the noise level, trained on Rician noise "
                      "of 1-12 % of the robust maximum on T1w, T2w and IXI heads",
    "denoise_odct": "noise removal (--denoise-method learned): ODCT3D (σ estimated), then the "
                    "scale-1 RRDB generator refining its output, pixel loss (L1), trained on "
                    "Rician noise of 1-12 % of the robust maximum on T1w, T2w and IXI heads",
    "denoise_odct_zero": "noise removal (--denoise-method learned): ODCT3D (σ estimated), then "
                         "the scale-1 RRDB generator refining its output, started as the identity "
                         "(last convolution zeroed), pixel loss (L1), trained on Rician noise of "
                         "1-12 % on the ≤ 1 mm T1w and T2w heads only",
    "denoise_stack": "noise removal (--denoise-method learned): ODCT3D (σ estimated), then the "
                     "scale-1 RRDB generator given ODCT3D's output and the noisy input as two "
                     "channels (blind to σ), adding a residual to ODCT3D's output; pixel loss "
                     "(L1), Rician noise of 1-12 % on the ≤ 1 mm T1w and T2w heads",
    "denoise_stack_sigma": "noise removal (--denoise-method learned): ODCT3D (σ estimated), "
                           "then the scale-1 RRDB generator given ODCT3D's output, the noisy "
                           "input and a map of σ as three channels (conditioned on the "
                           "estimated σ), adding a residual to ODCT3D's output; pixel loss (L1), "
                           "Rician noise of 1-12 % on the ≤ 1 mm T1w and T2w heads",
    "denoise_stack_aug": "noise removal (--denoise-method learned): ODCT3D (σ estimated), then "
                         "the scale-1 RRDB generator given ODCT3D's output and the noisy input "
                         "as two channels (blind to σ), adding a residual to ODCT3D's output; "
                         "pixel loss (L1), Rician noise of 1-12 % on the ≤ 1 mm T1w and T2w "
                         "heads, each patch turned by a random symmetry of the cube",
    "denoise_stack_ixi": "noise removal (--denoise-method learned): ODCT3D (σ estimated), then "
                         "the scale-1 RRDB generator given ODCT3D's output and the noisy input "
                         "as two channels (blind to σ), adding a residual to ODCT3D's output; "
                         "pixel loss (L1), Rician noise of 1-12 % on the ≤ 1 mm T1w and T2w "
                         "heads and six 2 mm IXI T1w heads, each patch turned by a random "
                         "symmetry of the cube",
    "denoise_stack_ft": "noise removal (--denoise-method learned): ODCT3D (σ estimated), then "
                        "the scale-1 RRDB generator given ODCT3D's output and the noisy input "
                        "as two channels (blind to σ), adding a residual to ODCT3D's output; "
                        "the shipped model trained further with the pixel loss (L1) on its "
                        "three ≤ 1 mm heads only (control of denoise_stack_ixi), each patch "
                        "turned by a random symmetry of the cube",
    "denoise_stack_wiener": "noise removal (--denoise-method learned): ODCT3D-Wiener (σ "
                            "estimated), then the scale-1 RRDB generator given its output and "
                            "the noisy input as two channels (blind to σ), adding a residual to "
                            "the filter's output; the shipped model trained further with the "
                            "pixel loss (L1) on its three ≤ 1 mm heads with the new filter, "
                            "each patch turned by a random symmetry of the cube",
    "denoise_stack_bm": "noise removal (--denoise-method learned): BM-DCT, the block-matching "
                        "collaborative filter (σ estimated), then the scale-1 RRDB generator "
                        "given its output and the noisy input as two channels (blind to σ), "
                        "adding a residual to the filter's output; the model trained on "
                        "ODCT3D-Wiener's output trained further with the pixel loss (L1) on "
                        "its three ≤ 1 mm heads with the new filter, each patch turned by a "
                        "random symmetry of the cube",
    "denoise_stack_pd": "noise removal (--denoise-method learned): BM-DCT, the block-matching "
                        "collaborative filter (σ estimated), then the scale-1 RRDB generator "
                        "given its output and the noisy input as two channels (blind to σ), "
                        "adding a residual to the filter's output; the model trained on BM-DCT "
                        "trained further with the pixel loss (L1) on its three ≤ 1 mm heads "
                        "and on two of them remapped onto proton-density contrast, each patch "
                        "turned by a random symmetry of the cube",
    "denoise_stack_pd_prinlm": "noise removal (--denoise-method learned): BM-DCT, the "
                               "block-matching collaborative filter, and PRI-NLM (σ estimated), "
                               "then the scale-1 RRDB generator given BM-DCT's output, the noisy "
                               "input and PRI-NLM's output as three channels (blind to σ), "
                               "adding a residual to BM-DCT's output; the model trained on "
                               "BM-DCT trained further with the pixel loss (L1) on its three "
                               "≤ 1 mm heads and on two of them remapped onto proton-density "
                               "contrast, each patch turned by a random symmetry of the cube",
    "denoise_stack_lowsigma": "noise removal (--denoise-method learned): ODCT3D-Wiener (σ "
                              "estimated), then the scale-1 RRDB generator given its output and "
                              "the noisy input as two channels (blind to σ), adding a residual "
                              "to the filter's output; the shipped model trained further with "
                              "the pixel loss (L1) on its three ≤ 1 mm heads with noise levels "
                              "drawn log-uniformly over 1–12 %, each patch turned by a random "
                              "symmetry of the cube",
    "denoise_stack_prinlm": "noise removal (--denoise-method learned): ODCT3D-Wiener and PRI-NLM "
                            "(σ estimated once), then the scale-1 RRDB generator given both "
                            "outputs and the noisy input as three channels (blind to σ), adding "
                            "a residual to ODCT3D-Wiener's output; denoise_stack_wiener trained "
                            "further with the pixel loss (L1) on its three ≤ 1 mm heads, each "
                            "patch turned by a random symmetry of the cube",
    "denoise_odct_1mm": "noise removal (--denoise-method learned): ODCT3D (σ estimated), then "
                        "the scale-1 RRDB generator refining its output, pixel loss (L1), "
                        "trained on Rician noise of 1-12 % on the ≤ 1 mm T1w and T2w heads only",
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
    manifest = {"training": list(TRAINING), "held_out": list(HELD_OUT),
                "denoise_training": list(DENOISE_TRAINING),
                "denoise_held_out": list(DENOISE_HELD_OUT), "volumes": {}}
    for name in dict.fromkeys((*TRAINING, *HELD_OUT, *DENOISE_TRAINING, *DENOISE_HELD_OUT)):
        source = data_dir.parent / SHARED_FILES[name]
        img = nib.load(str(source))
        slope, inter = img.header.get_slope_inter()
        if slope not in (None, 1.0) or inter not in (None, 0.0):
            data = img.get_fdata(dtype=np.float32)  # scaled integers: store the real values
        else:  # the stored integers themselves (asanyarray may promote them to float64)
            data = img.dataobj.get_unscaled()
        data = np.asarray(data).reshape(img.shape[:3])
        np.savez_compressed(out / f"{name}.npz", data=data, affine=img.affine)
        manifest["volumes"][name] = {
            "file": f"{name}.npz", "source": SHARED_FILES[name],
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


def _read_volume(npz_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """float32 data and affine of a volume: its ``prep`` .npz, else the shared NIfTI; a
    :data:`DERIVED_PD` volume is its source remapped onto PD contrast."""
    if name in DERIVED_PD:
        from pd_like import remap_to_pd

        source, contrast = DERIVED_PD[name]
        data, affine = _read_volume(npz_dir, source)
        return remap_to_pd(data, contrast=contrast), affine
    if (npz_dir / f"{name}.npz").is_file():
        with np.load(npz_dir / f"{name}.npz") as npz:
            return npz["data"].astype(np.float32), npz["affine"].astype(np.float64)
    import nibabel as nib

    img = nib.load(str(SHARED_DATA / SHARED_FILES[name]))
    return (np.asarray(img.get_fdata(dtype=np.float32)).reshape(img.shape[:3]),
            img.affine.astype(np.float64))


def load_volumes(npz_dir: Path, names, *, crop: int | None = None) -> list:
    """Normalised :class:`~bids_enhance.training.TrainingVolume` s (robust maximum → 1, as the
    app normalises its inputs) of the named volumes."""
    from bids_enhance.image.intensity import normalise
    from bids_enhance.training import TrainingVolume

    out = []
    for name in names:
        data, affine = _read_volume(npz_dir, name)
        data = _central_crop(data, crop)
        normalised, _ = normalise(data)
        out.append(TrainingVolume(subject=name, data=normalised, affine=affine))
    return out


def _config(name: str, args, *, iterations: int, warmup: int, adversarial: int):
    from bids_enhance.training import TrainConfig

    task = TASKS[name]
    fields = dict(
        task=task, iterations=iterations, warmup_iterations=warmup,
        instance_noise_iterations=max(adversarial, 1),
        instance_noise_start=args.instance_noise_start, batch_size=args.batch_size,
        patch_size=args.patch_size, degradation=MODEL_PRESETS.get(name, PRESETS[task]),
        seed=args.seed,
        realisations=(args.realisations if task in ("disgan", "motion-gan", "motion-ddpm",
                                                    "denoise") else 1),
        samples_per_volume=args.samples_per_volume, queue_length=args.samples_per_volume,
        loss_preset=args.loss_preset, lr_schedule=args.lr_schedule, device=args.device,
        compile=args.compile,
        checkpoint_every=args.checkpoint_every or max(iterations // 4, 1),
        validate_every=max(iterations // args.validations, 1), log_every=args.log_every,
        validation_crop=args.validation_crop,
        augment=getattr(args, "augment", False) or name in AUGMENTED,
        intensity_augment=name in INTENSITY_AUGMENTED,
        phase_augment=name in PHASE_AUGMENTED,
        pixel_loss="mse" if name in MSE_LOSS else "l1")
    if args.lr is not None:
        fields["lr"] = args.lr
    from bids_enhance.models.registry import size_preset

    fields.update(size_preset(args.size, task))
    if task == "motion-ddpm":
        fields["ddim_steps"] = args.ddim_steps
        if args.smoke:
            fields["unet"] = {"features": 8, "channel_mults": (1, 2), "num_res_blocks": 1,
                              "attention": False, "norm_groups": 4}
        return TrainConfig(**fields)
    if args.smoke:
        fields.update({k: dict(v) for k, v in SMOKE_NETWORKS.items()})
        if task in ("motion-gan", "denoise"):
            fields["generator"]["space_to_depth"] = args.size == "compact"
    if args.image_skip is not None:
        fields["generator"]["image_skip"] = args.image_skip
    if getattr(args, "num_blocks", None) is not None:
        fields["generator"]["num_blocks"] = args.num_blocks
    fields["generator"].setdefault("image_skip", True)
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
               queue_length=cfg.queue_length, background_weight=cfg.background_weight,
               augment=cfg.augment,
               intensity_augment=cfg.intensity_augment, phase_augment=cfg.phase_augment)


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


def _init_generator(trainer, checkpoint: Path) -> None:
    """Start the generator from another run's weights (same architecture): DISGAN from the
    super-resolution generator, which already knows the x2 geometry, so that the CPU budget goes
    to learning the noise rather than the upsampling again."""
    from bids_enhance.models import read_checkpoint
    from bids_enhance.training.engine import unwrap

    payload = read_checkpoint(checkpoint)
    net = unwrap(trainer.main_model)
    grown = grow_state_dict(net, payload["state_dict"])
    if grown is None:
        raise SystemExit(f"--init-from {checkpoint}: its generator ({payload['arch_kwargs']}) "
                         f"does not match this run's ({trainer.arch_kwargs})")
    state, added = grown
    net.load_state_dict(state)
    if added:
        LOGGER.info("generator grown by RRDBs %s, each started as the identity", added)
    LOGGER.info("generator initialised from %s (iteration %s, sha256 %s)", checkpoint,
                (payload.get("extra") or {}).get("iteration"), payload["sha256"][:12])


def grow_state_dict(net, theirs: dict) -> tuple[dict, list[int]] | None:
    """``theirs`` (a generator's state dict) as a state dict for ``net``, or None if they do not
    fit. ``net`` may have more RRDBs at the end of its body than ``theirs`` (a grown network):
    every other tensor must match in shape. The extra RRDBs keep ``net``'s initialisation except
    the last convolution of each residual dense block, which is zeroed; such an RRDB computes
    ``(1 + s)·x`` (``s`` its residual scale), so the trunk convolution's weights are divided by
    ``(1 + s)`` per extra RRDB and the grown network computes exactly what the smaller one did.
    ``net`` may also take more input channels than ``theirs`` (appended after them): the stem's
    weights of those channels start at zero, so they change nothing until trained.
    Returns ``(state_dict, indices of the added RRDBs)``."""
    import re

    import torch

    mine = net.state_dict()
    pattern = re.compile(r"body\.(\d+)\.")
    blocks = {int(m.group(1)) for k in theirs if (m := pattern.match(k))}
    extra = [k for k in mine if k not in theirs]
    theirs = dict(theirs)
    stem, my_stem = theirs.get("conv_first.weight"), mine.get("conv_first.weight")
    if (stem is not None and my_stem is not None and my_stem.shape[1] > stem.shape[1]
            and my_stem[:, :stem.shape[1]].shape == stem.shape):
        # more input channels (a prefilter stack with a further channel, appended last): the
        # stem's weights of the new channels start at zero, so the output is unchanged
        grown_stem = torch.zeros_like(my_stem)
        grown_stem[:, :stem.shape[1]] = stem
        theirs["conv_first.weight"] = grown_stem
    if any(k not in mine or mine[k].shape != v.shape for k, v in theirs.items()):
        return None
    added = sorted({int(m.group(1)) for k in extra if (m := pattern.match(k))})
    if any(not pattern.match(k) for k in extra) or (added and blocks and
                                                     min(added) <= max(blocks)):
        return None
    state = {k: v.clone() for k, v in mine.items()}
    state.update({k: v.clone() for k, v in theirs.items()})
    for k in extra:
        if re.match(r"body\.\d+\.rdb\d\.conv5\.", k):
            state[k] = torch.zeros_like(state[k])
    if added:
        scale = 1.0 + float(net.body[added[0]].residual_scale)
        state["conv_body.weight"] = state["conv_body.weight"] / scale ** len(added)
    return state, added


def _zero_residual(trainer) -> None:
    """Zero the generator's last convolution: with the image skip, a fresh network then returns
    its input (the cubic upsampling, or the prefilter's output) exactly, so a refinement starts
    at its baseline's level instead of first unlearning a random residual."""
    import torch

    from bids_enhance.training.engine import unwrap

    net = unwrap(trainer.main_model)
    if not getattr(net, "image_skip", False):
        raise SystemExit("--zero-residual needs a generator with the image skip")
    with torch.no_grad():
        net.conv_last.weight.zero_()
        net.conv_last.bias.zero_()
    LOGGER.info("generator's last convolution zeroed: it starts as the identity of its input")


def run_stage(name: str, args, train_vols, val_vols, *, iterations: int, warmup: int,
              adversarial: int, resume: Path | None) -> dict:
    """Train (or continue) one model in ``<work>/<name>``; returns the TrainingResult dict."""
    import torch

    from bids_enhance.training import build_trainer, fit
    from bids_enhance.training.ddp import DistributedContext
    from bids_enhance.training.validation import make_default_evaluator

    cfg = _config(name, args, iterations=iterations, warmup=warmup, adversarial=adversarial)
    out_dir = args.work / name
    run_info = {"threads": args.threads or torch.get_num_threads(), "size": args.size,
                "device": cfg.device, "command": sys.argv[1:]}
    if resume is None and args.resume and (out_dir / "checkpoint_state.pt").is_file():
        resume = out_dir / "checkpoint.pt"  # an interrupted run: continue it exactly
        LOGGER.info("%s: resuming the interrupted run in %s", name, out_dir)
    if out_dir.exists() and resume is None:
        shutil.rmtree(out_dir)  # a fresh run: no stale checkpoint to be mistaken for this one
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "run_info.json").write_text(json.dumps(run_info, indent=2) + "\n")
    ctx = DistributedContext.from_env(cfg.device)
    try:
        trainer = build_trainer(cfg, context=ctx)
        if resume is None and getattr(args, "init_from", None):
            _init_generator(trainer, args.init_from)
        if resume is None and getattr(args, "zero_residual", False):
            _zero_residual(trainer)
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
                     training_command=command, progress=False, stop_at=args.stop_at,
                     time_budget_s=None if args.max_minutes is None else 60 * args.max_minutes)
    finally:
        ctx.close()
    return result.to_dict()


def held_out_input(npz_dir: Path, name: str, preset: str, *, seed: int = HELD_OUT_SEED,
                   crop: int | None = None):
    """``(hr, affine, degraded, degraded_affine, records)``: the held-out head ``name`` as the
    model cards see it — (centrally cropped,) cut to even sizes, normalised, then degraded by
    ``preset`` with a generator drawn from ``seed`` and the head's name."""
    from bids_enhance.degrade import degrade
    from bids_enhance.image.intensity import normalise
    from bids_enhance.training.seeding import numpy_generator

    data, affine = _read_volume(npz_dir, name)
    data = _central_crop(data, crop)
    hr, _ = normalise(data[tuple(slice(0, n - n % 2) for n in data.shape)])
    degraded, degraded_affine, records = degrade(hr, affine, steps=preset,
                                                 rng=numpy_generator(seed, "held-out", name))
    return hr, affine, degraded, degraded_affine, records


def evaluate_held_out(checkpoint: Path, task: str, npz_dir: Path, *, device: str, seed: int,
                      crop: int | None, cache: Path | None = None) -> list[dict]:
    """The model and its baselines on the whole held-out volumes, in the format of
    :func:`bids_enhance.metrics.comparison.compare_to_reference` (for the model card).

    x2 tasks: against trilinear, cubic B-spline and zero-filled k-space interpolation of the
    degraded input; ``motion-gan``/``motion-ddpm``: against the motion-corrupted input itself
    (``corrupted``). ``cache``: a JSON file of the classical baselines' metrics for
    ``denoise`` (see :class:`BaselineCache`).
    The degradation of each head is drawn from the seed and the head's name, so every model
    and every rerun sees the same inputs."""
    from bids_enhance.image.mask import head_mask
    from bids_enhance.inference import run_checkpoint, upsample_baseline
    from bids_enhance.metrics.comparison import PROTOCOL
    from bids_enhance.metrics.quality import evaluate

    if task == "denoise":
        return evaluate_denoiser(checkpoint, npz_dir, device=device, seed=seed, crop=crop,
                                 cache=cache)
    if task == "disgan":
        return evaluate_superres_denoiser(checkpoint, npz_dir, device=device, seed=seed,
                                          crop=crop)
    comparisons = []
    for name in HELD_OUT:
        hr, affine, degraded, lr_affine, records = held_out_input(npz_dir, name, PRESETS[task],
                                                                  seed=seed, crop=crop)
        mask = head_mask(hr)
        x2 = task not in ("motion-gan", "motion-ddpm")
        out, out_affine, info = run_checkpoint(checkpoint, degraded, lr_affine, device=device,
                                               consistency="measure" if x2 else None)
        if out.shape != hr.shape or not np.allclose(out_affine, affine, atol=1e-5):
            raise RuntimeError(f"{name}: the output does not lie on the reference grid")
        row = {"label": f"t1_highres/{name}.nii.gz", "protocol": PROTOCOL,
               "degradation": {"preset": PRESETS[task], "records": records},
               "enhanced": evaluate(hr, out, mask=mask), "baselines": {},
               "inference_seconds": info.get("seconds")}
        if x2:
            row["consistency_rmse_percent"] = info["consistency"]["rmse_percent"]
            for kind in ("trilinear", "cubic", "kspace"):
                base, _ = upsample_baseline(degraded, lr_affine, kind=kind, method="box")
                row["baselines"][kind] = evaluate(hr, base, mask=mask)
            reference = "cubic"
        else:
            row["baselines"]["corrupted"] = evaluate(hr, degraded, mask=mask)
            reference = "corrupted"
        LOGGER.info("held out %s: model PSNR %.2f dB, %s %.2f dB", name,
                    row["enhanced"]["psnr"], reference, row["baselines"][reference]["psnr"])
        comparisons.append(row)
    return comparisons


#: noise levels (% of the robust maximum) of the learned denoiser's card, as benchmarks/denoise.py
DENOISE_LEVELS = (3, 6, 9)


class BaselineCache:
    """The metrics of the classical baselines of a model card, kept in a JSON file so that the
    cards of several candidate models (which share their held-out inputs) run PRI-NLM on a whole
    head once, not once per card. An entry's key is the method, the sha256 of the noisy input
    and of the reference and a fingerprint of the classical filters' source code, so a changed
    input or filter is computed afresh, never read stale. ``path=None``: no cache."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries = (json.loads(path.read_text()) if path is not None and path.is_file()
                        else {})
        classical = sorted((ROOT / "bids_enhance" / "classical").glob("*.py"))
        self.code = hashlib.sha256(b"".join(f.read_bytes() for f in classical)).hexdigest()[:16]

    def key(self, method: str, noisy: np.ndarray, clean: np.ndarray) -> str:
        def digest(a):
            return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]
        return f"{method}:{digest(noisy)}:{digest(clean)}:{self.code}"

    def get(self, method: str, noisy, clean, compute) -> dict:
        key = self.key(method, noisy, clean)
        if key not in self.entries:
            self.entries[key] = compute()
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_name(self.path.name + ".tmp")
                tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True))
                tmp.replace(self.path)
        return self.entries[key]


def evaluate_denoiser(checkpoint: Path, npz_dir: Path, *, device: str, seed: int,
                      crop: int | None, cache: Path | None = None) -> list[dict]:
    """The learned denoiser on its whole held-out heads at 3, 6 and 9 % Rician noise, against
    the noisy input, PRI-NLM and ODCT3D, every method estimating σ as a participant run does
    (benchmarks/denoise.py gives every method the true σ instead), in the format of
    :func:`evaluate_held_out`."""
    from bids_enhance.classical import denoise
    from bids_enhance.degrade import degrade
    from bids_enhance.image.intensity import normalise
    from bids_enhance.image.mask import head_mask
    from bids_enhance.inference.learned import learned_denoise
    from bids_enhance.metrics.quality import evaluate
    from bids_enhance.training.seeding import numpy_generator

    baselines = BaselineCache(cache)
    comparisons = []
    for name in DENOISE_HELD_OUT:
        data, affine = _read_volume(npz_dir, name)
        clean, _ = normalise(_central_crop(data, crop))
        mask = head_mask(clean)
        for level in DENOISE_LEVELS:
            preset = f"noise-rician-{level}"
            noisy, _, records = degrade(clean, affine, steps=preset,
                                        rng=numpy_generator(seed, "held-out", name, level))
            # the participant run's path: prefilter (if the model refines one, σ estimated),
            # then the network through run_checkpoint
            out, model = learned_denoise(noisy, checkpoint=checkpoint, device=device)
            row = {"label": f"{SHARED_FILES[name]} at {level} %",
                   "protocol": "reference / its 99.9th percentile in the head mask; metrics in "
                               "the head mask; 3D SSIM (Gaussian σ 1.5); Rician noise of the "
                               "given % of the robust maximum; σ estimated by every method, "
                               "as a participant run does",
                   "degradation": {"preset": preset, "records": records},
                   "enhanced": evaluate(clean, np.maximum(out, 0), mask=mask),
                   "baselines": {"noisy": evaluate(clean, noisy, mask=mask)},
                   "inference_seconds": model.get("seconds")}
            for method in ("prinlm", "odct3d"):
                def compute(method=method, noisy=noisy, clean=clean, mask=mask):
                    return evaluate(clean, denoise(noisy, method=method, device=device)[0],
                                    mask=mask)
                row["baselines"][method] = baselines.get(method, noisy, clean, compute)
            LOGGER.info("held out %s at %d %%: model %.2f dB, PRI-NLM %.2f dB, ODCT3D %.2f dB, "
                        "noisy %.2f dB", name, level, row["enhanced"]["psnr"],
                        row["baselines"]["prinlm"]["psnr"], row["baselines"]["odct3d"]["psnr"],
                        row["baselines"]["noisy"]["psnr"])
            comparisons.append(row)
    return comparisons


def evaluate_superres_denoiser(checkpoint: Path, npz_dir: Path, *, device: str, seed: int,
                               crop: int | None) -> list[dict]:
    """A ``superres-denoise`` model on the whole held-out heads: the 2×2×2 box average with
    Rician noise of 3, 6 and 9 % of its robust maximum, against cubic B-spline of the noisy
    input and the ``--enhance denoise superres``-like classical chains PRI-NLM → cubic and
    ODCT3D → cubic (σ estimated, as a participant run does), in the format of
    :func:`evaluate_held_out`. The model runs through ``run_checkpoint`` (the participant path,
    which applies the model's prefilter itself)."""
    from bids_enhance.classical import denoise
    from bids_enhance.degrade import LowResMethod, LowResolution, NoiseMethod, RandomNoise, degrade
    from bids_enhance.image.intensity import normalise
    from bids_enhance.image.mask import head_mask
    from bids_enhance.inference import run_checkpoint, upsample_baseline
    from bids_enhance.metrics.quality import evaluate
    from bids_enhance.training.seeding import numpy_generator

    comparisons = []
    for name in HELD_OUT:
        data, affine = _read_volume(npz_dir, name)
        data = _central_crop(data, crop)
        hr, _ = normalise(data[tuple(slice(0, n - n % 2) for n in data.shape)])
        mask = head_mask(hr)
        for level in DENOISE_LEVELS:
            steps = (LowResolution(method=LowResMethod.BOX),
                     RandomNoise(method=NoiseMethod.RICIAN, fraction=(level / 100, level / 100)))
            noisy, lr_affine, records = degrade(hr, affine, steps=steps,
                                                rng=numpy_generator(seed, "held-out", name, level))
            out, out_affine, info = run_checkpoint(checkpoint, noisy, lr_affine, device=device,
                                                   consistency="measure")
            if out.shape != hr.shape or not np.allclose(out_affine, affine, atol=1e-5):
                raise RuntimeError(f"{name}: the output does not lie on the reference grid")

            def cubic(lr, lr_affine=lr_affine):
                return upsample_baseline(lr, lr_affine, kind="cubic", method="box")[0]

            row = {"label": f"{SHARED_FILES[name]} at {level} %",
                   "protocol": "reference / its 99.9th percentile in the head mask; metrics in "
                               "the head mask; 3D SSIM (Gaussian σ 1.5); input: the 2×2×2 box "
                               "average with Rician noise of the given % of its robust maximum; "
                               "PRI-NLM and ODCT3D with σ estimated",
                   "degradation": {"preset": None, "records": records},
                   "enhanced": evaluate(hr, out, mask=mask),
                   "baselines": {"cubic": evaluate(hr, cubic(noisy), mask=mask)},
                   "inference_seconds": info.get("seconds"),
                   "consistency_rmse_percent": info["consistency"]["rmse_percent"]}
            for method in ("prinlm", "odct3d"):
                filtered, _ = denoise(noisy, method=method, noise_model="rician", device=device)
                row["baselines"][f"{method}_cubic"] = evaluate(hr, cubic(filtered), mask=mask)
            LOGGER.info("held out %s at %d %%: model %.2f dB, PRI-NLM → cubic %.2f dB, ODCT3D → "
                        "cubic %.2f dB, cubic %.2f dB", name, level, row["enhanced"]["psnr"],
                        row["baselines"]["prinlm_cubic"]["psnr"],
                        row["baselines"]["odct3d_cubic"]["psnr"],
                        row["baselines"]["cubic"]["psnr"])
            comparisons.append(row)
    return comparisons


def result_from_run(run_dir: Path, *, threads: int | None) -> dict:
    """What :func:`~bids_enhance.training.fit` returns, rebuilt from a (possibly unfinished)
    training directory: the checkpoint's iteration and config, the state's wall time and
    validation history, the last logged losses — so that a checkpoint can be shipped whenever
    it is good enough, and a run interrupted mid-way still gets an honest card."""
    import csv

    import torch

    from bids_enhance.models import read_checkpoint

    checkpoint = run_dir / "checkpoint.pt"
    meta = read_checkpoint(checkpoint)
    state = torch.load(run_dir / "checkpoint_state.pt", map_location="cpu", weights_only=True)
    if state.get("checkpoint_sha256") != meta["sha256"]:
        raise RuntimeError(f"{run_dir}: checkpoint.pt and checkpoint_state.pt do not belong "
                           "together (an interrupted save?)")
    extra = meta.get("extra") or {}
    config = dict(extra.get("config") or {})
    iteration = int(extra["iteration"])
    final_losses: dict = {}
    losses = run_dir / "losses.csv"
    if losses.is_file():
        with open(losses, newline="") as fh:
            for row in csv.DictReader(fh):
                if int(float(row.get("iteration", 0))) <= iteration:
                    final_losses = {k: float(v) for k, v in row.items()
                                    if k not in ("iteration", "elapsed_s") and v not in ("", None)}
    wall = float(state.get("wall_time_s", 0.0))
    return {
        "task": extra.get("task"), "iterations": iteration,
        "planned_iterations": config.get("iterations"),
        "wall_time_s": wall, "iterations_per_s": iteration / wall if wall > 0 else None,
        "cpu_hours": wall * (threads or 1) / 3600.0 if config.get("device") == "cpu" else None,
        "threads": threads, "device": config.get("device"), "world_size": extra.get("world_size", 1),
        "precision": "fp32" if config.get("device") == "cpu" else config.get("precision"),
        "seed": config.get("seed"), "config": config, "final_losses": final_losses,
        "checkpoint": str(checkpoint), "checkpoint_sha256": meta["sha256"],
        "training_command": meta.get("training_command"),
        "validation_history": list(state.get("history", [])),
    }


def ship(name: str, result: dict, comparisons: list[dict], args, version: str,
         manifest: dict) -> Path:
    """``<out>/ship/<name>/``: checkpoint.pt, model cards, losses — nothing else."""
    from bids_enhance.training.card import build_model_card, render_markdown
    from bids_enhance.utils import dump_json

    src = args.work / name
    shipped_as = getattr(args, "ship_as", None) or name
    dest = args.out / "ship" / shipped_as
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(src / "checkpoint.pt", dest / "checkpoint.pt")
    (dest / "checkpoint.pt").chmod(0o644)  # the package is shared, whatever the umask
    sha = _sha256(dest / "checkpoint.pt")
    if sha != result["checkpoint_sha256"]:
        raise RuntimeError(f"{dest / 'checkpoint.pt'} changed while copying")
    from bids_enhance.training.monitor import _truncate, plot_history, read_csv

    for extra in ("losses.csv", "validation.csv"):  # up to the shipped iteration only
        if (src / extra).is_file():
            shutil.copy2(src / extra, dest / extra)
            _truncate(dest / extra, read_csv(dest / extra)[0], keep_through=result["iterations"])
    if (dest / "losses.csv").is_file():
        plot_history(dest / "losses.csv", dest / "losses.png",
                     validation_csv=dest / "validation.csv"
                     if (dest / "validation.csv").is_file() else None)
    origin = manifest.get("volumes", {})
    training, held_out = split_for(name)
    card = build_model_card(
        name=shipped_as, result=result, comparisons=comparisons,
        train_sources=[f"{SHARED_FILES[v]} — {SOURCES.get(v)}; sha256 "
                       f"{origin.get(v, {}).get('source_sha256') or _source_sha256(v)}"
                       for v in training],
        val_sources=[f"{SHARED_FILES[v]} — {SOURCES.get(v)}" for v in held_out],
        command=result.get("training_command") or
        ["python", "benchmarks/train_default_weights.py", *sys.argv[1:]])
    card["description"] = DESCRIPTIONS[name]
    card["size"] = args.size if hasattr(args, "size") else None
    card["training"]["planned_iterations"] = result.get("planned_iterations")
    card["training"]["threads"] = result.get("threads")
    card["training"]["cpu_hours"] = result.get("cpu_hours")
    card["training"]["run"] = name
    parent = _parent_run(result.get("training_command") or [])
    if parent is not None:
        card["training"]["initialised_from"] = parent
        if result.get("cpu_hours") is not None and parent.get("cpu_hours") is not None:
            card["training"]["cpu_hours_total"] = result["cpu_hours"] + parent["cpu_hours"]
    if result.get("device") == "cpu":
        import platform

        card["training"]["machine"] = f"{platform.machine()} CPU, {os.cpu_count()} cores"
    card["software"]["bids_enhance"] = version
    card["smoke_test"] = bool(args.smoke)
    (dest / "model_card.json").write_text(dump_json(card))
    (dest / "model_card.md").write_text(render_markdown(card))
    return dest


def _source_sha256(name: str) -> str | None:
    """sha256 of a volume's shared NIfTI (volumes read without ``prep``'s manifest)."""
    path = SHARED_DATA / SHARED_FILES[name]
    return _sha256(path) if path.is_file() else None


def _parent_run(command: list[str]) -> dict | None:
    """What a run started with ``--init-from`` continued: the run folder of that checkpoint
    (its iterations, CPU-hours and command, from its training state), or the card of shipped
    weights — beside the file, or in the package's models folder
    (:func:`bids_enhance.inference.weights.models_dir`) with the file's sha256 (a copy kept
    while the package's weights change) — for the model card."""
    if "--init-from" not in command:
        return None
    path = Path(command[command.index("--init-from") + 1])
    path = path if path.is_absolute() else ROOT / path
    folder = path.parent
    shown = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    from bids_enhance.inference.weights import CARD_NAME, models_dir

    card_file = folder / CARD_NAME
    if not card_file.is_file() and not (folder / "checkpoint_state.pt").is_file() \
            and path.is_file():  # a copy of shipped weights: the card with its sha256
        sha = _sha256(path)
        card_file = next((c for c in sorted(models_dir().glob(f"*/{CARD_NAME}"))
                          if (json.loads(c.read_text()).get("checkpoint") or {}).get("sha256")
                          == sha), card_file)
    if card_file.is_file():  # shipped weights: what their card says
        card = json.loads(card_file.read_text())
        t = card.get("training") or {}
        return {"checkpoint": shown, "model": card.get("name"),
                "sha256": (card.get("checkpoint") or {}).get("sha256"),
                "iterations": t.get("iterations"),
                "cpu_hours": t.get("cpu_hours_total") or t.get("cpu_hours"),
                "command": card.get("command") or t.get("command")}
    if not (folder / "checkpoint_state.pt").is_file():
        return {"checkpoint": shown}
    info_file = folder / "run_info.json"
    run_info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    parent = result_from_run(folder, threads=run_info.get("threads") or 1)
    return {"checkpoint": shown, "sha256": parent["checkpoint_sha256"], "iterations": parent["iterations"],
            "cpu_hours": parent["cpu_hours"],
            "command": " ".join(["python", "benchmarks/train_default_weights.py",
                                 *run_info.get("command", [])]) if run_info else None}


def _curve(folder: Path, name: str, threads: int) -> list[str]:
    """Markdown table of the validation during training (central crops of the held-out heads)
    against iterations and CPU time: where the curve flattens, more CPU stops paying."""
    from bids_enhance.training.monitor import read_csv

    header, rows = read_csv(folder / "validation.csv")
    lheader, lrows = read_csv(folder / "losses.csv")
    if not rows or "psnr_gain" not in header or not lrows:
        return []
    elapsed = {int(r[0]): r[lheader.index("elapsed_s")] for r in lrows}
    out = [f"Validation of `{name}` during training (central 96³ of the held-out heads; "
           "baseline as above):", "", "| iteration | CPU-minutes | PSNR (dB) | gain (dB) |",
           "|---|---|---|---|"]
    for r in rows:
        it = int(r[0])
        minutes = elapsed.get(it, float("nan")) * threads / 60.0
        out.append(f"| {it} | {minutes:.0f} | {r[header.index('psnr')]:.2f} | "
                   f"{r[header.index('psnr_gain')]:+.2f} |")
    return out


def _summary(args, shipped: dict[str, dict]) -> None:
    from bids_enhance.utils import dump_json

    lines = ["# Default weights: training summary", "",
             "Held-out heads, whole volume, METHODS.md protocol (head-mask PSNR/SSIM). Baseline: "
             "cubic B-spline for the x2 models, the motion-corrupted input for the motion models.", "",
             "| model | iterations | CPU-hours | wall time (s) | it/s | held-out PSNR model / "
             "baseline (dB) | mean gain (dB) | worst-head gain (dB) | SSIM model / baseline |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, info in shipped.items():
        ev = info["card"]["held_out_evaluation"]
        t = info["card"]["training"]
        means = ev.get("mean", {})
        base = "corrupted" if "corrupted" in means else "cubic"
        gain = ev.get(f"psnr_gain_over_{base}_db") or {}
        cpu = t.get("cpu_hours")
        lines.append(
            f"| {name} | {t['iterations']} | {'n/a' if cpu is None else f'{cpu:.2f}'} | "
            f"{t['wall_time_s']:.0f} | {t['iterations_per_s'] or 0:.2f} | "
            f"{means.get('model', {}).get('psnr', float('nan')):.2f} / "
            f"{means.get(base, {}).get('psnr', float('nan')):.2f} ({base}) | "
            f"{gain.get('mean', float('nan')):+.2f} | {gain.get('min', float('nan')):+.2f} | "
            f"{means.get('model', {}).get('ssim', float('nan')):.4f} / "
            f"{means.get(base, {}).get('ssim', float('nan')):.4f} |")
    for name, info in shipped.items():
        lines += ["", *_curve(Path(info["path"]), name,
                              info["card"]["training"].get("threads") or 1)]
    lines += ["", "Training commands are in each model card. Copy `ship/<name>/` to "
              "`bids_enhance/data/models/<name>/` (`bids_enhance.inference.weights."
              "DEFAULT_MODELS` names the folder each step loads)."]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    (args.out / "summary.json").write_text(dump_json({n: {"card": i["card"], "path": str(
        i["path"])} for n, i in shipped.items()}))


def _setup(args, log_name: str) -> tuple[str, dict, dict[str, dict]]:
    """What `train` and `ship` share: the package version, logging to ``<out>/<log_name>``,
    torch threads, the data manifest and the models an earlier invocation already shipped
    (one per command, collected in ``summary.json``)."""
    import torch

    sys.path.insert(0, str(ROOT))
    version = _package_version()
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        handlers=[logging.StreamHandler(sys.stdout),
                                  logging.FileHandler(args.out / log_name)], force=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    manifest_path = args.npz_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    shipped: dict[str, dict] = {}
    summary_file = args.out / "summary.json"
    if summary_file.is_file():
        for name, info in json.loads(summary_file.read_text()).items():
            shipped[name] = {"card": info["card"], "path": Path(info["path"])}
    return version, manifest, shipped


def train(args) -> int:
    import torch

    args.work.mkdir(parents=True, exist_ok=True)
    version, manifest, shipped = _setup(args, "train.log")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        LOGGER.error("--device %s but no CUDA device is visible", args.device)
        return 2
    crop = args.crop or (64 if args.smoke else None)
    LOGGER.info("bids_enhance %s, torch %s, device %s", version, torch.__version__, args.device)
    loaded: dict = {}

    for name in args.models:
        training, held_out = split_for(name)
        if loaded.get("split") != (training, held_out):
            loaded = {"split": (training, held_out),
                      "train": load_volumes(args.npz_dir, training, crop=crop),
                      "val": load_volumes(args.npz_dir, held_out, crop=crop)}
        train_vols, val_vols = loaded["train"], loaded["val"]
        LOGGER.info("%s: training on %s; held out %s", name, ", ".join(training),
                    ", ".join(held_out))
        if args.iterations:
            total = args.iterations
        else:
            probe_cfg = _config(name, args, iterations=10**6,
                                warmup=10**6 if name in PIXEL_ONLY else 0,
                                adversarial=10**6)
            phase = "l1" if name in PIXEL_ONLY else "adversarial"
            rate = probe_throughput(train_vols, probe_cfg, phase=phase)
            if name.startswith("disgan") or name == "motion_gan":  # warm-up steps are faster
                l1_rate = probe_throughput(train_vols, _config(
                    name, args, iterations=10**6, warmup=10**6, adversarial=1), phase="l1")
                w = args.disgan_warmup if name.startswith("disgan") else args.motion_warmup
                rate = 1.0 / (w / l1_rate + (1 - w) / rate)
            total = _budget_iterations(rate, args.budget_min, reserve_s=args.reserve_s)
        resume = None
        if name in PIXEL_ONLY:  # pixel loss only
            iterations, warmup, adversarial = total, total, max(total, 1)
        elif name in DIFFUSION:
            iterations, warmup, adversarial = total, 0, 1
        elif name in ADVERSARIAL_FROM_INIT and args.init_from:
            # a fresh adversarial run whose generator starts from the L1 weights: its own
            # learning-rate schedule (the L1 run's cosine has decayed to ~0 by its end) and
            # fresh critic and feature extractor, as at the end of a warm-up
            iterations, warmup, adversarial = total, 0, total
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
            # continue in a copy, so gan3p_l1_x2's own directory stays as it was shipped; an
            # interrupted adversarial run (a state past the L1 stage) is continued instead
            target = args.work / name
            interrupted = (args.resume and (target / "checkpoint.pt").is_file() and
                           int(read_checkpoint(target / "checkpoint.pt")["extra"]["iteration"])
                           > done)
            if not interrupted:
                if target.exists():
                    shutil.rmtree(target)
                shutil.copytree(base.parent, target)
            resume = target / "checkpoint.pt"
        else:
            share = args.disgan_warmup if name.startswith("disgan") else args.motion_warmup
            warmup = int(round(share * total))
            iterations, adversarial = total, max(total - warmup, 1)
        result = run_stage(name, args, train_vols, val_vols, iterations=iterations,
                           warmup=warmup, adversarial=adversarial, resume=resume)
        if args.no_ship or result["iterations"] < iterations:
            LOGGER.info("%s trained to iteration %d (--no-ship: `ship` evaluates and packs it)",
                        name, iterations)
            continue
        _ship_one(name, args, version, manifest, shipped, crop=crop,
                  result=result_from_run(args.work / name, threads=args.threads))
    LOGGER.info("summary: %s", args.out / "summary.md")
    return 0


def _ship_one(name: str, args, version: str, manifest: dict, shipped: dict, *,
              crop: int | None, result: dict) -> None:
    comparisons = evaluate_held_out(args.work / name / "checkpoint.pt", TASKS[name],
                                    args.npz_dir, device=args.device, seed=args.seed, crop=crop,
                                    cache=Path(args.out) / "baseline_cache.json")
    dest = ship(name, result, comparisons, args, version, manifest)
    card = json.loads((dest / "model_card.json").read_text())
    shipped[name] = {"card": card, "path": dest}
    _summary(args, shipped)
    LOGGER.info("%s (iteration %d) shipped to %s (sha256 %s)", name, result["iterations"],
                dest, card["checkpoint"]["sha256"])


def ship_runs(args) -> int:
    """``ship``: evaluate the newest checkpoint of each named run in ``--work`` (finished or
    still training) on the held-out heads and pack it into ``<out>/ship/<name>/``."""
    version, manifest, shipped = _setup(args, "ship.log")
    for name in args.models:
        run_dir = args.work / name
        if not (run_dir / "checkpoint_state.pt").is_file():
            LOGGER.error("%s: no training run in %s", name, run_dir)
            return 2
        info_file = run_dir / "run_info.json"
        run_info = json.loads(info_file.read_text()) if info_file.is_file() else {}
        threads = args.train_threads or run_info.get("threads") or 1
        # hold the files still while they are read: a running trainer replaces them atomically
        snapshot = Path(args.out) / "snapshots" / name
        if snapshot.exists():
            shutil.rmtree(snapshot)
        snapshot.mkdir(parents=True)
        for f in ("checkpoint.pt", "checkpoint_state.pt", "losses.csv", "validation.csv"):
            if (run_dir / f).is_file():
                shutil.copy2(run_dir / f, snapshot / f)
        result = result_from_run(snapshot, threads=threads)
        work, args.work = args.work, snapshot.parent
        args.size = run_info.get("size", args.size)
        try:
            _ship_one(name, args, version, manifest, shipped, crop=args.crop, result=result)
        finally:
            args.work = work
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
    t.add_argument("--motion-warmup", type=float, default=0.6,
                   help="share of the motion GAN's iterations spent in the L1 warm-up")
    t.add_argument("--size", choices=("compact", "thesis"), default="thesis",
                   help="network sizes (bids_enhance.models.registry.SIZES): thesis on a GPU, "
                        "compact for the CPU-trained shipped weights")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: the task's)")
    t.add_argument("--checkpoint-every", type=int, default=None,
                   help="iterations between checkpoints (default: a quarter of the run); on the "
                        "CPU pick a few minutes' worth: an interrupted run resumes from the last")
    t.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue an interrupted run found in --work (same settings) instead of "
                        "starting again")
    t.add_argument("--instance-noise-start", type=float, default=1.0,
                   help="σ of the critic's instance noise at the first adversarial iteration, "
                        "annealed linearly to 0 over the adversarial iterations (thesis: 1; a "
                        "short continuation needs less, or the critic sees only noise)")
    t.add_argument("--ddim-steps", type=int, default=50,
                   help="DDIM steps of a diffusion model's validation and of its checkpoint's "
                        "default sampling")
    t.add_argument("--zero-residual", action="store_true",
                   help="start the generator's last convolution at zero (with the image skip: "
                        "the network starts as the identity of its input)")
    t.add_argument("--init-from", type=Path, default=None,
                   help="start the generator from this checkpoint.pt (same architecture; e.g. "
                        "DISGAN from the gan3p_l1_x2 generator); recorded in the card's command")
    t.add_argument("--max-minutes", type=float, default=None,
                   help="wall-time budget of this command per model: stop cleanly (checkpoint "
                        "written) when it is spent; the same command later resumes the run")
    t.add_argument("--stop-at", type=int, default=None,
                   help="stop cleanly at this iteration (as an interruption would); resume later")
    t.add_argument("--no-ship", action="store_true",
                   help="train only; `ship` evaluates and packs the checkpoint later")
    t.add_argument("--validations", type=int, default=5, help="validations during each stage")
    t.add_argument("--validation-crop", type=int, default=96)
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--compile", action="store_true", help="torch.compile the networks")
    t.add_argument("--num-blocks", type=int, default=None,
                   help="RRDBs of the generator (default: the size preset's); with --init-from "
                        "a generator of fewer RRDBs, the extra ones start as the identity")
    t.add_argument("--image-skip", action=argparse.BooleanOptionalAction, default=None,
                   help="generator learns the residual over trilinear x2 (RRDBGenerator "
                        "image_skip): converges much faster in a short GPU budget")
    t.add_argument("--crop", type=int, default=None,
                   help="central crop of every volume (voxels per axis); --smoke: 64")
    t.add_argument("--augment", action="store_true",
                   help="turn each training patch pair by a random symmetry of the cube (flips, "
                        "axis permutations)")
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    t.add_argument("--smoke", action="store_true",
                   help="tiny networks, 64³ crops, CPU: proves the script runs end to end")
    sh = sub.add_parser("ship", help="evaluate the newest checkpoint of runs in --work (also "
                        "while they train) on the held-out heads and pack them with model cards")
    sh.add_argument("--npz-dir", type=Path, default=NPZ_DIR)
    sh.add_argument("--out", type=Path,
                    default=ROOT / "benchmarks" / "results" / "default_weights")
    sh.add_argument("--work", type=Path, default=None, help="default <out>/runs")
    sh.add_argument("--models", nargs="+", choices=MODELS, required=True)
    sh.add_argument("--device", default="cpu")
    sh.add_argument("--threads", type=int, default=None, help="threads for the evaluation")
    sh.add_argument("--train-threads", type=int, default=None,
                    help="threads the training used (for the card's CPU-hours; default: the "
                         "run's run_info.json, else 1)")
    sh.add_argument("--size", default="compact")
    sh.add_argument("--as", dest="ship_as", default=None, metavar="NAME",
                    help="pack the (one) run under this model name, e.g. a variant of a default "
                         "model shipped in its folder; the card names the run it came from")
    sh.add_argument("--crop", type=int, default=None)
    sh.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    args = parser.parse_args(argv)
    if args.command == "prep":
        prep(args.data_dir, args.out)
        return 0
    if args.command == "ship":
        if args.ship_as and len(args.models) != 1:
            parser.error("--as packs one run: name one model in --models")
        args.work = args.work or args.out / "runs"
        args.smoke = False
        return ship_runs(args)
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
