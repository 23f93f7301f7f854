"""Metrics out: ``metrics.jsonl``, TensorBoard events, a console line, PNGs.

Only the primary process (process 0) writes; the others get a writer that
does nothing, so calling code needs no ``if``.
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
from absl import logging
from PIL import Image


class MetricWriter:
    """Appends to ``workdir/metrics.jsonl`` and TensorBoard events in ``workdir/tb``."""

    def __init__(self, workdir, enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            from tensorboardX import SummaryWriter  # local: only process 0 needs it
            self._tb = SummaryWriter(os.path.join(workdir, "tb"))

    def write(self, step: int, split: str, metrics: dict):
        if not self.enabled:
            return
        row = {"step": int(step), "split": split, **{k: float(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in metrics.items():
            self._tb.add_scalar(f"{split}/{k}", float(v), int(step))
        self._tb.flush()

    def history(self, split: str, key: str):
        """(steps, values) logged so far; the latest value wins for a repeated step
        (a resumed run re-logs the steps after its checkpoint)."""
        if not self.enabled or not os.path.exists(self.path):
            return [], []
        latest = {}
        with open(self.path) as f:
            for line in f:
                row = json.loads(line)
                if row.get("split") == split and key in row:
                    latest[row["step"]] = row[key]
        steps = sorted(latest)
        return steps, [latest[s] for s in steps]

    def close(self):
        if self._tb is not None:
            self._tb.close()


class Progress:
    """Console line: step, loss, images/s, ETA."""

    def __init__(self, total_steps: int, global_batch: int, unit: str):
        self.total, self.batch, self.unit = total_steps, global_batch, unit
        self._t, self._step = None, None

    def line(self, step: int, loss: float) -> str:
        now = time.perf_counter()
        rate = eta = float("nan")
        if self._t is not None and step > self._step:
            per_step = (now - self._t) / (step - self._step)
            rate, eta = self.batch / per_step, per_step * (self.total - step)
        self._t, self._step = now, step
        eta_s = "?" if math.isnan(eta) else f"{int(eta // 60)}m{int(eta % 60):02d}s"
        rate_s = "?" if math.isnan(rate) else f"{rate:.1f}"
        return (f"step {step}/{self.total}  loss {loss:.4f} {self.unit}  "
                f"{rate_s} img/s  ETA {eta_s}")


def save_image_grid(images, num_levels: int, path: str, columns: int | None = None) -> str:
    """(N, H, W, C) integer levels -> one PNG grid, levels scaled to 0..255."""
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
    img = Image.fromarray(grid[..., 0] if c == 1 else grid)
    img = img.resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    img.save(path)
    return path


def save_learning_curve(writer: MetricWriter, unit: str, path: str) -> str | None:
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    logging.info("learning curve: %s", path)
    return path
