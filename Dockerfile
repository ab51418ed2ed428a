# syntax=docker/dockerfile:1
#
# bids_enhance: the BIDS-App in a container. Usage and HPC guide: docs/containers.md.
#
#   CPU (default):
#     docker build -t bids-enhance/bids_enhance:0.1.0 \
#       --build-arg VCS_REF="$(git rev-parse HEAD)" \
#       --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#   CUDA (any variant the PyTorch index has for TORCH_VERSION, e.g. cu126, cu128):
#     docker build -t bids-enhance/bids_enhance:0.1.0-cu128 \
#       --build-arg TORCH_VARIANT=cu128 \
#       --build-arg CONTAINER_TAG=bids-enhance/bids_enhance:0.1.0-cu128 .
#
# Why a build argument and not a CUDA base image: PyTorch's CUDA wheels carry their CUDA runtime,
# cuBLAS, cuDNN ... as pip packages (nvidia-*), so both variants share this Debian base and differ
# only in the torch build. The host needs the NVIDIA driver (and, for Docker, the NVIDIA
# container toolkit); `docker run --gpus all` or `apptainer run --nv` passes the GPU in.
#
# Versions kept in step with pyproject.toml and the Makefile by tests/test_containers.py:
# PYTHON_VERSION (the Python the tests run on), TORCH_VERSION (Makefile's TORCH_PIN, inside
# pyproject's torch range), VERSION (the package version), docker/constraints.txt (every runtime
# dependency, pinned to the versions the tests passed with).

ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm

# ------------------------------------------------------------------------------------------------
# builder: the wheel, and a virtual environment with it and its dependencies
# ------------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS builder

ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The venv has the same path in both stages (its scripts start with an absolute #! line).
# PyTorch goes in first (the largest layer, cached while the code changes), without its
# dependencies: those come from PyPI below, under the same constraints as everything else.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-deps \
        --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
        "torch==${TORCH_VERSION}"

WORKDIR /src
COPY docker/constraints.txt docker/constraints.txt
COPY pyproject.toml README.md ./
COPY bids_enhance bids_enhance

# The wheel is what users get from PyPI: package data (report spec and template, bibliography,
# model weights and cards under bids_enhance/data/) travels inside it or not at all.
RUN /opt/venv/bin/python -m pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/python -m pip install --constraint docker/constraints.txt /wheels/*.whl \
    && /opt/venv/bin/python -m pip check

# ------------------------------------------------------------------------------------------------
# runtime: the venv on a clean base, a HOME any user ID can write to
# ------------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime

ARG PYTHON_VERSION
ARG DEBIAN_RELEASE
ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
ARG TORCH_VARIANT=cpu
ARG CONTAINER_TAG=bids-enhance/bids_enhance:${VERSION}
# 1: build the demo dataset and run participant + group levels once while building (~1 min).
ARG SMOKE_TEST=1

LABEL org.opencontainers.image.title="bids_enhance" \
      org.opencontainers.image.description="BIDS-App for denoising, super-resolution and motion correction of 3D structural MRI" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="https://github.com/bids-enhance/bids_enhance" \
      org.opencontainers.image.url="https://github.com/bids-enhance/bids_enhance" \
      org.opencontainers.image.documentation="https://github.com/bids-enhance/bids_enhance/blob/main/docs/containers.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="bids_enhance developers" \
      org.opencontainers.image.base.name="docker.io/library/python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE}" \
      io.github.bids-enhance.torch-variant="${TORCH_VARIANT}"

COPY --from=builder /opt/venv /opt/venv

RUN useradd --create-home --home-dir /home/bids_enhance --shell /bin/bash \
        --uid 1000 --user-group bids_enhance

# OMP_NUM_THREADS=1: threads are given explicitly (--omp-nthreads, default --nprocs), never
# taken from the node's core count by a library on its own. MPLCONFIGDIR: matplotlib needs a
# writable folder; /tmp is writable under any user ID in Docker and Apptainer alike.
# TEMPLATEFLOW_HOME is deliberately not set: users point it at their own cache.
ENV PATH="/opt/venv/bin:${PATH}" \
    HOME="/home/bids_enhance" \
    LANG="C.UTF-8" \
    LC_ALL="C.UTF-8" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMP_NUM_THREADS=1 \
    MPLCONFIGDIR="/tmp/matplotlib" \
    NIPYPE_NO_ET=1 \
    NO_ET=1 \
    BIDS_ENHANCE_CONTAINER_TYPE="docker" \
    BIDS_ENHANCE_CONTAINER_TAG="${CONTAINER_TAG}"

# Build-time checks: default weights against their model cards (a no-op while none ship), the
# torch build matches TORCH_VARIANT, the entry point runs, and (SMOKE_TEST=1) the demo end to end
# with the BIDS validator. Then HOME is opened to every user ID (go=u) and /tmp is emptied.
RUN --mount=type=bind,source=docker/verify_models.py,target=/opt/verify_models.py \
    python /opt/verify_models.py \
    && python -c "import sys, torch; want = '${TORCH_VARIANT}' != 'cpu'; has = torch.version.cuda is not None; print('torch', torch.__version__, 'CUDA', torch.version.cuda); sys.exit(0 if has == want else 'the torch build does not match TORCH_VARIANT=${TORCH_VARIANT}')" \
    && /opt/venv/bin/bids_enhance --version \
    && if [ "${SMOKE_TEST}" = "1" ]; then \
         python -m bids_enhance.demo /tmp/smoke/bids --voxel-size 6 \
         && /opt/venv/bin/bids_enhance /tmp/smoke/bids /tmp/smoke/out participant \
              -w /tmp/smoke/work --nprocs 1 --omp-nthreads 1 --sloppy --random-seed 1 \
         && /opt/venv/bin/bids_enhance /tmp/smoke/bids /tmp/smoke/out group \
         && grep -q '"Type": "docker"' /tmp/smoke/out/dataset_description.json; \
       fi \
    && rm -rf /tmp/* \
    && chmod -R go=u "${HOME}"

# Numeric, so that `runAsNonRoot` checks (Kubernetes) can verify it; any other ID works too.
USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["/opt/venv/bin/bids_enhance"]
