"""Progress, loss CSV, validation CSV and the loss-curve plot of a training run.

``losses.csv``: one row per iteration — ``iteration`` (1-based count of completed steps),
``elapsed_s`` (wall time of the run so far) and the trainer's values (``loss_names``; empty
where a value does not apply, e.g. critic losses during the warm-up). Rows are buffered on the
device and written every ``log_every`` iterations (one host synchronisation per flush), and at
checkpoints. ``validation.csv``: ``iteration`` and the evaluator's metrics. On resume, rows after
the checkpoint's iteration are dropped so the files continue exactly. ``losses.png``: every
column against the iteration (thin: raw; thick: moving average), plus the validation metrics.

A tqdm bar is shown when rank 0's stderr is a terminal; otherwise one log line per flush.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bids_enhance.utils import atomic_path, atomic_write_text

__all__ = ["TrainingMonitor", "plot_history", "read_csv"]

LOGGER = logging.getLogger("bids_enhance.training")


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{float(value):.7g}"


def read_csv(path: str | Path) -> tuple[list[str], list[list[float]]]:
    """Header and rows (floats; ``nan`` for empty cells) of a monitor CSV."""
    path = Path(path)
    if not path.is_file():
        return [], []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        rows = [[float(v) if v != "" else math.nan for v in row] for row in reader if row]
    return header, rows


def _truncate(path: Path, header: list[str], *, keep_through: int) -> None:
    """Keep the rows with ``iteration <= keep_through`` (the header must match)."""
    found, rows = read_csv(path)
    if not found:
        atomic_write_text(path, ",".join(header) + "\n")
        return
    if header and found != header:
        raise ValueError(f"{path} has columns {found}, expected {header}: it belongs to a "
                         "different kind of run; move it away before resuming")
    kept = [r for r in rows if r[0] <= keep_through]
    lines = [",".join(found)] + [",".join(_fmt(v) if i else str(int(v))
                                          for i, v in enumerate(r)) for r in kept]
    atomic_write_text(path, "\n".join(lines) + "\n")


class TrainingMonitor:
    """Writes the CSVs (rank 0 only: ``enabled``), drives the progress display."""

    def __init__(self, out_dir: str | Path, *, loss_names: Sequence[str], total: int,
                 start: int = 0, enabled: bool = True, progress: bool | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.loss_names = tuple(loss_names)
        self.header = ["iteration", "elapsed_s", *self.loss_names]
        self.total = int(total)
        self.start = int(start)
        self.enabled = enabled
        self.losses_csv = self.out_dir / "losses.csv"
        self.validation_csv = self.out_dir / "validation.csv"
        self.plot_path = self.out_dir / "losses.png"
        self._bar = None
        self._last_time = time.perf_counter()
        self._last_iteration = self.start
        self.last_values: dict[str, float] = {}
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if start == 0:
            atomic_write_text(self.losses_csv, ",".join(self.header) + "\n")
            self.validation_csv.unlink(missing_ok=True)
        else:
            _truncate(self.losses_csv, self.header, keep_through=start)
            if self.validation_csv.is_file():
                _truncate(self.validation_csv, [], keep_through=start)
        if progress is None:
            progress = sys.stderr.isatty()
        if progress:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover - tqdm is a dependency of torch tooling
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=self.total, initial=self.start, unit="it",
                                 dynamic_ncols=True, desc="training")

    # ------------------------------------------------------------------------------------------
    def write(self, rows: Sequence[tuple[int, float, Sequence[float]]]) -> None:
        """Append ``(iteration, elapsed_s, values)`` rows and update the progress display."""
        if not rows:
            return
        last_it, _, last_vals = rows[-1]
        self.last_values = dict(zip(self.loss_names, (float(v) for v in last_vals), strict=True))
        if not self.enabled:
            return
        with self.losses_csv.open("a", newline="") as fh:
            writer = csv.writer(fh)
            for iteration, elapsed, values in rows:
                writer.writerow([int(iteration), f"{elapsed:.3f}", *(_fmt(v) for v in values)])
        now = time.perf_counter()
        rate = (last_it - self._last_iteration) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_iteration = now, last_it
        shown = {k: v for k, v in self.last_values.items()
                 if math.isfinite(v) and k not in ("lr",) and not k.startswith("grad_norm")}
        if self._bar is not None:
            self._bar.update(last_it - self._bar.n)
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in list(shown.items())[:5]})
        else:
            eta = (self.total - last_it) / rate if rate > 0 else math.inf
            LOGGER.info("iteration %d/%d (%.0f%%), %.2f it/s, ETA %s: %s", last_it, self.total,
                        100.0 * last_it / self.total, rate,
                        "?" if not math.isfinite(eta) else f"{eta / 60:.1f} min",
                        ", ".join(f"{k}={v:.4g}" for k, v in shown.items()))

    def write_validation(self, iteration: int, metrics: Mapping[str, float]) -> None:
        """Append one validation row (columns grow when new metrics appear)."""
        LOGGER.info("validation at iteration %d: %s", iteration,
                    ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                              if isinstance(v, int | float)))
        if not self.enabled:
            return
        header, rows = read_csv(self.validation_csv)
        keys = [k for k, v in metrics.items() if isinstance(v, int | float)]
        new_header = header or ["iteration"]
        new_header = new_header + [k for k in keys if k not in new_header]
        lookup = {k: float(metrics[k]) for k in keys}
        table = [dict(zip(header, r, strict=True)) for r in rows]
        table.append({"iteration": float(iteration), **lookup})
        lines = [",".join(new_header)]
        for row in table:
            lines.append(",".join(str(int(row["iteration"])) if k == "iteration"
                                  else _fmt(row.get(k, math.nan)) for k in new_header))
        atomic_write_text(self.validation_csv, "\n".join(lines) + "\n")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def plot(self) -> Path | None:
        """Write ``losses.png`` (rank 0); returns its path or ``None``."""
        if not self.enabled:
            return None
        return plot_history(self.losses_csv, self.plot_path, validation_csv=self.validation_csv)


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or values.size < window:
        return values
    ok = np.isfinite(values)
    filled = np.where(ok, values, 0.0)
    kernel = np.ones(window)
    num = np.convolve(filled, kernel, mode="same")
    den = np.convolve(ok.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~ok] = np.nan
    return out


def _panels(columns: Sequence[str]) -> list[tuple[str, list[str], bool]]:
    """Group loss columns into panels ``(title, columns, log_scale)``."""
    groups: dict[str, list[str]] = {}
    for name in columns:
        if name.startswith("loss") or name in ("l1", "perceptual", "adversarial_g"):
            key = "losses"
        elif name.startswith("logit_"):
            key = "critic logits"
        elif name.startswith("grad_norm"):
            key = "gradient norm (before clipping)"
        else:
            key = {"sigma": "instance noise sigma", "lr": "learning rate"}.get(name, name)
        groups.setdefault(key, []).append(name)
    return [(title, names, title in ("losses", "gradient norm (before clipping)"))
            for title, names in groups.items()]


def plot_history(losses_csv: str | Path, out_png: str | Path, *,
                 validation_csv: str | Path | None = None) -> Path | None:
    """Plot the loss columns (grouped: losses, critic logits, gradient norms, schedules) and the
    validation metrics (with their ``baseline_*`` as dashed lines) against the iteration.
    Returns ``None`` (with a warning) where matplotlib is not installed, e.g. on a bare GPU
    node: the CSVs hold the same numbers."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        LOGGER.warning("matplotlib is not installed: %s not drawn (the CSVs have the numbers)",
                       out_png)
        return None

    header, rows = read_csv(losses_csv)
    if not rows:
        return None
    data = np.asarray(rows, dtype=np.float64)

    def usable(name: str) -> bool:
        y = data[:, header.index(name)]
        y = y[np.isfinite(y)]
        return y.size > 0 and (name != "lr" or np.ptp(y) > 0)  # a constant lr says nothing

    panels = _panels([c for c in header[2:] if usable(c)])
    v_header, v_rows = read_csv(validation_csv) if validation_csv else ([], [])
    v_columns = [c for c in v_header[1:] if not c.startswith("baseline_")
                 and c not in ("psnr_gain", "nrmse", "hfen")] if v_rows else []
    count = len(panels) + len(v_columns)
    if count == 0:
        return None
    ncols = min(3, count)
    nrows = math.ceil(count / ncols)
    fig = Figure(figsize=(4.2 * ncols, 2.9 * nrows))
    iters = data[:, 0]
    window = max(1, len(iters) // 50)
    for k, (title, names, log) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        for j, name in enumerate(names):
            y = data[:, header.index(name)]
            ax.plot(iters, y, lw=0.5, alpha=0.35, color=f"C{j}")
            ax.plot(iters, _moving_average(y, window), lw=1.5, color=f"C{j}", label=name)
        if log and np.nanmin(data[:, [header.index(n) for n in names]]) > 0:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        if len(names) > 1:
            ax.legend(fontsize=7)
    if v_columns:
        v = np.asarray(v_rows, dtype=np.float64)
        for j, name in enumerate(v_columns):
            ax = fig.add_subplot(nrows, ncols, len(panels) + j + 1)
            ax.plot(v[:, 0], v[:, v_header.index(name)], "o-", color="C3", lw=1.2, ms=3)
            if f"baseline_{name}" in v_header:
                ax.axhline(float(np.nanmean(v[:, v_header.index(f"baseline_{name}")])),
                           color="0.4", ls="--", lw=1, label="baseline")
                ax.legend(fontsize=7)
            ax.set_title(f"validation {name}", fontsize=9)
    for ax in fig.axes:
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.93, wspace=0.28, hspace=0.5)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return out_png
