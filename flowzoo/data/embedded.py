"""The embedded default dataset: scikit-learn's 8x8 handwritten digits (no download).

scikit-learn ships the UCI optical-digits test set (1797 images, 8x8, grey levels 0..16, i.e.
17 levels) inside its package, so this loads on a fresh machine with no network.  The split is
deterministic, in the file's order: ``train`` = the first 1497 images, ``test`` = the last 300.
"""

from __future__ import annotations

import functools

import numpy as np

from flowzoo.data.dataset import DataNotFoundError, ImageDataset

NUM_TRAIN = 1497
NUM_TEST = 300


@functools.lru_cache(maxsize=1)
def _digits() -> np.ndarray:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DataNotFoundError(
            "The embedded 'digits' dataset ships inside scikit-learn, which is not installed; "
            "pip install scikit-learn.") from e
    images = load_digits().images  # (1797, 8, 8) float64 holding integers 0..16
    levels = images.astype(np.uint8)
    if levels.shape != (NUM_TRAIN + NUM_TEST, 8, 8) or not np.array_equal(levels, images):
        raise ValueError(f"scikit-learn's digits changed: expected (1797, 8, 8) integers, got "
                         f"{images.shape}.")
    return levels[..., None]


def load_digits(split: str) -> ImageDataset:
    """``split`` ("train" or "test") of the digits as uint8 (N, 8, 8, 1), 17 levels."""
    images = _digits()
    images = images[:NUM_TRAIN] if split == "train" else images[NUM_TRAIN:]
    return ImageDataset("digits", split, images, 17)
