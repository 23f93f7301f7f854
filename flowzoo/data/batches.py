"""Deterministic, resumable, multi-process batching of an in-memory :class:`ImageDataset`.

There is no iterator state: ``batch(step)`` is a pure function of ``step``, so the data
position *is* the step number and resuming from a checkpoint at step ``s`` continues exactly.

- Training order: epoch ``e = step // steps_per_epoch`` visits the examples in
  ``np.random.Generator(np.random.PCG64([seed, e])).permutation(N)`` (or ``arange(N)`` when
  ``shuffle=False``); position ``step % steps_per_epoch`` takes the next ``global_batch_size``
  of them, and the last ``N % global_batch_size`` of each epoch's order are dropped.
- Processes: the global batch is the same whatever ``process_count`` is; process ``p`` gets
  rows ``[p * L, (p + 1) * L)`` with ``L = global_batch_size // process_count``.
- Binarization: "static" draws pixel ~ Bernoulli(x / (num_levels - 1)) once per example, keyed
  by (seed, example index), identical every epoch; "dynamic" redraws every epoch, keyed by
  (seed, epoch, example index) (see :mod:`flowzoo.data.binarize`).  Output is 0/1 and
  ``num_levels`` is then 2.  Binarizing data that already has 2 levels is a no-op.
"""

from __future__ import annotations

import math

import numpy as np

from flowzoo.data import binarize
from flowzoo.data.dataset import ImageDataset

BINARIZATIONS = ("none", "static", "dynamic")


class Batches:
    """Batches of ``ds`` for one process.  Every batch is a dict of numpy arrays:

    - ``image``: uint8 (L, H, W, C), levels in [0, num_levels);
    - ``index``: int64 (L,), the examples' indices in ``ds``;
    - ``mask`` (``eval_batches`` only): bool (L,), False on padding rows.
    """

    def __init__(self, ds: ImageDataset, global_batch_size: int, *, seed: int,
                 shuffle: bool = True, process_index: int = 0, process_count: int = 1,
                 binarization: str = "none"):
        if global_batch_size < 1:
            raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}.")
        if process_count < 1 or not 0 <= process_index < process_count:
            raise ValueError(f"Need 0 <= process_index < process_count, got process_index="
                             f"{process_index}, process_count={process_count}.")
        if global_batch_size % process_count:
            raise ValueError(f"global_batch_size={global_batch_size} is not divisible by "
                             f"process_count={process_count}; every process needs the same "
                             f"number of rows.")
        if binarization not in BINARIZATIONS:
            raise ValueError(f"binarization must be one of {BINARIZATIONS}, got "
                             f"{binarization!r}.")
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}.")
        self.ds = ds
        self.global_batch_size = int(global_batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.process_index = int(process_index)
        self.process_count = int(process_count)
        self.local_batch_size = self.global_batch_size // self.process_count
        # Binarizing 2-level data changes nothing: skip it.
        self.binarization = "none" if ds.num_levels == 2 else binarization
        self._cached_order: tuple[int, np.ndarray] | None = None

    @property
    def num_levels(self) -> int:
        """Levels of the images these batches hold (2 when binarized)."""
        return 2 if self.binarization != "none" else self.ds.num_levels

    @property
    def steps_per_epoch(self) -> int:
        """``N // global_batch_size`` (the remainder is dropped each epoch)."""
        return len(self.ds) // self.global_batch_size

    @property
    def num_eval_batches(self) -> int:
        """``ceil(N / global_batch_size)``: the same on every process."""
        return math.ceil(len(self.ds) / self.global_batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """int64 (N,): the example order of ``epoch`` (a permutation, or arange if no shuffle)."""
        cached = self._cached_order
        if cached is not None and cached[0] == epoch:
            return cached[1]
        n = len(self.ds)
        if self.shuffle:
            order = np.random.Generator(np.random.PCG64([self.seed, epoch])).permutation(n)
        else:
            order = np.arange(n)
        order = order.astype(np.int64)
        order.flags.writeable = False
        self._cached_order = (epoch, order)  # speed only: the result depends on epoch alone
        return order

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of global batch ``step`` (a pure function of ``step``)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}.")
        spe = self.steps_per_epoch
        if spe == 0:
            raise ValueError(f"{self.ds!r} has fewer examples than global_batch_size="
                             f"{self.global_batch_size}: no full training batch.")
        epoch, position = divmod(int(step), spe)
        start = position * self.global_batch_size + self.process_index * self.local_batch_size
        index = self.order(epoch)[start:start + self.local_batch_size]
        return {"image": self._images(index, epoch), "index": index.copy()}

    def eval_batches(self, epoch: int = 0):
        """Yields this process's rows of every evaluation batch, in dataset order.

        Global batch ``b`` holds examples ``[b * G, (b + 1) * G)``; rows past the end of the
        dataset are padding (image zeros, index -1, mask False), so across processes every
        example appears exactly once, and every process yields ``num_eval_batches`` batches.
        With "dynamic" binarization the draw of ``epoch`` is used (default 0: reproducible).
        """
        n, g, size = len(self.ds), self.global_batch_size, self.local_batch_size
        for b in range(self.num_eval_batches):
            start = b * g + self.process_index * size
            index = np.arange(start, start + size, dtype=np.int64)
            mask = index < n
            image = np.zeros((size, *self.ds.image_shape), np.uint8)
            image[mask] = self._images(index[mask], epoch)
            yield {"image": image, "index": np.where(mask, index, -1), "mask": mask}

    def _images(self, index: np.ndarray, epoch: int) -> np.ndarray:
        images = self.ds.images[index]
        if self.binarization == "none":
            return images
        if self.binarization == "static":
            keys = binarize.example_keys(self.seed, binarize.STATIC, 0, index)
        else:
            keys = binarize.example_keys(self.seed, binarize.DYNAMIC, epoch, index)
        return binarize.bernoulli(images, self.ds.num_levels, keys)
