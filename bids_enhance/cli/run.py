"""Entry point: parse → settings → (validate, query) → workflow → run → reports → exit code.

Exit codes: 0 every image and report succeeded; 1 some image or report failed (the others were
still processed); 2 the arguments or the inputs are unusable (one sentence on stderr).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

LOGGER = logging.getLogger("bids_enhance")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(ValueError):
    """Inputs that make the whole run impossible; reported like an argument error (exit 2)."""


def _setup_logging(verbose: int) -> None:
    level = logging.INFO if verbose == 0 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s [%(name)s] %(levelname)s: %(message)s",
                        datefmt="%y%m%d-%H:%M:%S", stream=sys.stderr, force=True)
    LOGGER.setLevel(level)
    for name in ("matplotlib", "PIL", "bids", "bidsschematools"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    from bids_enhance.cli.parser import parse_args

    settings = parse_args(argv)  # exits 2 with one sentence on bad arguments
    _setup_logging(settings.verbose)
    existed = settings.output_dir.exists()
    try:
        if settings.analysis_level == "group":
            return run_group(settings)
        if settings.analysis_level == "train":
            return run_train(settings)
        return run_participant(settings)
    except UsageError as exc:
        _remove_if_empty(settings.output_dir, existed)
        print(f"bids_enhance: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # disk full, read-only or permission denied outside the workflow
        _remove_if_empty(settings.output_dir, existed)
        print(f"bids_enhance: error: {_os_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        _stop_workers()
        print("bids_enhance: interrupted; no partial file was left under a final name "
              "(rerun the same command to continue)", file=sys.stderr)
        return 130


def _os_error(exc: OSError) -> str:
    """``<file>: <reason>`` in one line (``[Errno 28] No space left …`` without the number)."""
    reason = exc.strerror or str(exc)
    where = exc.filename or ""
    return f"{where}: {reason}" if where else reason


def _remove_if_empty(path: Path, existed: bool) -> None:
    """A refused run leaves nothing behind: remove the output directory it created, if it
    holds nothing but empty folders."""
    import shutil

    if existed or not path.is_dir():
        return
    if any(p.is_file() or p.is_symlink() for p in path.rglob("*")):
        return
    shutil.rmtree(path, ignore_errors=True)


def _worker_initializer(cwd: str) -> None:
    """nipype's MultiProc worker set-up, and Ctrl-C left to the main process: it stops the
    workers itself (:func:`_stop_workers`), so no worker prints a traceback."""
    import signal

    from nipype.pipeline.plugins import multiproc

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # a forked worker inherits the patched module; a forkserver worker imports it afresh
    getattr(multiproc, "_nipype_process_initializer", multiproc.process_initializer)(cwd)


def _install_worker_initializer() -> None:
    from nipype.pipeline.plugins import multiproc

    if not hasattr(multiproc, "_nipype_process_initializer"):
        multiproc._nipype_process_initializer = multiproc.process_initializer
    multiproc.process_initializer = _worker_initializer


def _stop_workers() -> None:
    """Terminate the worker processes of an interrupted run (they ignore SIGINT)."""
    import multiprocessing

    # the pool reports its terminated workers through nipype's callbacks: not the user's news
    logging.getLogger("concurrent.futures").disabled = True
    for child in multiprocessing.active_children():
        try:
            child.terminate()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass


# ----------------------------------------------------------------------------------------------
def run_group(settings) -> int:
    from bids_enhance.reports.group import run_group as write_group

    try:
        paths = write_group(settings.output_dir, settings.suffix)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for path in paths:
        LOGGER.info("Wrote %s", path)
    return EXIT_OK


# ----------------------------------------------------------------------------------------------
def validate_bids(bids_dir: Path, output_dir: Path, run_uuid: str, *,
                  subjects: dict[str, list[Path]]) -> None:
    """Run the official BIDS validator (``bids-validator-deno``) on the input.

    Errors about the selected images themselves (e.g. a singleton 4th dimension) are logged: each
    image is judged again by the sanitiser, which fixes what it can and fails only that image.
    Errors about anything else of the selected subjects, or the dataset's top-level files, stop
    the run (exit 2). Errors in other subjects do not concern this run.
    """
    import json
    import subprocess

    from bids_enhance.utils import atomic_write_text, find_executable

    exe = find_executable("bids-validator-deno")
    if exe is None:
        LOGGER.warning("The BIDS validator (bids-validator-deno) is not installed: input not "
                       "validated. Install it, or pass --skip-bids-validation to silence this.")
        return
    report = output_dir / "logs" / f"bids-validator_{run_uuid}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    LOGGER.info("Validating %s with the BIDS validator", bids_dir)
    proc = subprocess.run([exe, str(bids_dir), "--ignoreWarnings", "--format", "json"],
                          capture_output=True, text=True, timeout=3600, check=False)
    atomic_write_text(report, proc.stdout or proc.stderr)
    try:
        issues = json.loads(proc.stdout)["issues"]["issues"]
    except (json.JSONDecodeError, KeyError, TypeError):
        if proc.returncode == 0:
            return
        raise UsageError(f"the BIDS validator failed on {bids_dir} ({proc.stderr.strip()[:200]}); "
                         "pass --skip-bids-validation to bypass it") from None
    images = {"/" + p.relative_to(bids_dir).as_posix() for paths in subjects.values()
              for p in paths}
    blocking = []
    for issue in issues:
        if issue.get("severity") != "error":
            continue
        location = issue.get("location") or ""
        top = location.strip("/").split("/")[0]
        if location in images:
            LOGGER.warning("BIDS validator: %s in %s (the image is checked again when "
                           "processed)", issue.get("code"), location)
        elif not top.startswith("sub-") or top[4:] in subjects:
            blocking.append(issue)
    if blocking:
        # name first what concerns the images we would process (their own folders), then the
        # dataset's top-level files, then the subjects' other modalities
        folders = {image.rsplit("/", 1)[0] + "/" for image in images}

        def rank(issue: dict) -> int:
            location = issue.get("location") or "/"
            if any(location.startswith(folder) for folder in folders):
                return 0
            return 1 if not location.strip("/").startswith("sub-") else 2

        blocking.sort(key=rank)
        first = blocking[0]
        raise UsageError(
            f"{bids_dir} is not valid BIDS: {first.get('code')} at {first.get('location') or '/'}"
            f"{f' and {len(blocking) - 1} more error(s)' if len(blocking) > 1 else ''} "
            f"(report: {report}); fix the dataset or pass --skip-bids-validation")


def _plugin_settings(settings) -> dict:
    import yaml

    if settings.use_plugin is not None:
        try:
            spec = yaml.safe_load(Path(settings.use_plugin).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"--use-plugin {settings.use_plugin} is not valid YAML ({exc})") \
                from None
        if not isinstance(spec, dict) or "plugin" not in spec:
            raise UsageError(f"--use-plugin {settings.use_plugin} must contain a 'plugin' key "
                             "(e.g. plugin: SLURM)")
        return {"plugin": spec["plugin"], "plugin_args": dict(spec.get("plugin_args") or {})}
    if settings.nprocs == 1:
        return {"plugin": "Linear", "plugin_args": {"status_callback": _status_callback}}
    args = {"n_procs": settings.nprocs, "raise_insufficient": False,
            "status_callback": _status_callback}
    if settings.mem_gb:
        args["memory_gb"] = settings.mem_gb
    from bids_enhance.cli.parser import model_steps

    with_models = model_steps(list(settings.enhance or ()), settings.denoise_method)
    if settings.device != "cpu" or with_models:
        # never fork a process that may hold a CUDA context, nor one whose torch thread pool is
        # running: the checkpoints (generative steps, --denoise-method learned) are loaded and
        # verified here before the workflow starts, and a forked worker then hangs in its first
        # parallel torch op (OpenMP is not fork-safe)
        args["mp_context"] = "forkserver"
    return {"plugin": "MultiProc", "plugin_args": args}


class Progress:
    """What the terminal says while a workflow runs: one line per finished enhancement and per
    written image, whether a step was reused from the work directory, and a heartbeat line
    (elapsed time, what is running) at growing intervals while long steps run, so that the
    first run is never silent for minutes and a cluster job's log is not flooded."""

    #: Seconds before the first heartbeat; each next one waits twice as long, up to the maximum.
    FIRST_HEARTBEAT_S = 30.0
    MAX_HEARTBEAT_S = 300.0

    def __init__(self) -> None:
        import threading

        self.names: dict[tuple[str, str], str] = {}
        self.running: dict[str, tuple[str, float]] = {}
        self.started = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- naming -------------------------------------------------------------------------------
    def set_images(self, subjects: dict[str, list[Path]]) -> None:
        """Map the workflow names of every image back to its BIDS name (``sub-02_ses-1_T1w``)."""
        from nipype.utils.filemanip import split_filename

        from bids_enhance.bids.naming import image_id

        self.names = {(f"sub_{subject}_wf", f"{image_id(path)}_wf"):
                      split_filename(path)[1]
                      for subject, paths in subjects.items() for path in paths}

    def where(self, node) -> str:
        parts = node.fullname.split(".")
        if len(parts) > 3 and (parts[1], parts[2]) in self.names:
            return self.names[(parts[1], parts[2])]
        if len(parts) > 2 and parts[1].startswith("sub_"):
            return "sub-" + parts[1].removeprefix("sub_").removesuffix("_wf")
        return node.name

    # -- the nipype status callback ------------------------------------------------------------
    def __call__(self, node, status: str) -> None:
        import time

        try:  # the callback must never break a run
            key = node.fullname
            if status == "start":
                with self._lock:
                    self.running[key] = (f"{self.where(node)} {node.name}", time.monotonic())
                return
            with self._lock:
                self.running.pop(key, None)
            if status == "exception":
                LOGGER.warning("%s: %s failed (details at the end)", self.where(node), node.name)
            elif status == "end" and node.name in {"denoise", "enhance", "ds_image"}:
                self._finished(node)
        except Exception:  # noqa: BLE001
            return

    def _finished(self, node) -> None:
        from datetime import datetime

        result = node.result
        runtime = result.runtime
        seconds = float(getattr(runtime, "duration", 0.0) or 0.0)
        if node.name == "ds_image":
            LOGGER.info("%s: wrote %s", self.where(node), result.outputs.out_file)
            return
        ended = getattr(runtime, "endTime", None)
        reused = False
        if ended:
            try:
                reused = datetime.fromisoformat(str(ended)).timestamp() < self.started
            except ValueError:
                reused = False
        if reused:
            LOGGER.info("%s: %s reused from the work directory (it took %.1f s in an earlier "
                        "run)", self.where(node), node.name, seconds)
        else:
            LOGGER.info("%s: %s finished in %.1f s", self.where(node), node.name, seconds)

    # -- heartbeat -----------------------------------------------------------------------------
    def __enter__(self):
        import threading
        import time

        self.started = time.time()
        self.running.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="bids_enhance-heartbeat",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def _beat(self) -> None:
        import time

        wait = self.FIRST_HEARTBEAT_S
        while not self._stop.wait(wait):
            now = time.monotonic()
            with self._lock:
                running = sorted(self.running.values(), key=lambda item: item[1])
            if running:
                what = ", ".join(f"{label} ({_duration(now - since)})"
                                 for label, since in running[:4])
                more = f" and {len(running) - 4} more" if len(running) > 4 else ""
                LOGGER.info("still running after %s: %s%s", _duration(time.time() - self.started),
                            what, more)
            wait = min(wait * 2, self.MAX_HEARTBEAT_S)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


#: The status callback of the participant and train levels.
PROGRESS = Progress()


def _status_callback(node, status: str) -> None:
    PROGRESS(node, status)


def _configure_nipype(settings) -> None:
    from nipype import config as ncfg
    from nipype import logging as nlogging

    # nipype logs whole tracebacks on failure; by default we print one line per failure
    # ourselves (and progress lines through _status_callback) and leave the tracebacks to the
    # crash files. nipype has its own stdout handler: do not also pass records to ours.
    level = {0: "CRITICAL", 1: "INFO"}.get(settings.verbose, "DEBUG")
    ncfg.update_config({"logging": {"workflow_level": level, "interface_level": level,
                                    "utils_level": level, "filemanip_level": level}})
    nlogging.update_logging(ncfg)
    logging.getLogger("nipype").propagate = False
    ncfg.update_config({
        "execution": {
            "crashfile_format": "txt",
            "stop_on_first_crash": settings.stop_on_first_crash,
            "hash_method": "content",
            "check_version": False,
            "get_linked_libs": False,
            "remove_unnecessary_outputs": False,
            "parameterize_dirs": False,
        },
        "monitoring": {"enabled": settings.resource_monitor},
    })
    if settings.resource_monitor:
        ncfg.enable_resource_monitor()


def crash_messages(log_dir: Path) -> list[tuple[Path, str]]:
    """One line per crash file in ``log_dir``: the innermost exception message (read as the
    report reads it, :func:`~bids_enhance.reports.assemble.parse_crash_file`)."""
    from bids_enhance.reports.assemble import parse_crash_file

    out = []
    for crash in sorted(log_dir.glob("crash-*.txt")):
        info = parse_crash_file(crash)
        if info["error"] in (None, "NodeExecutionError"):  # no wrapped error named
            message = "unknown error (see the crash file)"
        else:  # the message without the exception's name ("MemoryError" alone if it has none)
            message = info["message"].removeprefix(f"{info['error']}: ")
        out.append((crash, message))
    return out


def _warn_about_method_for_contrast(settings, subjects) -> None:
    """An explicit ``--denoise-method`` that ``auto`` would not choose for some of the images'
    contrasts (PRI-NLM for PD-weighted images): say so once per contrast. Not for the learned
    method, whose output is already averaged with PRI-NLM's where SURE finds that better."""
    from bids_enhance import steps as registry
    from bids_enhance.bids.naming import suffix_of

    method = settings.denoise_method
    if registry.DENOISE.name not in (settings.enhance or ()) or method == registry.AUTO_DENOISE:
        return
    suffixes = {suffix_of(p) for images in subjects.values() for p in images}
    for suffix in sorted(suffixes & set(registry.AUTO_DENOISE_BY_SUFFIX)):
        preferred = registry.AUTO_DENOISE_BY_SUFFIX[suffix]
        if method in registry.LEARNED_METHODS and preferred in registry.LEARNED_AGGREGATES:
            continue  # the learned method averages itself with it, SURE choosing the weight
        if preferred != method:
            LOGGER.warning(
                "--denoise-method %s on %s images: on this contrast %s led the other methods "
                "at high noise in the benchmark (docs/benchmarks/denoise.md); "
                "--denoise-method auto gives each contrast its own method", method, suffix,
                registry.DENOISE_METHODS[preferred].abbreviation)


def run_participant(settings) -> int:
    from bids_enhance.bids.dataset import (
        write_bidsignore,
        write_dataset_description,
        write_descriptions,
    )
    from bids_enhance.bids.layout import BIDSInputError, collect_images, make_layout
    from bids_enhance.utils import remove_stale_temporaries

    out = settings.output_dir
    try:  # nothing is created before the inputs and the settings are known to be usable
        layout = make_layout(settings.bids_dir, database_dir=settings.bids_database_dir)
        subjects = collect_images(layout, participant_label=settings.participant_label,
                                  session_label=settings.session_label,
                                  suffixes=settings.suffix, filters=settings.bids_filters)
    except BIDSInputError as exc:
        raise UsageError(str(exc)) from None
    planned = planned_outputs(settings, subjects)
    plugin = _plugin_settings(settings)
    n_images = sum(len(v) for v in subjects.values())
    LOGGER.info("Found %d image(s) of %d participant(s): %s", n_images, len(subjects),
                ", ".join(subjects))
    _warn_about_method_for_contrast(settings, subjects)

    check_writable(out, "output directory")
    stale = remove_stale_temporaries(out)
    if stale:
        LOGGER.info("Removed %d temporary file(s) an interrupted run left behind", len(stale))
    if not (settings.skip_bids_validation or settings.reports_only):
        validate_bids(settings.bids_dir, out, settings.run_uuid, subjects=subjects)

    if settings.reports_only:
        return _reports(settings, subjects, run_uuid=_latest_run_uuid(settings, subjects))

    check_writable(settings.work_dir, "work directory")
    _configure_nipype(settings)  # before building: nodes copy the configuration
    try:
        workflow = build_workflow(settings, subjects)
    except BIDSInputError as exc:  # metadata the workflow needs is unusable
        raise UsageError(str(exc)) from None
    PROGRESS.set_images(subjects)
    check_memory(workflow, settings, plugin)
    write_dataset_description(out, settings.bids_dir)
    write_bidsignore(out)
    _write_boilerplate(out, workflow)
    if settings.boilerplate_only:
        LOGGER.info("Wrote the methods text to %s", out / "logs")
        return EXIT_OK

    for subject in subjects:
        log_dir = settings.log_dir(subject)
        log_dir.mkdir(parents=True, exist_ok=True)
        settings.dump_toml(log_dir / "bids_enhance.toml")

    _set_crash_dirs(workflow, settings, subjects)
    _install_worker_initializer()
    LOGGER.info("Running %s with the %s plugin (work directory %s)", workflow.name,
                plugin["plugin"], settings.work_dir)
    error: Exception | None = None
    with subject_locks(settings.work_dir / workflow.name, subjects), PROGRESS:
        try:
            workflow.run(**plugin)
        except Exception as exc:  # nipype raises after finishing what it could
            error = exc

    causes = _failure_causes([f"sub-{subject}: {message} (details: {crash})"
                              for subject in subjects
                              for crash, message in crash_messages(settings.log_dir(subject))],
                             error)
    missing = [(source, target) for source, target in planned.items() if not target.exists()]
    if not causes:  # an output is missing although nothing reported a failure
        causes += [f"{source.name}: no output was written ({target.name} is missing)"
                   for source, target in missing]
    for cause in causes:
        LOGGER.error(cause)
    write_descriptions(out, _descriptions(settings))
    status = _reports(settings, subjects, run_uuid=settings.run_uuid)
    if causes:
        written = len(planned) - len(missing)
        LOGGER.error("%d of %d image(s) written%s. Outputs: %s", written, len(planned),
                     "; rerun the same command to retry the others (finished steps are reused)"
                     if written < len(planned) else "; a report step failed", out)
        return EXIT_FAILED
    LOGGER.info("Done: %d image(s) written; outputs in %s", len(planned), out)
    return status


def _failure_causes(crashes: list[str], error: Exception | None, *, prefix: str = ""
                    ) -> list[str]:
    """One line per crashed node; when nipype raised without a crash file, the run itself
    failed (e.g. its work directory): that exception in one line."""
    if error is None or crashes:
        return crashes
    text = " ".join(str(error).split()) or type(error).__name__
    text = text if len(text) <= 300 else text[:297] + "..."
    return [f"{prefix}the workflow did not run: {text}"]


def planned_outputs(settings, subjects: dict[str, list[Path]]) -> dict[Path, Path]:
    """The final image each input will be written to; two inputs never share one."""
    from bids_enhance.bids.naming import derivative_path
    from bids_enhance.workflows.enhance import X2_RES_LABEL, is_x2, output_desc

    simulated = settings.simulate is not None
    desc = output_desc(settings.enhance, simulated=simulated)
    res = X2_RES_LABEL if is_x2(settings.enhance) and not simulated else None
    planned: dict[Path, Path] = {}
    owners: dict[Path, Path] = {}
    for images in subjects.values():
        for source in images:
            target = derivative_path(settings.output_dir, source, desc=desc, res=res,
                                     extension=".nii.gz")
            if target in owners:
                raise UsageError(f"{source} and {owners[target]} would both be written to "
                                 f"{target.name}; select one of them (--bids-filter-file)")
            owners[target] = source
            planned[source] = target
    return planned


#: Less free space than this on the output or work directory's disk is refused up front.
MIN_FREE_BYTES = 64 * 1024 ** 2


def check_writable(path: Path, what: str) -> None:
    """Create ``path`` if needed and prove it writable with room to spare (exit 2 if not)."""
    import os
    import shutil
    import tempfile

    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=path)
        try:
            os.write(fd, b"bids_enhance")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
        free = shutil.disk_usage(path).free
    except OSError as exc:
        raise UsageError(f"the {what} {path} is not writable: {exc.strerror or exc}") from None
    if free < MIN_FREE_BYTES:
        raise UsageError(f"the {what} {path} is on a full disk ({free / 1024 ** 2:.0f} MB free); "
                         "free some space or choose another")


def check_memory(workflow, settings, plugin: dict) -> None:
    """Refuse a ``--mem`` budget below what the largest step needs: MultiProc would wait for
    it forever. Generative inference adapts its patch size to the budget (down to 0.5 GB)."""
    if settings.mem_gb is None or plugin["plugin"] not in {"MultiProc", "Linear"}:
        return
    from nipype.pipeline.engine import Workflow

    def nodes(wf, path=()):
        for node in wf._graph.nodes():
            if isinstance(node, Workflow):
                yield from nodes(node, (*path, node.name))
            else:
                image = PROGRESS.names.get(tuple(path[:2]))  # its BIDS name, e.g. sub-01_T1w
                rest = path[2:] if image else path
                parts = [*([image] if image else []), *(p.removesuffix("_wf") for p in rest),
                         node.name]
                yield " ".join(p for i, p in enumerate(parts) if i == 0 or p != parts[i - 1]), \
                    node

    need, where = 0.0, ""
    for name, node in nodes(workflow):
        mem = min(float(node.mem_gb), 0.5) if node.name == "enhance" else float(node.mem_gb)
        if mem > need:
            need, where = mem, name
    if settings.mem_gb < need:
        given = (f"{settings.mem_gb * 1000:.0f} MB" if settings.mem_gb < 1
                 else f"{settings.mem_gb:.3g} GB")
        raise UsageError(f"--mem {given} is less than the {need:.2f} GB the largest step "
                         f"needs ({where}); give at least --mem {need:.2f}G")


@contextlib.contextmanager
def subject_locks(root: Path, subjects) -> Iterator[None]:
    """Hold one lock file per subject in the work directory for the run: a second run on the
    same work directory and subject waits for the first (then reuses its results) instead of
    both writing the same node folders."""
    from bids_enhance.utils import file_lock

    with contextlib.ExitStack() as stack:
        for subject in sorted(subjects):  # in sorted order: two runs never deadlock
            stack.enter_context(file_lock(
                Path(root) / f".sub-{subject}.lock",
                on_wait=lambda s=subject: LOGGER.warning(
                    "sub-%s: waiting for another run that uses this work directory for the "
                    "same participant", s)))
        yield


def _descriptions(settings) -> dict[str, str]:
    """``descriptions.tsv`` rows of the labels this run writes."""
    from bids_enhance.bids.dataset import DESCRIPTIONS
    from bids_enhance.workflows.enhance import chain_description, output_desc

    simulated = settings.simulate is not None
    label = output_desc(settings.enhance, simulated=simulated)
    rows = {label: DESCRIPTIONS.get(label)
            or chain_description(settings.enhance, simulated=simulated)}
    for extra, wanted in (("simulated", simulated), ("preproc", settings.fmriprep_compat)):
        if wanted:
            rows[extra] = DESCRIPTIONS[extra]
    return rows


def split_subjects(subjects: dict[str, list[Path]], val_subjects: list[str] | None
                   ) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Training and held-out subjects; whole subjects stay in one split."""
    labels = sorted(subjects)
    if val_subjects:
        missing = sorted(set(val_subjects) - set(labels))
        if missing:
            raise UsageError(f"--val-subjects {' '.join(missing)} not among the selected "
                             f"participants ({', '.join(labels)})")
        held = sorted(set(val_subjects))
    else:
        held = labels[-max(1, len(labels) // 10):] if len(labels) > 1 else []
    train = {s: subjects[s] for s in labels if s not in held}
    if not train:
        raise UsageError(f"no training subject left after holding out {', '.join(held)}; "
                         "select more participants or fewer --val-subjects")
    if not held:
        raise UsageError(f"training needs at least 2 participants (one is held out to evaluate "
                         f"the model); only {', '.join(labels)} was selected")
    return train, {s: subjects[s] for s in held}


def _check_training_images(images: list[Path], *, task: str, patch_size: int) -> None:
    """Every image must hold a whole training patch (read from the headers only)."""
    import nibabel as nib

    for path in images:
        try:
            shape = nib.load(str(path)).shape[:3]
        except Exception as exc:
            raise UsageError(f"{path}: cannot read the image header ({exc})") from None
        needed = patch_size
        dims = shape if task != "motion-ddpm" else sorted(shape)[1:]
        if min(dims) < needed:
            raise UsageError(f"{path}: shape {'×'.join(map(str, shape))} is smaller than "
                             f"--patch-size {patch_size}; choose a smaller patch size")


def run_train(settings) -> int:
    """``bids_enhance BIDS_DIR OUT train --model …``: train, evaluate, write the model card."""

    from bids_enhance.bids.layout import BIDSInputError, collect_images, make_layout
    from bids_enhance.workflows.training import init_training_wf

    try:
        layout = make_layout(settings.bids_dir, database_dir=settings.bids_database_dir)
        subjects = collect_images(layout, participant_label=settings.participant_label,
                                  session_label=settings.session_label,
                                  suffixes=settings.suffix, filters=settings.bids_filters)
    except BIDSInputError as exc:
        raise UsageError(str(exc)) from None
    train_images, val_images = split_subjects(subjects, settings.val_subjects)
    config = _train_config(settings)
    _check_training_images([p for v in subjects.values() for p in v], task=settings.model,
                           patch_size=settings.patch_size)
    if not settings.skip_bids_validation:
        validate_bids(settings.bids_dir, settings.output_dir, settings.run_uuid,
                      subjects=subjects)
    LOGGER.info("Training %s on %d image(s) of %s; held out: %s", settings.model,
                sum(map(len, train_images.values())), ", ".join(train_images),
                ", ".join(val_images))
    plugin = _plugin_settings(settings)
    check_writable(settings.output_dir, "output directory")
    check_writable(settings.work_dir, "work directory")
    log_dir = settings.output_dir / "logs" / settings.run_uuid
    log_dir.mkdir(parents=True, exist_ok=True)
    settings.dump_toml(log_dir / "bids_enhance.toml")
    _configure_nipype(settings)
    seeds = {str(p): settings.seed_for("simulate", Path(p).relative_to(settings.bids_dir)
                                       .as_posix())
             for paths in val_images.values() for p in paths}
    workflow = init_training_wf(
        train_images=train_images, val_images=val_images, bids_dir=settings.bids_dir,
        output_dir=settings.output_dir, model_name=settings.model_name, config=config,
        device=settings.device, omp_nthreads=settings.omp_nthreads, seeds=seeds,
        command=["bids_enhance", *settings.argv], nproc_per_node=settings.nproc_per_node,
        resume=settings.resume, base_dir=settings.work_dir)
    workflow.config["execution"]["crashdump_dir"] = str(log_dir)
    workflow.config["execution"]["crashfile_format"] = "txt"
    for node in workflow._get_all_nodes():
        node.config = dict(workflow.config)
    error: Exception | None = None
    _install_worker_initializer()
    with PROGRESS:
        try:
            workflow.run(**plugin)
        except Exception as exc:  # nipype raises after finishing what it could
            error = exc
    causes = _failure_causes([f"training: {message} (details: {crash})"
                              for crash, message in crash_messages(log_dir)], error,
                             prefix="training: ")
    model_dir = settings.output_dir / "models" / settings.model_name
    if not causes and not (model_dir / "checkpoint.pt").is_file():
        causes.append(f"training: no model was written ({model_dir / 'checkpoint.pt'} is "
                      "missing)")
    for cause in causes:
        LOGGER.error(cause)
    if causes:
        from bids_enhance.training.launch import CHECKPOINT_NAME, state_dir_for

        partial = state_dir_for(model_dir.parent, settings.model_name) / CHECKPOINT_NAME
        if partial.is_file():  # an interrupted run: its last periodic checkpoint is kept there
            LOGGER.error("training: the run's last checkpoint is %s; run the same command "
                         "with --resume %s to continue it", partial, partial)
        return EXIT_FAILED
    LOGGER.info("Model and model card: %s", model_dir)
    return EXIT_OK


def _train_config(settings) -> dict:
    """TrainConfig fields from the settings; invalid combinations are usage errors."""
    from bids_enhance.training import TrainConfig

    fields = {
        "task": settings.model, "iterations": settings.iterations,
        "batch_size": settings.batch_size, "patch_size": settings.patch_size,
        "seed": settings.seed_for("train"), "device": settings.device,
        "checkpoint_every": settings.checkpoint_every,
        "validate_every": settings.validate_every,
        "warmup_iterations": settings.warmup_iterations,
    }
    if settings.model == "denoise" and not settings.warmup_iterations:
        fields["warmup_iterations"] = settings.iterations  # a pixel-loss (PSNR) denoiser
    if settings.model != "motion-ddpm":
        fields["loss_preset"] = settings.loss_preset
        fields["pixel_loss"] = getattr(settings, "pixel_loss", "l1")
    elif getattr(settings, "pixel_loss", "l1") != "l1":
        raise UsageError("--pixel-loss applies to the generators of gan3p, disgan, motion-gan "
                         "and denoise, not to motion-ddpm (it predicts noise)")
    if settings.degradation:
        fields["degradation"] = settings.degradation
    size = getattr(settings, "size", "thesis")
    if size != "thesis":
        from bids_enhance.models.registry import size_preset

        fields.update(size_preset(size, settings.model))
    if settings.sloppy:  # tiny networks: smoke tests of the whole training path
        if settings.model == "motion-ddpm":
            fields["unet"] = {"features": 8, "channel_mults": [1, 2], "num_res_blocks": 1,
                              "attention": False, "norm_groups": 4}
        else:
            fields.update(generator={"features": 8, "growth": 4, "num_blocks": 1},
                          critic={"widths": [8, 16]},
                          feature_extractor={"widths": [8, 8, 16, 16]})
    if settings.image_skip:
        if settings.model == "motion-ddpm":
            raise UsageError("--image-skip applies to the RRDB generator of gan3p, disgan, "
                             "motion-gan and denoise, not to motion-ddpm")
        fields.setdefault("generator", {})["image_skip"] = True
    try:
        return TrainConfig(**fields).to_dict()
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid training settings: {exc}") from None


def build_workflow(settings, subjects):
    from bids_enhance.workflows.base import init_bids_enhance_wf
    from bids_enhance.workflows.spec import ChainSpec

    seeds = {str(p): settings.seed_for(Path(p).relative_to(settings.bids_dir).as_posix())
             for images in subjects.values() for p in images}
    return init_bids_enhance_wf(
        subjects=subjects, bids_dir=settings.bids_dir, output_dir=settings.output_dir,
        spec=ChainSpec.from_settings(settings), seeds=seeds, base_dir=settings.work_dir)


def inference_budget_gb(settings) -> float | None:
    """Memory budget of one generative inference node (the chain spec's ``mem_budget_gb``):
    see :func:`bids_enhance.workflows.spec.inference_budget_gb`."""
    from bids_enhance.workflows.spec import inference_budget_gb as budget

    return budget(settings)


def _set_crash_dirs(workflow, settings, subjects) -> None:
    """Crash files of each subject go to its own ``log/<run_uuid>`` (as fMRIPrep does)."""
    from copy import deepcopy

    for subject in subjects:
        sub_wf = workflow.get_node(f"sub_{subject}_wf")
        sub_wf.config = deepcopy(sub_wf.config or {})
        execution = sub_wf.config.setdefault("execution", {})
        execution["crashdump_dir"] = str(settings.log_dir(subject))
        execution["crashfile_format"] = "txt"
        for node in sub_wf._get_all_nodes():
            node.config = deepcopy(sub_wf.config)


def _write_boilerplate(output_dir: Path, workflow) -> None:
    from bids_enhance.reports.boilerplate import write_citation_files

    # Every subject runs the same methods: visit_desc() drops repeated paragraphs.
    write_citation_files(output_dir, workflow.visit_desc())


def _latest_run_uuid(settings, subjects) -> str:
    runs = sorted(p.name for s in subjects
                  for p in (settings.output_dir / f"sub-{s}" / "log").glob("*") if p.is_dir())
    return runs[-1] if runs else settings.run_uuid


def _reports(settings, subjects, *, run_uuid: str) -> int:
    from bids_enhance.reports.assemble import generate_report

    status = EXIT_OK
    for subject in subjects:
        try:
            path = generate_report(settings.output_dir, subject, run_uuid)
        except Exception as exc:  # a report failing must not hide the others
            LOGGER.error("sub-%s: the report could not be written (%s)", subject, exc)
            status = EXIT_FAILED
        else:
            LOGGER.info("Report: %s", path)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
