"""Typed run settings, their TOML record, and the master seed with its child seeds.

One :class:`Settings` object is made by the command line (``cli/parser.py``) and passed down.
Workflow factories below the top receive explicit arguments, never this object, so they stay
usable from Python and from the training workflow.
"""

from __future__ import annotations

import logging
import os
import secrets
import tomllib
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bids_enhance.steps import AUTO_DENOISE, DEFAULT_ENHANCE

#: Option names grouped into the sections of the run's TOML record.
SECTIONS: dict[str, tuple[str, ...]] = {
    "execution": (
        "bids_dir", "output_dir", "analysis_level", "participant_label", "session_label",
        "bids_filters", "bids_database_dir", "work_dir", "reports_only", "boilerplate_only",
        "skip_bids_validation", "run_uuid", "verbose", "sloppy",
    ),
    "workflow": (
        "suffix", "enhance", "denoise_method", "noise_model", "checkpoint", "consistency",
        "device", "random_seed", "simulate", "fmriprep_compat",
    ),
    "training": (
        "model", "model_name", "iterations", "patch_size", "batch_size", "val_subjects",
        "loss_preset", "pixel_loss", "warmup_iterations", "image_skip", "size", "degradation", "checkpoint_every", "validate_every",
        "resume", "nproc_per_node",
    ),
    "nipype": (
        "nprocs", "omp_nthreads", "mem_gb", "gpu_mem_gb", "use_plugin", "stop_on_first_crash",
        "resource_monitor",
    ),
}

#: Keys a ``--config-file`` may not set (they identify one run, or are positional).
NOT_CONFIGURABLE = frozenset({"bids_dir", "output_dir", "analysis_level", "run_uuid", "models"})


def new_run_uuid() -> str:
    """fMRIPrep-style run identifier: ``YYYYMMDD-HHMMSS_<uuid4>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}_{uuid.uuid4()}"


@dataclass
class Settings:
    """Everything one invocation of ``bids_enhance`` needs to know."""

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    participant_label: list[str] | None = None
    session_label: list[str] | None = None
    bids_filters: dict[str, dict[str, Any]] | None = None
    bids_database_dir: Path | None = None
    suffix: list[str] = field(default_factory=lambda: ["T1w"])
    enhance: list[str] = field(default_factory=lambda: list(DEFAULT_ENHANCE))
    denoise_method: str = AUTO_DENOISE
    noise_model: str = "rician"
    #: ``--checkpoint`` values as ``STEP=PATH``
    checkpoint: list[str] | None = None
    consistency: str = "measure"
    #: the verified model of every generative step (``ResolvedModel.to_dict()``; recorded in
    #: sidecars, not in the TOML record, which keeps ``checkpoint``)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    nprocs: int | None = None
    omp_nthreads: int | None = None
    mem_gb: float | None = None
    gpu_mem_gb: float | None = None
    work_dir: Path | None = None
    use_plugin: Path | None = None
    stop_on_first_crash: bool = False
    resource_monitor: bool = False
    device: str = "cpu"
    random_seed: int | None = None
    reports_only: bool = False
    boilerplate_only: bool = False
    skip_bids_validation: bool = False
    sloppy: bool = False
    simulate: str | None = None
    fmriprep_compat: bool = False
    verbose: int = 0
    model: str | None = None
    model_name: str | None = None
    iterations: int = 10000
    patch_size: int = 64
    batch_size: int = 4
    val_subjects: list[str] | None = None
    loss_preset: str = "thesis"
    pixel_loss: str = "l1"
    warmup_iterations: int = 0
    image_skip: bool = False
    size: str = "thesis"
    degradation: str | None = None
    checkpoint_every: int = 1000
    validate_every: int | None = None
    resume: Path | None = None
    nproc_per_node: int = 1
    #: the command line as given (recorded in model cards; not part of the TOML record)
    argv: list[str] = field(default_factory=list)
    run_uuid: str = field(default_factory=new_run_uuid)

    def __post_init__(self) -> None:
        if self.random_seed is None:
            # Recorded in the TOML and every sidecar, so the run can be repeated exactly.
            self.random_seed = secrets.randbelow(2**31 - 1)
        if self.nprocs is None:
            self.nprocs = max(1, len(os.sched_getaffinity(0)))
        if self.omp_nthreads is None:
            self.omp_nthreads = self.nprocs
        elif self.omp_nthreads > self.nprocs:  # as fMRIPrep: say so, do not exceed the total
            logging.getLogger("bids_enhance").warning(
                "--omp-nthreads %d exceeds --nprocs %d: each process uses %d thread(s)",
                self.omp_nthreads, self.nprocs, self.nprocs)
        self.omp_nthreads = max(1, min(self.omp_nthreads, self.nprocs))
        if self.work_dir is None:
            self.work_dir = Path.cwd() / "work"

    # -- paths ---------------------------------------------------------------------------------
    def log_dir(self, subject: str) -> Path:
        """``<out>/sub-<subject>/log/<run_uuid>``: the run's TOML and crash files."""
        return self.output_dir / f"sub-{subject}" / "log" / self.run_uuid

    # -- seeds ---------------------------------------------------------------------------------
    def seed_for(self, *key: str) -> int:
        """A child seed of the master seed for a named purpose (e.g. a file name): the 63-bit
        :func:`bids_enhance.seeding.child_seed`, the scheme training uses too."""
        from bids_enhance.seeding import child_seed

        return child_seed(self.random_seed, *key)

    # -- TOML ----------------------------------------------------------------------------------
    def to_toml_dict(self) -> dict[str, dict[str, Any]]:
        from bids_enhance import __version__

        raw = asdict(self)
        out: dict[str, dict[str, Any]] = {
            "environment": {"version": __version__, "created": datetime.now(UTC)
                            .isoformat(timespec="seconds")},
        }
        for section, names in SECTIONS.items():
            values = {}
            for name in names:
                value = raw[name]
                if value is None:
                    continue  # TOML has no null
                values[name] = str(value) if isinstance(value, Path) else value
            out[section] = values
        return out

    def dump_toml(self, path: Path) -> Path:
        """Write the run's settings to ``path`` (atomically)."""
        import tomli_w

        from bids_enhance.utils import atomic_write_text

        return atomic_write_text(Path(path), tomli_w.dumps(self.to_toml_dict()))


def option_names() -> set[str]:
    return {f.name for f in fields(Settings)}


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a ``--config-file``: flat keys, or the sections of a previous run's record.

    Returns option values keyed by option name. Unknown keys raise ``ValueError`` naming them.
    Keys that identify a run (positionals, run UUID) and the ``[environment]`` section are
    ignored, so a run's own ``bids_enhance.toml`` can be passed back to repeat it.
    """
    with open(path, "rb") as fobj:
        data = tomllib.load(fobj)
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "environment":
            continue
        if key in SECTIONS and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    flat = {k.replace("-", "_"): v for k, v in flat.items()}
    unknown = sorted(set(flat) - option_names())
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}")
    return {k: v for k, v in flat.items() if k not in NOT_CONFIGURABLE}
