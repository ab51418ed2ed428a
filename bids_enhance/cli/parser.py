"""The BIDS-App command line (modelled on ``fmriprep/cli/parser.py``).

This module imports nothing heavy: ``bids_enhance --help`` must be instant and never import
torch. Every problem with the arguments goes through ``parser.error`` (one sentence, exit 2).
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any

from bids_enhance import __version__
from bids_enhance import steps as registry

#: anatomical suffixes: ``PDw`` is BIDS' proton-density-weighted image, ``PD`` its deprecated name
SUFFIXES = ("T1w", "T2w", "FLAIR", "PDw", "PD")
#: ``--enhance`` steps, in the fixed order a chain applies them (``motion`` first: a model of
#: motion artefacts sees the image as acquired; super-resolution last: it changes the grid)
ENHANCEMENTS = registry.CHAIN_ORDER
GENERATIVE_STEPS = registry.GENERATIVE_STEPS
CONSISTENCY_MODES = ("measure", "project", "off")
DENOISE_METHODS = registry.DENOISE_CHOICES
NOISE_MODELS = ("rician", "gaussian")
FILTER_QUERIES = tuple(s.lower() for s in SUFFIXES)
TRAIN_MODELS = ("gan3p", "disgan", "motion-gan", "motion-ddpm", "denoise")
LOSS_PRESETS = ("thesis", "released-code")

GPU_HINT = (
    "in a container pass the GPU through (`docker run --gpus all …` or `apptainer run --nv …`), "
    "or choose --device cpu"
)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show a default only where it says something: not ``None``, not when the help already
    explains it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or "default" in text.lower():
            return text
        return super()._get_help_string(action)


def _enhance_help() -> str:
    """``--enhance`` help: every step in chain order, x2 alternatives joined with "or"."""
    text = ""
    for i, step in enumerate(registry.STEPS.values()):
        if i:
            text += " or " if step.x2 and list(registry.STEPS.values())[i - 1].x2 else " → "
        text += f"{step.name} ({step.help})"
    return "enhancement steps, always applied in this order: " + text


def _label_list(prefix: str):
    def strip(value: str) -> str:
        label = value.removeprefix(prefix)
        if not re.fullmatch(r"[A-Za-z0-9]+", label):
            raise argparse.ArgumentTypeError(
                f"{value!r} is not a valid label (letters and digits only, optional '{prefix}')")
        return label
    return strip


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return number


def parse_memory(value: str) -> float:
    """``--mem``: megabytes by default, or a number with a K/M/G/T suffix (``16G``). Returns GB."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)B?\s*", str(value), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a memory size (examples: 16000, 16G, 0.5T)")
    number = float(match.group(1))
    unit = match.group(2).upper() or "M"
    gb = number * {"K": 1e-6, "M": 1e-3, "G": 1.0, "T": 1e3}[unit]
    if gb <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be more than zero")
    return gb


def parse_gpu_memory(value: str) -> float:
    """``--gpu-mem``: gigabytes by default, or a number with a K/M/G/T suffix. Returns GB."""
    text = str(value).strip()
    if re.fullmatch(r"[0-9]*\.?[0-9]+", text):
        text += "G"
    return parse_memory(text)


def _existing_file(value: str) -> Path:
    path = Path(value).expanduser().absolute()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"file {value!r} does not exist")
    return path


def _seed(value: str) -> int:
    try:
        seed = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if not 0 <= seed < 2**63:
        raise argparse.ArgumentTypeError(f"{value} is not in [0, 2**63)")
    return seed


def _device(value: str) -> str:
    if not re.fullmatch(r"cpu|auto|cuda(:[0-9]+)?", value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a device (use cpu, cuda, cuda:N or auto)")
    return value


class _Parser(argparse.ArgumentParser):
    """Argument errors in one line with a pointer to ``--help``, not the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bids_enhance",
        description=(
            f"bids_enhance {__version__}: denoise, super-resolve and motion-correct 3D "
            "structural MRI of a BIDS dataset and write BIDS-Derivatives with a visual report "
            "per participant."
        ),
        epilog=(
            "examples:\n"
            "  bids_enhance /data /out participant --participant-label 01 02\n"
            "  bids_enhance /data /out participant --denoise-method sanlm --device cuda\n"
            "  bids_enhance /data /out participant --enhance denoise superres \\\n"
            "      --checkpoint superres=/trained/models/gan3p --device cuda --gpu-mem 20\n"
            "  bids_enhance /data /out group\n"
            "  bids_enhance /data /out train --model gan3p --iterations 20000 --device cuda"
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument("bids_dir", type=Path, help="the root of the BIDS dataset")
    parser.add_argument("output_dir", type=Path,
                        help="where derivatives, reports and logs are written")
    parser.add_argument("analysis_level", choices=["participant", "group", "train"],
                        help="'participant' processes subjects; 'group' summarises their "
                             "outputs; 'train' trains a model on the (clean) images")
    parser.add_argument("--version", action="version", version=f"bids_enhance {__version__}")
    parser.add_argument("-v", "--verbose", dest="verbose", action="count", default=0,
                        help="more log output (repeat for more)")

    g = parser.add_argument_group("selecting inputs")
    g.add_argument("--participant-label", "--participant_label", dest="participant_label",
                   nargs="+", type=_label_list("sub-"), metavar="LABEL",
                   help="subjects to process (with or without 'sub-'); default: all")
    g.add_argument("--session-label", "--session_label", dest="session_label", nargs="+",
                   type=_label_list("ses-"), metavar="LABEL",
                   help="sessions to process (with or without 'ses-'); default: all")
    g.add_argument("--bids-filter-file", dest="bids_filter_file", type=_existing_file,
                   metavar="FILE",
                   help="JSON {query: {entity: value}} with queries "
                        f"{', '.join(FILTER_QUERIES)}; null = entity absent, \"*\" = any value")
    g.add_argument("--bids-database-dir", dest="bids_database_dir", type=Path, metavar="DIR",
                   help="reuse (or create) a pybids index here; share it read-only between jobs")
    g.add_argument("--suffix", nargs="+", choices=SUFFIXES, default=["T1w"],
                   help="which anatomical images to enhance")
    g.add_argument("--skip-bids-validation", "--skip_bids_validation",
                   dest="skip_bids_validation", action="store_true",
                   help="do not run the BIDS validator on the input")

    g = parser.add_argument_group("enhancement")
    g.add_argument("--enhance", nargs="+", choices=ENHANCEMENTS,
                   default=list(registry.DEFAULT_ENHANCE),
                   help=_enhance_help())
    g.add_argument("--checkpoint", action="append", metavar="[STEP=]PATH",
                   help=f"trained model for a generative step ({', '.join(GENERATIVE_STEPS)}), "
                        "or for denoise with --denoise-method learned: "
                        "a checkpoint.pt, or the folder the train level wrote "
                        "(OUTPUT_DIR/models/<name>/, checked against its model_card.json); "
                        "repeat for several steps; a bare PATH when only one generative step "
                        "is requested. Default: the weights shipped with bids_enhance, where "
                        "there are any")
    g.add_argument("--consistency", choices=CONSISTENCY_MODES, default="measure",
                   help="super-resolution: measure how far the output, degraded again as in "
                        "training, is from the input (recorded in sidecars and reports); "
                        "project: also correct the output so that it matches the input exactly; "
                        "off: neither")
    g.add_argument("--denoise-method", dest="denoise_method", choices=DENOISE_METHODS,
                   default=registry.AUTO_DENOISE,
                   help=_denoise_method_help())
    g.add_argument("--noise-model", dest="noise_model", choices=NOISE_MODELS, default="rician",
                   help="rician for magnitude images straight from the scanner; gaussian for "
                        "images whose background noise was already removed or transformed")
    g.add_argument("--simulate", metavar="PRESET",
                   help="simulation mode: degrade each (clean) image with this preset, enhance "
                        "it and compare with the original (PSNR/SSIM in sidecars and reports); "
                        "for denoising e.g. noise-rician-3, noise-rician-6, denoise-rician; "
                        "'model': the degradation the chain's model was trained for (e.g. "
                        "sr-box-x2 for a three-player GAN)")
    g.add_argument("--fmriprep-compat", dest="fmriprep_compat", action="store_true",
                   help="also write one space-less desc-preproc_<suffix> per subject (per "
                        "session) from the last step of the chain, for "
                        "`fmriprep --derivatives enhance=OUTPUT_DIR`; with several runs the "
                        "first in BIDS order is used")
    g.add_argument("--sloppy", action="store_true",
                   help="fast, low-quality settings for smoke tests; never for analysis")

    g = parser.add_argument_group("resources")
    g.add_argument("--nprocs", "--nthreads", "--n-cpus", "--n_cpus", dest="nprocs",
                   type=_positive_int, metavar="N",
                   help="CPUs for the whole run; default: all available")
    g.add_argument("--omp-nthreads", "--omp_nthreads", dest="omp_nthreads", type=_positive_int,
                   metavar="N", help="threads per process (torch); default: --nprocs")
    g.add_argument("--mem", "--mem-mb", "--mem_mb", dest="mem_gb", type=parse_memory,
                   metavar="MEM", help="memory limit: MB, or with a G/T suffix (16G); on the "
                                       "CPU also the budget that sets the patch size of "
                                       "generative models")
    g.add_argument("--gpu-mem", "--gpu_mem", dest="gpu_mem_gb", type=parse_gpu_memory,
                   metavar="GB", help="GPU memory budget of generative models (GB, or with an "
                                      "M/G/T suffix): whole-volume inference when it fits, "
                                      "blended patches otherwise; default: 85 %% of the free "
                                      "GPU memory")
    g.add_argument("-w", "--work-dir", dest="work_dir", type=Path, metavar="DIR",
                   help="intermediate results; reuse it to resume; default: ./work")
    g.add_argument("--use-plugin", "--use_plugin", dest="use_plugin", type=_existing_file,
                   metavar="FILE",
                   help="nipype plugin settings (YAML: plugin, plugin_args), e.g. SLURM")
    g.add_argument("--stop-on-first-crash", dest="stop_on_first_crash", action="store_true",
                   help="stop at the first failure instead of finishing other images")
    g.add_argument("--resource-monitor", dest="resource_monitor", action="store_true",
                   help="record CPU and memory use of every node")
    g.add_argument("--device", type=_device, default="cpu",
                   help="cpu, cuda, cuda:N, or auto (a GPU when one is usable, else the CPU). "
                        "A GPU that was asked for and is not usable is an error, never a "
                        "silent fallback")

    g = parser.add_argument_group("training (analysis level 'train')")
    g.add_argument("--model", choices=TRAIN_MODELS,
                   help="gan3p: x2 super-resolution (three-player GAN); disgan: x2 with noise "
                        "removal; motion-gan / motion-ddpm: motion-artefact correction; "
                        "denoise: the learned denoiser of --denoise-method learned")
    g.add_argument("--model-name", dest="model_name", metavar="NAME",
                   help="folder under OUTPUT_DIR/models (default: the --model value)")
    g.add_argument("--iterations", type=_positive_int, default=10000, metavar="N")
    g.add_argument("--patch-size", dest="patch_size", type=_positive_int, default=64,
                   metavar="N", help="edge of the target patch in voxels (x2: HR 64 ↔ LR 32)")
    g.add_argument("--batch-size", dest="batch_size", type=_positive_int, default=4,
                   metavar="N", help="patches per step (per process with --nproc-per-node)")
    g.add_argument("--val-subjects", dest="val_subjects", nargs="+", type=_label_list("sub-"),
                   metavar="LABEL",
                   help="held-out subjects (default: the last subject; none of their images "
                        "is trained on)")
    g.add_argument("--loss-preset", dest="loss_preset", choices=LOSS_PRESETS, default="thesis",
                   help="GAN generator loss weights: thesis (L_perc + 0.01 L1 + 0.005 L_adv) or "
                        "released-code (L1 + 0.01 L_perc + 0.005 L_adv)")
    g.add_argument("--pixel-loss", dest="pixel_loss", choices=("l1", "mse"), default="l1",
                   help="the GAN generators' pixel loss: l1 (the thesis') or mse (the mean "
                        "squared error: the conditional mean, what PSNR rewards; the shipped "
                        "motion weights ended with it)")
    g.add_argument("--warmup-iterations", dest="warmup_iterations", type=int, default=0,
                   metavar="N", help="pixel-loss-only iterations before adversarial training "
                        "(--model denoise: all of them unless given)")
    g.add_argument("--size", choices=("thesis", "compact"), default="thesis",
                   help="network sizes: thesis (GANs: 64 features, 3 RRDBs; diffusion U-Net: "
                        "64 features on 3 levels; a GPU) or compact (1 RRDB of 32, narrow x2 "
                        "head, image skip; U-Net: 16 features on 4 levels; what the shipped "
                        "CPU-trained weights use)")
    g.add_argument("--image-skip", dest="image_skip", action="store_true",
                   help="the generator learns only the residual over trilinear upsampling of "
                        "its input (faster convergence; not in the thesis)")
    g.add_argument("--degradation", metavar="PRESET",
                   help="degradation preset to train for (default per model)")
    g.add_argument("--checkpoint-every", dest="checkpoint_every", type=_positive_int,
                   default=1000, metavar="N",
                   help="save the run every N iterations into OUTPUT_DIR/models/NAME.partial "
                        "(what --resume continues); the finished model goes to "
                        "OUTPUT_DIR/models/NAME")
    g.add_argument("--validate-every", dest="validate_every", type=_positive_int, metavar="N",
                   help="validate on the held-out images every N iterations (default: at the "
                        "end)")
    g.add_argument("--resume", type=_existing_file, metavar="CHECKPOINT",
                   help="continue a run exactly from its checkpoint.pt: an interrupted "
                        "run's OUTPUT_DIR/models/NAME.partial/checkpoint.pt, or a finished "
                        "model's, to train it for more --iterations")
    g.add_argument("--nproc-per-node", dest="nproc_per_node", type=_positive_int, default=1,
                   metavar="N", help="GPUs to train on with torchrun (DDP)")

    g = parser.add_argument_group("other")
    g.add_argument("--config-file", dest="config_file", type=_existing_file, metavar="FILE",
                   help="TOML settings (option names as keys, or a previous run's "
                        "bids_enhance.toml); command-line options win")
    g.add_argument("--random-seed", dest="random_seed", type=_seed, metavar="SEED",
                   help="master seed; every random draw derives from it (recorded in outputs)")
    g.add_argument("--reports-only", dest="reports_only", action="store_true",
                   help="only (re)build the reports from existing outputs")
    g.add_argument("--boilerplate-only", dest="boilerplate_only", action="store_true",
                   help="only write the methods text (logs/CITATION.*)")
    return parser


def _load_filters(parser: argparse.ArgumentParser, path: Path) -> dict[str, dict[str, Any]]:
    try:
        filters = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        parser.error(f"--bids-filter-file {path} is not valid JSON ({exc})")
    if not isinstance(filters, dict) or not all(isinstance(v, dict) for v in filters.values()):
        parser.error(f"--bids-filter-file {path} must hold an object of objects, "
                     'e.g. {"t1w": {"acquisition": "mprage"}}')
    for key in filters:
        if key not in FILTER_QUERIES:
            close = difflib.get_close_matches(key.lower(), FILTER_QUERIES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            parser.error(f"--bids-filter-file {path} has an unknown query {key!r}{hint}; "
                         f"known queries: {', '.join(FILTER_QUERIES)}")
    return filters


def _check_device(parser: argparse.ArgumentParser, device: str) -> str:
    if device == "cpu":
        return device
    import torch  # only when a GPU is asked for: --help and CPU runs stay torch-free here

    available = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if available else "cpu"
    if not available:
        parser.error(f"--device {device} was requested but no usable CUDA GPU is visible "
                     f"(torch.cuda.is_available() is False); {GPU_HINT}")
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        parser.error(f"--device {device} was requested but only {torch.cuda.device_count()} "
                     "CUDA device(s) are visible")
    return device


def _check_choices(parser: argparse.ArgumentParser, opts: argparse.Namespace) -> None:
    """argparse does not check defaults against ``choices``; a config file sets defaults."""
    for action in parser._actions:
        if not action.choices or action.dest == "help":
            continue
        value = getattr(opts, action.dest, None)
        for item in value if isinstance(value, list) else [value]:
            if item is not None and item not in action.choices:
                parser.error(f"--config-file sets {action.dest} to {item!r}; choose from "
                             f"{', '.join(map(str, action.choices))}")


#: Config-file keys in the units of the run's TOML record (GB), not of the command line (MB).
_GB_KEYS = ("mem_gb", "gpu_mem_gb")


def _check_file_values(parser: argparse.ArgumentParser, path: Path, values: dict) -> None:
    """Give a config file's values the checks of the command line (argparse only converts
    string defaults): ``nprocs = 0`` or ``mem_gb = -5`` are refused, not run."""
    actions = {a.dest: a for a in parser._actions}
    for key, value in list(values.items()):
        action = actions.get(key)
        if value is None or action is None:
            continue
        try:
            if key in _GB_KEYS:
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    raise argparse.ArgumentTypeError("must be a number of GB above zero")
                continue
            convert = action.type
            if convert is None or convert in (str, Path) or isinstance(value, Path):
                continue
            if isinstance(value, bool) and convert in (int, float, _positive_int):
                raise argparse.ArgumentTypeError("must be a number")
            items = value if isinstance(value, list) else [value]
            converted = [convert(str(v)) for v in items]
            values[key] = converted if isinstance(value, list) else converted[0]
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            parser.error(f"--config-file {path}: {key} = {value!r}: {exc}")


def _denoise_method_help() -> str:
    by_method: dict[str, list[str]] = {}
    for suffix, method in registry.AUTO_DENOISE_BY_SUFFIX.items():
        by_method.setdefault(registry.DENOISE_METHODS[method].abbreviation, []).append(suffix)
    default = registry.DENOISE_METHODS[registry.DEFAULT_DENOISE_METHOD].abbreviation
    auto = ", ".join(f"{name} for {'/'.join(suffixes)}" for name, suffixes in by_method.items())
    return (f"{registry.AUTO_DENOISE} (default): chosen per image by its contrast, {auto}, "
            f"{default} for the others (docs/benchmarks/denoise.md); "
            + "; ".join(f"{m.name}: {m.summary} ({m.cited})"
                        for m in registry.DENOISE_METHODS.values() if m.offered))


def model_steps(chain: list[str], denoise_method: str | None) -> list[str]:
    """The steps of ``chain`` that run a trained model: the generative ones, and ``denoise``
    with the learned method."""
    return [s for s in chain if s in GENERATIVE_STEPS
            or (s == registry.DENOISE.name and denoise_method in registry.LEARNED_METHODS)]


def _parse_checkpoints(parser: argparse.ArgumentParser, values: list[str] | None,
                       chain: list[str], denoise_method: str | None = None) -> dict[str, str]:
    """``--checkpoint [STEP=]PATH`` values → {step: path}."""
    generative = model_steps(chain, denoise_method)
    out: dict[str, str] = {}
    for value in values or []:
        step, sep, path = str(value).partition("=")
        if sep and step == registry.DENOISE.name and step not in generative:
            parser.error(f"--checkpoint {value}: the denoise step runs a model only with "
                         f"--denoise-method {registry.LEARNED_METHODS[0]}")
        if not sep or step not in generative and step not in GENERATIVE_STEPS:
            step, path = "", str(value)
            if len(generative) != 1:
                wanted = (f"the steps {', '.join(generative)}" if generative
                          else "no generative step (add e.g. --enhance superres)")
                parser.error(f"--checkpoint {value} does not say which step it is for and "
                             f"--enhance requests {wanted}; write --checkpoint STEP=PATH with "
                             f"STEP one of {', '.join(GENERATIVE_STEPS)}")
            step = generative[0]
        if step not in chain:
            parser.error(f"--checkpoint {value} is for {step}, which --enhance "
                         f"{' '.join(chain)} does not request; add it to --enhance or drop "
                         "the checkpoint")
        if step in out:
            parser.error(f"--checkpoint gives two models for {step} ({out[step]} and {path}); "
                         "pass one")
        if not path:
            parser.error(f"--checkpoint {value} names no file")
        out[step] = path
    return out


def _check_enhancement(parser: argparse.ArgumentParser, opts: argparse.Namespace
                       ) -> tuple[list[str], dict[str, str], dict[str, dict]]:
    """The chain in its fixed order, the ``--checkpoint`` values, and every generative step's
    verified model (:func:`bids_enhance.inference.weights.resolve_model`)."""
    chain = [s for s in ENHANCEMENTS if s in opts.enhance]
    x2 = [s for s in chain if registry.STEPS[s].x2]
    if len(x2) > 1:
        parser.error(f"--enhance {' and '.join(x2)} exclude each other (both super-resolve x2"
                     + "".join(f", {s} also removes noise" for s in x2
                               if registry.STEPS[s].removes_noise)
                     + "); choose one")
    method = getattr(opts, "denoise_method", None)
    checkpoints = _parse_checkpoints(parser, opts.checkpoint, chain, method)
    models: dict[str, dict] = {}
    generative = model_steps(chain, method)
    if generative and opts.analysis_level == "participant" and not opts.reports_only:
        from bids_enhance.inference.weights import ModelSelectionError, resolve_model

        for step in generative:
            try:
                models[step] = resolve_model(step, checkpoints.get(step)).to_dict()
            except ModelSelectionError as exc:
                parser.error(str(exc))
    return chain, checkpoints, models


def _is_within(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def parse_args(argv: list[str] | None = None):
    """Parse and validate the command line; return :class:`bids_enhance.config.Settings`."""
    from bids_enhance.config import Settings, read_config_file

    parser = build_parser()
    opts = parser.parse_args(argv)

    if opts.config_file is not None:
        try:
            from_file = read_config_file(opts.config_file)
        except (OSError, ValueError) as exc:
            parser.error(f"--config-file {opts.config_file}: {exc}")
        for key in ("bids_dir", "work_dir", "use_plugin", "bids_database_dir", "resume"):
            if from_file.get(key) is not None:
                from_file[key] = Path(from_file[key])
        _check_file_values(parser, opts.config_file, from_file)
        # action="append" would add the command line's values to the file's: keep them apart
        file_checkpoints = from_file.pop("checkpoint", None)
        # Options given on the command line win over the file: re-parse with the file's values
        # as defaults.
        parser.set_defaults(**from_file)
        opts = parser.parse_args(argv)
        if opts.checkpoint is None and file_checkpoints:
            opts.checkpoint = [str(v) for v in file_checkpoints]
        _check_choices(parser, opts)

    bids_dir = opts.bids_dir.expanduser().absolute()
    output_dir = opts.output_dir.expanduser().absolute()
    if not bids_dir.is_dir():
        parser.error(f"BIDS directory {bids_dir} does not exist")
    if opts.analysis_level != "group" and not (bids_dir / "dataset_description.json").is_file():
        parser.error(f"{bids_dir} is not a BIDS dataset: dataset_description.json is missing")
    if output_dir.resolve() == bids_dir.resolve():
        parser.error(f"the output directory {output_dir} must not be the BIDS directory; "
                     f"use e.g. {bids_dir / 'derivatives' / 'bids_enhance'}")
    if (opts.analysis_level != "group" and _is_within(output_dir, bids_dir)
            and not _is_within(output_dir, bids_dir / "derivatives")):
        parser.error(f"the output directory {output_dir} is inside the BIDS directory but not "
                     "under derivatives/, so a later run would read its images as inputs; "
                     f"use e.g. {bids_dir / 'derivatives' / 'bids_enhance'}")
    work_dir = (opts.work_dir or Path.cwd() / "work").expanduser().absolute()
    if _is_within(work_dir, bids_dir):
        parser.error(f"the work directory {work_dir} is inside the BIDS directory; "
                     "choose another with -w")
    if output_dir.exists() and not output_dir.is_dir():
        parser.error(f"the output path {output_dir} exists and is not a directory")

    filters = _load_filters(parser, opts.bids_filter_file) if opts.bids_filter_file else None
    if isinstance(getattr(opts, "bids_filters", None), dict):  # from a config file
        filters = {**opts.bids_filters, **(filters or {})}
    device = _check_device(parser, opts.device)

    chain, checkpoints, models = _check_enhancement(parser, opts)
    if opts.simulate is not None:
        from bids_enhance.workflows.enhance import simulation_presets

        method = next((m["lowres_method"] for m in models.values() if m["lowres_method"]), None)
        allowed = simulation_presets(chain, lowres_method=method)
        if opts.simulate == "model":  # the degradation the chain's model was trained for
            trained = [m["degradation"] for s, m in models.items()
                       if s != registry.MOTION.name or len(models) == 1]
            if not trained or not trained[-1]:
                parser.error("--simulate model needs a generative step whose checkpoint records "
                             "its training degradation; name a preset instead")
            opts.simulate = trained[-1]
        if not allowed:
            parser.error(f"no simulation preset fits --enhance {' '.join(chain)} (motion and "
                         "x2 super-resolution are not simulated together); simulate one step "
                         "at a time")
        if opts.simulate not in allowed:
            close = difflib.get_close_matches(opts.simulate, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            parser.error(f"--simulate {opts.simulate!r} does not fit --enhance "
                         f"{' '.join(chain)}{hint}; choose from {', '.join(allowed)}")
    if opts.fmriprep_compat and opts.simulate:
        parser.error("--fmriprep-compat and --simulate exclude each other: simulated images "
                     "must not be picked up as preprocessed anatomy")
    if opts.analysis_level == "train" and not opts.model:
        parser.error("the train level needs --model (one of "
                     f"{', '.join(TRAIN_MODELS)})")
    if opts.degradation is not None:
        from bids_enhance.degrade import PRESETS

        if opts.degradation not in PRESETS:
            close = difflib.get_close_matches(opts.degradation, list(PRESETS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            parser.error(f"--degradation {opts.degradation!r} is not a preset{hint}; "
                         f"choose from {', '.join(sorted(PRESETS))}")

    return Settings(
        argv=list(sys.argv[1:] if argv is None else argv),
        bids_dir=bids_dir,
        output_dir=output_dir,
        analysis_level=opts.analysis_level,
        participant_label=opts.participant_label,
        session_label=opts.session_label,
        bids_filters=filters,
        bids_database_dir=(opts.bids_database_dir.expanduser().absolute()
                           if opts.bids_database_dir else None),
        suffix=list(dict.fromkeys(opts.suffix)),
        enhance=chain,
        checkpoint=[f"{k}={v}" for k, v in checkpoints.items()] or None,
        consistency=opts.consistency,
        models=models,
        denoise_method=opts.denoise_method,
        noise_model=opts.noise_model,
        nprocs=opts.nprocs,
        omp_nthreads=opts.omp_nthreads,
        mem_gb=opts.mem_gb,
        gpu_mem_gb=opts.gpu_mem_gb,
        work_dir=work_dir,
        use_plugin=opts.use_plugin,
        stop_on_first_crash=opts.stop_on_first_crash,
        resource_monitor=opts.resource_monitor,
        device=device,
        random_seed=opts.random_seed,
        reports_only=opts.reports_only,
        boilerplate_only=opts.boilerplate_only,
        skip_bids_validation=opts.skip_bids_validation,
        sloppy=opts.sloppy,
        simulate=opts.simulate,
        fmriprep_compat=opts.fmriprep_compat,
        verbose=opts.verbose,
        model=opts.model,
        model_name=opts.model_name or opts.model,
        iterations=opts.iterations,
        patch_size=opts.patch_size,
        batch_size=opts.batch_size,
        val_subjects=opts.val_subjects,
        loss_preset=opts.loss_preset,
        pixel_loss=opts.pixel_loss,
        warmup_iterations=opts.warmup_iterations,
        image_skip=opts.image_skip,
        size=opts.size,
        degradation=opts.degradation,
        checkpoint_every=opts.checkpoint_every,
        validate_every=opts.validate_every,
        resume=opts.resume,
        nproc_per_node=opts.nproc_per_node,
    )
