"""Loading through tensorflow-datasets (``source="tfds"``).

The builder is prepared as ``array_record`` (``download_and_prepare`` with the TFDS
``data_dir`` and ``DownloadConfig(manual_dir=...)``), then read through
``builder.as_data_source`` -- random access that needs no TensorFlow (PNG/JPEG images decode
with Pillow).  The whole split is copied into one uint8 (N, H, W, C) array: fine for MNIST,
CIFAR-10 and ImageNet 32x32 (~4 GB train); ImageNet 64x64 train needs ~16 GB.

Preparing ``mnist``, ``binarized_mnist``, ``cifar10`` and ``downsampled_imagenet`` needs
TensorFlow (their builders use ``tf.io.gfile`` and encode images with it); the custom
builders in :mod:`flowzoo.data.tfds_builders` do not.  Example order is TFDS's (a fixed,
deterministic shuffle for the registered datasets; the file order for the custom builders).
Data prepared earlier in the ``tfrecord`` format is read with ``as_dataset`` when TensorFlow is
installed.
"""

from __future__ import annotations

import os

import numpy as np

from flowzoo.data import files
from flowzoo.data.dataset import DataNotFoundError, ImageDataset, info

_CHUNK = 4096


def builder(name: str, data_dir=None):
    """The TFDS builder for flowzoo dataset ``name``: array_record, unless ``data_dir`` already
    holds it prepared in another format."""
    import tensorflow_datasets as tfds

    from flowzoo.data import tfds_builders

    data_dir = None if data_dir is None else os.fspath(data_dir)

    def make(file_format):
        if name in tfds_builders.BUILDERS:
            return tfds_builders.BUILDERS[name](data_dir=data_dir, file_format=file_format)
        return tfds.builder(info(name).tfds_name, data_dir=data_dir, file_format=file_format)

    try:
        return make("array_record")
    except ValueError as e:  # prepared earlier in another format: open it as it is
        if "file format is already set" not in str(e).lower():
            raise
        return make(None)


def load_tfds(name: str, split: str, *, data_dir=None, manual_dir=None,
              looked: list[str] | None = None) -> ImageDataset:
    """Prepares (if needed) and reads ``split`` of ``name`` into memory.

    Any failure to prepare (no network, checksum mismatch, TensorFlow missing) becomes one
    :class:`DataNotFoundError` listing ``looked`` (local files the caller searched first, or
    None if it did not search), the TFDS data_dir and how to provide the data; the TFDS error
    is chained as its cause.
    """
    spec = info(name)
    if spec.tfds_name is None:
        raise ValueError(f"Dataset {name!r} is not available through tensorflow-datasets; "
                         f"its sources: {', '.join(spec.sources)}.")
    import tensorflow_datasets as tfds

    b = builder(name, data_dir)
    where = f"{spec.tfds_name!r}, prepared data at {b.data_dir}" + (
        f", manual_dir {os.fspath(manual_dir)}" if manual_dir is not None else "")
    try:
        # With a manual_dir the files are local: do not look for prepared data on GCS.
        config = tfds.download.DownloadConfig(
            manual_dir=None if manual_dir is None else os.fspath(manual_dir),
            try_download_gcs=manual_dir is None)
        b.download_and_prepare(download_config=config)
    except Exception as e:  # noqa: BLE001 -- re-raised as one clear message, chained
        msg = files.missing_message(name, split, looked or [], data_dir_given=looked != [],
                                    tfds_attempt=f"{where}: {type(e).__name__}: {e}")
        raise DataNotFoundError(msg) from e
    try:
        source = b.as_data_source(split=split)
    except NotImplementedError as e:  # prepared earlier in a sequential format (tfrecord)
        return ImageDataset(name, split, _read_with_tensorflow(b, split, where, e),
                            spec.num_levels)
    return ImageDataset(name, split, to_array(source, spec.shape), spec.num_levels)


def to_array(source, shape) -> np.ndarray:
    """Copies a TFDS data source of ``{"image": (H, W, C) uint8}`` into uint8 (N, H, W, C)."""
    n = len(source)
    out = np.empty((n, *shape), np.uint8)
    get_many = getattr(source, "__getitems__", None)  # batched reads: fewer calls
    for start in range(0, n, _CHUNK):
        keys = list(range(start, min(n, start + _CHUNK)))
        try:
            examples = get_many(keys) if get_many else [source[k] for k in keys]
        except TypeError:  # tfds.testing.mock_data's source has a broken __getitems__
            get_many = None
            examples = [source[k] for k in keys]
        for i, example in zip(keys, examples):
            image = np.asarray(example["image"])
            if image.shape != tuple(shape):
                raise ValueError(f"TFDS example {i} has image shape {image.shape}, expected "
                                 f"{tuple(shape)}.")
            out[i] = image
    return out


def _read_with_tensorflow(b, split, where, error) -> np.ndarray:
    import tensorflow_datasets as tfds

    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise DataNotFoundError(
            f"{where} is prepared in a format without random access ({error}); reading it "
            f"needs TensorFlow (pip install tensorflow-cpu), or prepare it again as "
            f"array_record in another data_dir.") from error
    data = tfds.as_numpy(b.as_dataset(split=split, batch_size=-1))
    return np.asarray(data["image"], np.uint8)
