"""The training loop shared by all four tasks, checkpoints, exact resumption, and :func:`train`.

Files written to ``out_dir`` (rank 0 only):

=========================  ====================================================================
``checkpoint.pt``          self-describing checkpoint (:func:`bids_enhance.models.save_checkpoint`)
                           of the network to ship: the generator (GANs) or the U-Net with its
                           EMA weights (diffusion); ``extra`` holds the task, iteration, resolved
                           config and task details (loss weights; noise schedule, prediction,
                           intensity map …); ``degradation`` the preset and every record.
``checkpoint_state.pt``    everything else needed to continue bit for bit: all networks
                           (critic, feature extractor …), optimiser states, the step RNG, torch's
                           global RNG states, the patch-stream position, validation history and
                           the checkpoint's sha256 (the pair must match). Plain tensors and
                           containers, read with ``torch.load(weights_only=True)``.
``losses.csv``             one row per iteration (:mod:`bids_enhance.training.monitor`)
``validation.csv``         one row per validation
``losses.png``             loss curves and validation metrics, written at the end
=========================  ====================================================================

Both checkpoint files are replaced atomically every ``checkpoint_every`` iterations and at the
end. The learning-rate schedule is a pure function of the iteration, so there is no scheduler
state to save.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bids_enhance.models import CheckpointError, read_checkpoint, save_checkpoint
from bids_enhance.models.checkpoint import safe_load_failure, save_torch_atomic
from bids_enhance.training.base import Trainer
from bids_enhance.training.config import TrainConfig, resume_mismatches
from bids_enhance.training.ddp import DistributedContext
from bids_enhance.training.monitor import TrainingMonitor

__all__ = ["CHECKPOINT_NAME", "STATE_FORMAT", "TrainingResult", "build_trainer", "fit",
           "state_path_for", "train"]

LOGGER = logging.getLogger("bids_enhance.training")

CHECKPOINT_NAME = "checkpoint.pt"
VALIDATION_CHECKPOINT_NAME = "validation_checkpoint.pt"
STATE_FORMAT = "bids_enhance.training_state"
STATE_FORMAT_VERSION = 1

Evaluator = Callable[..., Mapping[str, float]]


@dataclass
class TrainingResult:
    """What a training run produced (paths are ``None`` on ranks other than 0)."""

    task: str
    iterations: int
    wall_time_s: float
    session_time_s: float
    iterations_per_s: float
    device: str
    world_size: int
    precision: str
    seed: int
    metrics: dict[str, float]
    final_losses: dict[str, float]
    checkpoint: Path | None
    checkpoint_sha256: str | None
    state: Path | None
    losses_csv: Path | None
    validation_csv: Path | None
    plot: Path | None
    config: dict[str, Any]
    degradation_records: list[dict[str, Any]] = field(default_factory=list)
    validation_history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (paths as strings; use :func:`bids_enhance.utils.json_safe` for NaN)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
        return out


def build_trainer(config: TrainConfig, *, context: DistributedContext | None = None) -> Trainer:
    """The trainer of ``config.task``: :class:`~bids_enhance.training.gan.GANTrainer` or
    :class:`~bids_enhance.training.diffusion.DiffusionTrainer`."""
    if config.is_gan:
        from bids_enhance.training.gan import GANTrainer

        return GANTrainer(config, context=context)
    from bids_enhance.training.diffusion import DiffusionTrainer

    return DiffusionTrainer(config, context=context)


def state_path_for(checkpoint: str | os.PathLike[str]) -> Path:
    """``…/checkpoint.pt`` → ``…/checkpoint_state.pt``."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}_state.pt")


def _rng_states(device: torch.device) -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


class _Prefetcher:
    """Draws the next batches in a background thread (CUDA only), pinned for asynchronous
    host-to-device copies, so patch sampling overlaps the GPU's work on the current step.

    The stream is still consumed by one thread in order, so the batches are the same as without
    prefetching; each comes with the stream position after it, which is what a checkpoint
    records (not the position of batches drawn ahead). Only used with CUDA devices: there the
    step's randomness comes from CUDA generators, while TorchIO's sampling swaps torch's CPU RNG
    state (see :class:`~bids_enhance.training.seeding.IsolatedTorchRNG`), so the two threads
    never share an RNG.
    """

    def __init__(self, stream: Any, *, batch_size: int, rank: int, world_size: int,
                 count: int, depth: int = 2, pin: bool = True) -> None:
        import queue
        import threading

        self._queue: Any = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._full = queue.Full

        def work() -> None:
            try:
                for _ in range(count):
                    if self._stop.is_set():
                        return
                    source, target = stream.next_batch(batch_size, rank=rank,
                                                       world_size=world_size)
                    if pin:
                        source, target = source.pin_memory(), target.pin_memory()
                    self._put((stream.position, source, target))
            except BaseException as exc:  # handed to the consumer
                self._put(exc)

        self._thread = threading.Thread(target=work, name="patch-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except self._full:
                continue

    def next(self) -> tuple[int, torch.Tensor, torch.Tensor]:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _accepts_checkpoint(evaluate: Evaluator) -> bool:
    try:
        return "checkpoint" in inspect.signature(evaluate).parameters
    except (TypeError, ValueError):
        return False


class _Session:
    """Bookkeeping of one :func:`fit` call."""

    def __init__(self, trainer: Trainer, stream: Any, out_dir: Path, *,
                 normalisation: Any, training_command: Any) -> None:
        self.trainer = trainer
        self.stream = stream
        self.out_dir = out_dir
        self.checkpoint = out_dir / CHECKPOINT_NAME
        self.state = state_path_for(self.checkpoint)
        self.normalisation = normalisation
        self.training_command = training_command
        self.history: list[dict[str, float]] = []
        self.previous_wall = 0.0
        self.sha256: str | None = None

    def checkpoint_metadata(self, iteration: int) -> dict[str, Any]:
        t = self.trainer
        return dict(
            arch_name=t.arch_name, arch_kwargs=t.arch_kwargs,
            degradation={"preset": t.config.degradation,
                         "records": list(getattr(self.stream, "records", []))},
            normalisation=self.normalisation, seed=t.config.seed,
            training_command=self.training_command,
            extra={"task": t.config.task, "iteration": int(iteration),
                   "config": t.config.to_dict(), "world_size": t.context.world_size,
                   **t.checkpoint_extra()})

    def save(self, iteration: int, wall: float, stream_position: int | None = None) -> None:
        t = self.trainer
        if not t.context.is_main:
            return
        sha = save_checkpoint(self.checkpoint, model=t.main_model, ema_model=t.ema_model,
                              **self.checkpoint_metadata(iteration))
        stream_state = self.stream.state_dict() if self.stream is not None else None
        if stream_state is not None and stream_position is not None:
            stream_state["position"] = int(stream_position)
        state = {
            "format": STATE_FORMAT, "format_version": STATE_FORMAT_VERSION,
            "iteration": int(iteration), "task": t.config.task, "config": t.config.to_dict(),
            "checkpoint_sha256": sha, "trainer": t.state_dict(),
            "stream": stream_state,
            "rng": _rng_states(t.device), "wall_time_s": float(wall),
            "world_size": int(t.context.world_size), "history": list(self.history),
        }
        save_torch_atomic(state, self.state)
        self.sha256 = sha
        LOGGER.info("checkpoint at iteration %d: %s", iteration, self.checkpoint)

    def restore(self, resume: str | os.PathLike[str]) -> int:
        t = self.trainer
        path = Path(resume)
        if path.is_dir():
            path = path / CHECKPOINT_NAME
        payload = read_checkpoint(path, map_location="cpu")
        state_file = state_path_for(path)
        if not state_file.is_file():
            raise FileNotFoundError(f"cannot resume from {path}: its training state "
                                    f"{state_file.name} is missing next to it")
        try:
            state = torch.load(state_file, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{state_file}: not a bids_enhance training state (cannot be "
                                  f"read as a safe torch file of tensors and plain data: "
                                  f"{safe_load_failure(exc)})") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{state_file} is not a bids_enhance training state")
        if state.get("checkpoint_sha256") != payload["sha256"]:
            raise CheckpointError(
                f"{path.name} and {state_file.name} do not belong together (the state was "
                f"written for checkpoint sha256 {state.get('checkpoint_sha256')}, the file has "
                f"{payload['sha256']}); was the last save interrupted or a file replaced?")
        if state.get("task") != t.config.task:
            raise ValueError(f"cannot resume a {state.get('task')!r} run as task "
                             f"{t.config.task!r}")
        mismatches = resume_mismatches(state["config"], t.config.to_dict())
        saved_warmup = state["config"].get("warmup_iterations", 0)
        # still inside both warm-ups: nothing computed so far depends on where it ends
        in_warmup = int(state["iteration"]) <= min(saved_warmup, t.config.warmup_iterations)
        if in_warmup:
            mismatches = [m for m in mismatches if not m.startswith("warmup_iterations:")]
        if mismatches:
            raise ValueError("cannot resume with different settings (only "
                             "iterations, checkpoint_every, validate_every, log_every, device, "
                             "compile may change, and warmup_iterations while the run is "
                             "still in its warm-up): " + "; ".join(mismatches))
        saved_anneal = state["config"].get("instance_noise_iterations")
        if t.config.is_gan and saved_anneal != t.config.instance_noise_iterations and \
                not in_warmup:  # an annealing that has started is not bent
            LOGGER.info("keeping the checkpoint's instance_noise_iterations=%s (not %s)",
                        saved_anneal, t.config.instance_noise_iterations)
            t.config.instance_noise_iterations = saved_anneal
        iteration = int(state["iteration"])
        if iteration > t.config.iterations:
            raise ValueError(f"the checkpoint is at iteration {iteration}, beyond iterations="
                             f"{t.config.iterations}; ask for at least {iteration}")
        if int(state.get("world_size", 1)) != t.context.world_size:
            LOGGER.warning("resuming a run of %s process(es) with %d: the global batch changes, "
                           "so the continuation is not bit-identical", state.get("world_size"),
                           t.context.world_size)
        t.load_state_dict(state["trainer"])
        if self.stream is not None and state.get("stream") is not None:
            self.stream.load_state_dict(state["stream"])
        rng = state.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and t.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], t.device)
        self.previous_wall = float(state.get("wall_time_s", 0.0))
        self.history = [dict(h) for h in state.get("history", [])]
        self.sha256 = payload["sha256"]
        LOGGER.info("resuming %s from iteration %d (%s)", t.config.task, iteration, path)
        return iteration

    def validate(self, evaluate: Evaluator, iteration: int, monitor: TrainingMonitor) -> dict:
        t = self.trainer
        model = t.inference_model()
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                if _accepts_checkpoint(evaluate):
                    path = self.out_dir / VALIDATION_CHECKPOINT_NAME
                    save_checkpoint(path, model=t.main_model, ema_model=t.ema_model,
                                    **self.checkpoint_metadata(iteration))
                    metrics = evaluate(model, checkpoint=path)
                else:
                    metrics = evaluate(model)
        finally:
            model.train(was_training)
        metrics = {k: float(v) for k, v in dict(metrics).items() if isinstance(v, int | float)}
        self.history.append({"iteration": float(iteration), **metrics})
        monitor.write_validation(iteration, metrics)
        return metrics


def fit(trainer: Trainer, stream: Any, *, out_dir: str | os.PathLike[str],
        evaluate: Evaluator | None = None, resume: str | os.PathLike[str] | None = None,
        normalisation: Any = None, training_command: str | Sequence[str] | None = None,
        progress: bool | None = None, stop_at: int | None = None,
        time_budget_s: float | None = None) -> TrainingResult:
    """Run ``trainer`` on batches of ``stream`` until ``trainer.config.iterations``.

    ``stop_at`` (an iteration) and ``time_budget_s`` (seconds of this call) end the call early,
    as an interruption would, but cleanly: a checkpoint is written at the iteration where it
    stops, and a later call with ``resume`` continues exactly from there (the learning-rate
    schedule still runs over ``iterations``). An early stop skips the final validation.

    ``stream.next_batch(B, rank=, world_size=)`` provides the batches
    (:class:`~bids_enhance.training.data.PairedPatchStream`); ``evaluate(model)`` (or
    ``evaluate(model, checkpoint=path)``) is called on rank 0 every ``validate_every`` iterations
    and at the end, with the inference network in eval mode under ``torch.no_grad``; ``resume``:
    a ``checkpoint.pt`` (or its directory) written by an earlier run with the same settings.
    """
    cfg = trainer.config
    ctx = trainer.context
    out_dir = Path(out_dir)
    if training_command is None:
        training_command = [os.path.basename(sys.argv[0]), *sys.argv[1:]]
    session = _Session(trainer, stream, out_dir, normalisation=normalisation,
                       training_command=training_command)
    start = session.restore(resume) if resume is not None else 0
    evaluate = evaluate if ctx.is_main else None
    monitor = TrainingMonitor(out_dir, loss_names=trainer.loss_names, total=cfg.iterations,
                              start=start, enabled=ctx.is_main, progress=progress)
    names = trainer.loss_names
    pending: list[tuple[int, float, dict[str, torch.Tensor]]] = []

    def flush() -> None:
        if not pending:
            return
        table = torch.stack([torch.stack([v[n].detach().float().reshape(()) for n in names])
                             for _, _, v in pending])
        table = ctx.mean_over_ranks(table).cpu().tolist()
        monitor.write([(it, el, row) for (it, el, _), row in zip(pending, table, strict=True)])
        pending.clear()

    trainer.train(True)
    prefetch = None
    if ctx.device.type == "cuda" and start < cfg.iterations:
        prefetch = _Prefetcher(stream, batch_size=cfg.batch_size, rank=ctx.rank,
                               world_size=ctx.world_size, count=cfg.iterations - start)
    t0 = time.perf_counter()
    validated_at = -1
    position = getattr(stream, "position", None)
    end = cfg.iterations if stop_at is None else max(min(int(stop_at), cfg.iterations), start)
    stopped_early = False
    try:
        for iteration in range(start, end):
            if prefetch is not None:
                position, source, target = prefetch.next()
            else:
                source, target = stream.next_batch(cfg.batch_size, rank=ctx.rank,
                                                   world_size=ctx.world_size)
                position = getattr(stream, "position", None)
            values = trainer.train_step(source, target, iteration)
            done = iteration + 1
            pending.append((done, session.previous_wall + time.perf_counter() - t0, values))
            checkpoint_due = done % cfg.checkpoint_every == 0 or done == cfg.iterations
            validation_due = (cfg.validate_every is not None and done % cfg.validate_every == 0
                              and done != cfg.iterations)
            if done % cfg.log_every == 0 or checkpoint_due or validation_due:
                flush()
            if validation_due and evaluate is not None:
                session.validate(evaluate, done, monitor)
                validated_at = done
            if checkpoint_due:
                session.save(done, session.previous_wall + time.perf_counter() - t0, position)
            out_of_time = (time_budget_s is not None and done < cfg.iterations and
                           time.perf_counter() - t0 >= time_budget_s)
            if (done == end and end < cfg.iterations) or out_of_time:
                stopped_early = True
                if not checkpoint_due:
                    flush()
                    session.save(done, session.previous_wall + time.perf_counter() - t0,
                                 position)
                LOGGER.info("stopping at iteration %d of %d (%s); resume to continue", done,
                            cfg.iterations, "time budget" if out_of_time else "stop_at")
                end = done
                break
        flush()
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        session_time = time.perf_counter() - t0
        metrics: dict[str, float] = {}
        if evaluate is not None and validated_at != cfg.iterations and not stopped_early:
            metrics = session.validate(evaluate, cfg.iterations, monitor)
        elif session.history:
            metrics = {k: v for k, v in session.history[-1].items() if k != "iteration"}
        if start == cfg.iterations and ctx.is_main and not session.checkpoint.is_file():
            session.save(cfg.iterations, session.previous_wall)
        plot = monitor.plot()
    finally:
        if prefetch is not None:
            prefetch.close()
        monitor.close()
    done_iters = end - start
    main = ctx.is_main
    return TrainingResult(
        task=cfg.task, iterations=end,
        wall_time_s=session.previous_wall + session_time, session_time_s=session_time,
        iterations_per_s=done_iters / session_time if session_time > 0 else 0.0,
        device=str(ctx.device), world_size=ctx.world_size, precision=trainer.precision,
        seed=cfg.seed, metrics=metrics, final_losses=dict(monitor.last_values),
        checkpoint=session.checkpoint if main else None,
        checkpoint_sha256=session.sha256 if main else None,
        state=session.state if main else None,
        losses_csv=monitor.losses_csv if main else None,
        validation_csv=(monitor.validation_csv if main and monitor.validation_csv.is_file()
                        else None),
        plot=plot, config=cfg.to_dict(),
        degradation_records=list(getattr(stream, "records", [])),
        validation_history=list(session.history), resumed_from=start if resume else None)


def train(volumes: Sequence[Any], *, config: TrainConfig, out_dir: str | os.PathLike[str],
          val_volumes: Sequence[Any] | None = None, evaluate: Evaluator | None = None,
          resume: str | os.PathLike[str] | None = None, normalisation: Any = None,
          training_command: str | Sequence[str] | None = None, progress: bool | None = None,
          context: DistributedContext | None = None, stop_at: int | None = None,
          time_budget_s: float | None = None) -> TrainingResult:
    """Train ``config.task`` on in-memory volumes; the one call the CLI and workflows need.

    Args:
        volumes: :class:`~bids_enhance.training.data.TrainingVolume` s (clean, normalised).
        config: the run's :class:`~bids_enhance.training.config.TrainConfig`.
        out_dir: where ``checkpoint.pt``, ``checkpoint_state.pt``, ``losses.csv``,
            ``validation.csv`` and ``losses.png`` go.
        val_volumes: held-out volumes for the default evaluator
            (:func:`~bids_enhance.training.validation.make_default_evaluator`), used when
            ``evaluate`` is not given.
        evaluate: ``evaluate(model) -> {metric: value}`` or ``evaluate(model, checkpoint=path)``.
        resume: a ``checkpoint.pt`` (or directory) of an interrupted run with the same settings.
        normalisation: recorded in the checkpoint (default: the scale-only robust-maximum
            normalisation of :func:`bids_enhance.image.intensity.normalise`).
        training_command: recorded in the checkpoint (default ``sys.argv``).
        progress: force the tqdm bar on/off (default: when stderr is a terminal).
        context: a :class:`~bids_enhance.training.ddp.DistributedContext`; default
            :meth:`~bids_enhance.training.ddp.DistributedContext.from_env` (torchrun-aware).
        stop_at, time_budget_s: end this call early but cleanly (see :func:`fit`).
    """
    from bids_enhance.training.data import PairedPatchStream, geometry_for

    own_context = context is None
    if own_context:
        context = DistributedContext.from_env(config.device)
    try:
        trainer = build_trainer(config, context=context)
        cfg = trainer.config
        stream = PairedPatchStream(volumes, degradation=cfg.degradation,
                                   geometry=geometry_for(cfg), seed=cfg.seed,
                                   realisations=cfg.realisations,
                                   samples_per_volume=cfg.samples_per_volume,
                                   queue_length=cfg.queue_length,
                                   background_weight=cfg.background_weight,
                                   augment=cfg.augment,
                                   intensity_augment=cfg.intensity_augment,
                                   phase_augment=cfg.phase_augment)
        if evaluate is None and val_volumes and context.is_main:
            from bids_enhance.training.validation import make_default_evaluator

            evaluate = make_default_evaluator(trainer, val_volumes)
        if normalisation is None:
            from bids_enhance.image.intensity import ROBUST_PERCENTILE

            normalisation = {"method": "robust-max-scale", "percentile": ROBUST_PERCENTILE,
                             "function": "bids_enhance.image.intensity.normalise"}
        return fit(trainer, stream, out_dir=out_dir, evaluate=evaluate, resume=resume,
                   normalisation=normalisation, training_command=training_command,
                   progress=progress, stop_at=stop_at, time_budget_s=time_budget_s)
    finally:
        if own_context:
            context.close()


def unwrap(module: nn.Module) -> nn.Module:
    """Strip DDP and ``torch.compile`` wrappers."""
    for _ in range(8):
        if hasattr(module, "_orig_mod"):
            module = module._orig_mod
        elif isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        else:
            break
    return module
