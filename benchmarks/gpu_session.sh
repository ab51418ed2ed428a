#!/usr/bin/env bash
# One GPU session for bids_enhance, prepared so that a lent H100 (15 device-minutes per session,
# 10 per command) is spent on what needs it most: the shipped x2 weights first, then the GPU
# benchmarks. Everything comes back as at most 8 files directly under $OUT.
#
# Here (CPU, once; the .npz files are git-ignored and travel with `carry`):
#   .venv/bin/python benchmarks/train_default_weights.py prep
# Then one device call:
#   run(command="bash benchmarks/gpu_session.sh", carry=["benchmarks/results/t1_highres_npz"],
#       timeout_s=590)
# Back here: untar $OUT/ship.tar.gz, read summary.md, copy ship/<name>/ to
# bids_enhance/data/models/<name>/ only for models that beat cubic (issue 4's rule), and paste the
# numbers into docs/benchmarks/{superres,infer_speed}.md.
#
# Generators use image_skip (train_default_weights.py --image-skip, its default).
# Budgets (minutes of training per model; the script adds a timed probe, the held-out evaluation
# on two whole heads and the card, about a minute each): override with GAN_MIN / DISGAN_MIN.
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-benchmarks/results/gpu_session}
GAN_MIN=${GAN_MIN:-3.5}
DISGAN_MIN=${DISGAN_MIN:-2.5}
# hard caps per step (seconds), summing to 580 s so the command ends inside a 590 s call
GAN_CAP=${GAN_CAP:-290}
DISGAN_CAP=${DISGAN_CAP:-220}
SPEED_CAP=${SPEED_CAP:-70}
# SMOKE=1: the same path on the CPU with tiny networks (checks this script, trains nothing)
if [ "${SMOKE:-0}" = 1 ]; then EXTRA=(--smoke --device cpu); SPEED=(--device cpu --shapes 16);
else EXTRA=(--device cuda); SPEED=(--device cuda --compile --shapes 128); fi
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} > "$OUT/machine.txt" 2>&1

# 1. weights: the PSNR-oriented three-player generator (L1 warm-up stage), then DISGAN
timeout "$GAN_CAP" python benchmarks/train_default_weights.py train "${EXTRA[@]}" \
    --models gan3p_l1_x2 --budget-min "$GAN_MIN" --out "$WORK/dw" 2>&1 | tail -n 400 > "$OUT/train_gan3p.log"
timeout "$DISGAN_CAP" python benchmarks/train_default_weights.py train "${EXTRA[@]}" \
    --models disgan_x2 --budget-min "$DISGAN_MIN" --out "$WORK/dw" 2>&1 | tail -n 400 > "$OUT/train_disgan.log"
tar czf "$OUT/ship.tar.gz" -C "$WORK/dw" ship summary.md summary.json 2>>"$OUT/train_disgan.log"

# 2. x2 inference speed on the GPU (bf16, channels-last, and compiled): 128³ → 256³
timeout "$SPEED_CAP" python benchmarks/infer_speed.py "${SPEED[@]}" \
    --out "$WORK/infer_speed" > "$OUT/infer_speed.log" 2>&1
cat "$WORK"/infer_speed*.md >> "$OUT/infer_speed.log" 2>/dev/null
ls -la "$OUT"
