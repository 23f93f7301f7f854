"""Metrics out: ``metrics.jsonl``, TensorBoard events, a console line, PNGs.

Only the primary process (process 0) writes; the others get a writer that
does nothing, so calling code needs no ``if``.  Every file goes through the
workdir's path type (:mod:`flowzoo.training.workdir`), so ``gs://`` workdirs work.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time

import numpy as np
from absl import logging
from PIL import Image

from flowzoo.training import workdir as workdir_lib

_EVENT_FILE_ROTATE_BYTES = 16 << 20  # object stores rewrite a growing event file whole


class _EpathRecordFile:
    """A TensorBoard event file on any ``etils.epath`` path.  Object stores cannot append,
    so the records are kept and the file is rewritten whole on each flush (as tensorboardX
    does for gs:// itself); the writer starts a new file past ``_EVENT_FILE_ROTATE_BYTES``."""

    def __init__(self, path):
        self.path = workdir_lib.resolve(path)
        self.buffer = io.BytesIO()

    def write(self, data):
        self.buffer.write(data)

    def flush(self):
        workdir_lib.write_atomic(self.path, self.buffer.getvalue())

    def close(self):
        self.flush()


class _EpathRecordFactory:
    """tensorboardX's hook for a URL scheme; remembers the file it opened last."""

    def __init__(self):
        self.last_opened = None

    def open(self, path):
        self.last_opened = _EpathRecordFile(path)
        return self.last_opened

    def directory_check(self, path):  # object stores need no folders
        pass


class MetricWriter:
    """Rows in ``workdir/metrics.jsonl`` and TensorBoard events in ``workdir/tb``.

    The rows are kept in memory (a resumed run first reads the file) and the file is
    rewritten whole at each write: object stores have no append."""

    def __init__(self, workdir, enabled: bool = True):
        self.enabled = enabled
        root = workdir_lib.resolve(workdir)
        self.path = root / "metrics.jsonl"
        self._tb_dir = root / "tb"
        self._tb = None
        self._remote_events = None  # the current event file on an object store
        self._rows = []
        if enabled:
            workdir_lib.make_dirs(root)
            if self.path.exists():
                self._rows = self.path.read_text().splitlines()
            self._open_tensorboard()

    def _open_tensorboard(self):
        from tensorboardX import SummaryWriter, record_writer  # only process 0 needs it
        factory = None
        if workdir_lib.is_remote(self._tb_dir):
            factory = _EpathRecordFactory()
            record_writer.register_writer_factory(str(self._tb_dir).split(":", 1)[0], factory)
        self._tb = SummaryWriter(str(self._tb_dir))
        self._remote_events = factory and factory.last_opened

    def write(self, step: int, split: str, metrics: dict, metadata: dict | None = None):
        """Scalars to both files; ``metadata`` (counts, paths) to metrics.jsonl only."""
        if not self.enabled:
            return
        self._append({"step": int(step), "split": split,
                      **{k: float(v) for k, v in metrics.items()}, **(metadata or {})})
        for k, v in metrics.items():
            self._tb.add_scalar(f"{split}/{k}", float(v), int(step))
        self._flush_tensorboard()

    def write_image(self, step: int, name: str, grid: np.ndarray):
        """An (H, W, C) uint8 grid as a TensorBoard image."""
        if self.enabled:
            self._tb.add_image(name, grid, int(step), dataformats="HWC")
            self._flush_tensorboard()

    def write_text(self, step: int, name: str, text: str):
        if self.enabled:
            self._tb.add_text(name, text, int(step))
            self._flush_tensorboard()

    def _append(self, row: dict):
        self._rows.append(json.dumps(row))
        workdir_lib.write_atomic(self.path, "\n".join(self._rows) + "\n")

    def _flush_tensorboard(self):
        self._tb.flush()
        if self._remote_events and self._remote_events.buffer.tell() > _EVENT_FILE_ROTATE_BYTES:
            self._tb.close()  # the next file's name sorts after this one (a later time)
            self._open_tensorboard()

    def history(self, split: str, key: str):
        """(steps, values) logged so far; the latest value wins for a repeated step
        (a resumed run re-logs the steps after its checkpoint)."""
        latest = {}
        for line in self._rows:
            row = json.loads(line)
            if row.get("split") == split and key in row:
                latest[row["step"]] = row[key]
        steps = sorted(latest)
        return steps, [latest[s] for s in steps]

    def close(self):
        if self._tb is not None:
            self._tb.close()
            self._tb = None


class Chrono:
    """Wall time by phase, so that images/s and the ETA count training alone.

    Training is timed between :meth:`resume` and :meth:`pause`; everything else (compile,
    evaluation, checkpoints) goes through :meth:`timed`, which pauses training time and
    adds to the phase's own total.  Reading a step's metrics synchronizes with the device, so
    rates measured between two log lines are exact."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self._since = None

    def resume(self):
        if self._since is None:
            self._since = time.perf_counter()

    def pause(self):
        if self._since is not None:
            self._add("training", time.perf_counter() - self._since)
            self._since = None

    @contextlib.contextmanager
    def timed(self, phase: str):
        running = self._since is not None
        self.pause()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._add(phase, time.perf_counter() - start)
            if running:
                self.resume()

    def training_seconds(self) -> float:
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        return self.totals.get("training", 0.0) + running

    def _add(self, phase: str, seconds: float):
        self.totals[phase] = self.totals.get(phase, 0.0) + seconds

    def summary(self) -> str:
        return ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in self.totals.items())


class Progress:
    """Console line: step, loss averaged over the log interval, images/s and ETA of
    training time alone (:class:`Chrono`)."""

    def __init__(self, total_steps: int, global_batch: int, unit: str, chrono: Chrono,
                 start_step: int):
        self.total, self.batch, self.unit, self.chrono = total_steps, global_batch, unit, chrono
        self._seconds, self._step = chrono.training_seconds(), start_step

    def line(self, step: int, loss: float) -> str:
        seconds = self.chrono.training_seconds()
        per_step = (seconds - self._seconds) / max(step - self._step, 1)
        self._seconds, self._step = seconds, step
        eta = per_step * (self.total - step)
        return (f"step {step}/{self.total}  loss {loss:.4f} {self.unit}  "
                f"{self.batch / max(per_step, 1e-9):.1f} img/s  "
                f"ETA {int(eta // 60)}m{int(eta % 60):02d}s (training only)")


def image_grid(images, num_levels: int, columns: int | None = None) -> np.ndarray:
    """(N, H, W, C) integer levels -> one (H', W', C) uint8 grid, levels scaled to 0..255,
    enlarged by an integer factor to about 256 pixels."""
    images = np.asarray(images).astype(np.float64)
    n, h, w, c = images.shape
    columns = columns or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / columns))
    pixels = np.clip(np.round(images * 255.0 / (num_levels - 1)), 0, 255).astype(np.uint8)
    grid = np.full((rows * (h + 1) + 1, columns * (w + 1) + 1, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, columns)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = pixels[i]
    scale = max(1, 256 // max(grid.shape[:2]))
    return np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)


def save_png(grid: np.ndarray, path) -> str:
    """An (H, W, C) uint8 array -> a PNG at ``path`` (local or any epath URL)."""
    png = io.BytesIO()
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(png, format="PNG")
    workdir_lib.write_atomic(workdir_lib.resolve(path), png.getvalue())
    return str(path)


def save_learning_curve(writer: MetricWriter, unit: str, path) -> str | None:
    """Train loss and eval metric against step, as a PNG."""
    train_steps, train_loss = writer.history("train", "loss")
    if not train_steps:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(train_steps, train_loss, label="train loss")
    eval_steps, eval_values = writer.history("eval", "loss")
    if eval_steps:
        ax.plot(eval_steps, eval_values, "o-", label="eval (EMA params)")
    ax.set(xlabel="step", ylabel=unit, title="learning curve")
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    workdir_lib.write_atomic(workdir_lib.resolve(path), png.getvalue())
    logging.info("learning curve: %s", path)
    return str(path)
