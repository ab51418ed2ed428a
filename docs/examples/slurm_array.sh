#!/bin/bash
# bids_enhance on a SLURM cluster with Apptainer/Singularity: one array task per participant.
#
#   bash slurm_array.sh submit    # lists the participants, then submits two jobs:
#                                 #  1. "index": validates the dataset once and builds the pybids
#                                 #     index in $DB_DIR (the only job that writes it);
#                                 #  2. the array, one task per participant, after 1 succeeded;
#                                 #     every task reads the same index, bound read-only.
#   sbatch --array=3,17 slurm_array.sh task   # later: rerun only tasks 3 and 17
#
# Edit the settings below (or export them before `bash slurm_array.sh submit`; sbatch passes
# the environment on). Guide: docs/containers.md.
#
# The #SBATCH lines are the per-participant resources; the index job overrides them.
#SBATCH --job-name=bids_enhance
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=04:00:00
# GPU (CUDA image): uncomment, and set GPU=1 below.
# #SBATCH --gres=gpu:1

set -euo pipefail

# ---- settings ----------------------------------------------------------------------------------
SIF=${SIF:-/shared/containers/bids_enhance-0.1.0.sif}
BIDS_DIR=${BIDS_DIR:-/shared/study/bids}
OUT_DIR=${OUT_DIR:-/shared/study/derivatives/bids_enhance}
# Shared, persistent: the pybids index, the participant list and the SLURM logs.
STATE_DIR=${STATE_DIR:-/shared/study/work/bids_enhance_slurm}
DB_DIR=${DB_DIR:-$STATE_DIR/pybids_db}
SUBJECT_LIST=${SUBJECT_LIST:-$STATE_DIR/participants.txt}
MAX_PARALLEL=${MAX_PARALLEL:-20}      # array tasks running at once
SEED=${SEED:-42}                      # same seed = same results as one run over all participants
GPU=${GPU:-0}                         # 1: --nv and --device cuda (needs the CUDA image)
EXTRA_ARGS=${EXTRA_ARGS:-}            # more bids_enhance options, e.g. "--denoise-method sanlm"
# ------------------------------------------------------------------------------------------------

RUNTIME=$(command -v apptainer || command -v singularity || true)
if [[ -z "$RUNTIME" ]]; then
    echo "error: neither apptainer nor singularity is on PATH (module load apptainer?)" >&2
    exit 2
fi

submit() {
    mkdir -p "$STATE_DIR/logs" "$OUT_DIR"
    find "$BIDS_DIR" -mindepth 1 -maxdepth 1 -type d -name 'sub-*' -printf '%f\n' \
        | sed 's/^sub-//' | sort > "$SUBJECT_LIST"
    local n
    n=$(wc -l < "$SUBJECT_LIST")
    if (( n == 0 )); then
        echo "error: no sub-* folders in $BIDS_DIR" >&2
        exit 2
    fi
    local script index_job
    script=$(readlink -f "${BASH_SOURCE[0]}")
    index_job=$(sbatch --parsable --job-name=bids_enhance_index --cpus-per-task=1 --mem=4G \
        --time=01:00:00 --output="$STATE_DIR/logs/index_%j.out" "$script" index)
    index_job=${index_job%%;*}  # --parsable prints "id;cluster" on multi-cluster installations
    sbatch --dependency="afterok:$index_job" --array="1-$n%$MAX_PARALLEL" \
        --output="$STATE_DIR/logs/%x_%A_%a.out" "$script" task
    echo "Submitted: index job $index_job, then $n participant task(s) (list: $SUBJECT_LIST)"
}

# Node-local scratch, bound as the container's /tmp: the work directory and every library's
# temporary files stay off the shared file system and off the node's own (small) /tmp. Removed
# when the script exits, whatever the outcome. (A global, not a function's local: the EXIT trap
# runs after the function has returned, and under `set -u` an unset variable there would turn
# every exit status, success included, into 1.)
SCRATCH=""
cleanup() {
    if [[ -n "$SCRATCH" ]]; then
        rm -rf "$SCRATCH"
    fi
}
trap cleanup EXIT

make_scratch() {
    SCRATCH=$(mktemp -d "${SLURM_TMPDIR:-${TMPDIR:-/tmp}}/bids_enhance_${SLURM_JOB_ID:-$$}_XXXX")
}

index() {
    # The dataset is validated here, once; the tasks skip the validator.
    make_scratch
    rm -rf "${DB_DIR:?}"
    mkdir -p "$DB_DIR" "$OUT_DIR"
    "$RUNTIME" run --cleanenv \
        -B "$BIDS_DIR":/data:ro -B "$OUT_DIR":/out -B "$DB_DIR":/bids_db -B "$SCRATCH":/tmp \
        "$SIF" /data /out participant \
        --bids-database-dir /bids_db --boilerplate-only -w /tmp/work
}

task() {
    if [[ -z "${SLURM_ARRAY_TASK_ID:-}" ]]; then
        echo "error: 'task' runs as a SLURM array task; use: bash $0 submit" >&2
        exit 2
    fi
    local subject
    subject=$(sed -n "${SLURM_ARRAY_TASK_ID}p" "$SUBJECT_LIST")
    if [[ -z "$subject" ]]; then
        echo "error: no line $SLURM_ARRAY_TASK_ID in $SUBJECT_LIST" >&2
        exit 2
    fi

    make_scratch

    local cpus=${SLURM_CPUS_PER_TASK:-1}
    # Tell the app 90 % of the job's memory limit: the scheduler then keeps its processes inside
    # the limit with room for Python itself. SLURM gives MB.
    local mem_mb=${SLURM_MEM_PER_NODE:-$(( ${SLURM_MEM_PER_CPU:-2000} * cpus ))}
    local run_flags=(--cleanenv) device=cpu
    if [[ "$GPU" == 1 ]]; then
        run_flags+=(--nv)
        device=cuda
    fi

    echo "sub-$subject on $(hostname): $cpus CPU(s), ${mem_mb} MB, GPU=$GPU"
    # shellcheck disable=SC2086  # EXTRA_ARGS is a list of options on purpose
    "$RUNTIME" run "${run_flags[@]}" \
        -B "$BIDS_DIR":/data:ro \
        -B "$OUT_DIR":/out \
        -B "$DB_DIR":/bids_db:ro \
        -B "$SCRATCH":/tmp \
        "$SIF" /data /out participant \
        --participant-label "$subject" \
        --bids-database-dir /bids_db \
        --skip-bids-validation \
        -w /tmp/work \
        --nprocs "$cpus" --omp-nthreads "$cpus" --mem "$(( mem_mb * 9 / 10 ))" \
        --device "$device" --random-seed "$SEED" $EXTRA_ARGS
    # The exit status is the app's: 0 every image done (COMPLETED); 1 some image failed, see
    # $OUT_DIR/sub-$subject/log/*/crash-*.txt (FAILED); 2 unusable arguments or inputs (FAILED).
}

case "${1:-task}" in
    submit) submit ;;
    index) index ;;
    task) task ;;
    *) echo "usage: bash $0 submit | sbatch [--array=...] $0 task" >&2; exit 2 ;;
esac
