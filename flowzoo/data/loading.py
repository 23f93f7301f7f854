"""``load``: one entry point over the embedded, local-file and TFDS sources."""

from __future__ import annotations

import numpy as np

from flowzoo.data import embedded, files, tfds_source
from flowzoo.data.dataset import ImageDataset, info, reduce_bits, split_parts

SOURCES = ("auto", "files", "tfds", "embedded")


def load(name: str, split: str, *, source: str = "auto", data_dir=None, manual_dir=None,
         num_bits: int | None = None) -> ImageDataset:
    """Loads one split into memory as an :class:`ImageDataset` (uint8 (N, H, W, C)).

    Args:
      name: a key of ``DATASETS`` ("digits", "mnist", "binarized_mnist",
        "caltech101_silhouettes", "omniglot", "cifar10", "imagenet32", "imagenet64").
      split: "train", "validation" (where the dataset has one) or "test", or a union of
        them joined by "+" and loaded in that order: "train+valid" (or "train+validation"),
        the training set of the VLAE paper's final runs (50,000 + 10,000 images of static
        binarized MNIST); the dataset's ``split`` is then "train+validation".
      source: "embedded" (digits only), "files" (the official files in ``data_dir``), "tfds"
        (tensorflow-datasets), or "auto": embedded for digits; otherwise the files when
        ``data_dir`` (default ``$FLOWZOO_DATA_DIR``) holds them, else tfds.
      data_dir: for "files", a folder laid out as ``mnist/``, ``binarized_mnist/``,
        ``caltech101_silhouettes/``, ``omniglot/`` (or the dataset's own folder); for "tfds",
        the TFDS data_dir (None: TFDS's default, ``$TFDS_DATA_DIR`` or ~/tensorflow_datasets).
        With "auto", a data_dir without the official files is used as the TFDS data_dir.
      manual_dir: the TFDS manual_dir: a folder holding the official files (named as in
        their URLs), used instead of downloading.
      num_bits: keep the top ``num_bits`` bits of 8-bit data (levels ``x >> (8 - num_bits)``,
        ``num_levels = 2**num_bits``); ValueError for data that is not 8-bit.

    Raises:
      ValueError: unknown dataset, split or source (a ConfigError names the valid ones;
        also for "train+valid" on a dataset without a validation split).
      DataNotFoundError (a FileNotFoundError): the data is nowhere; the message lists every
        place looked and how to provide the data.
    """
    spec = info(name)
    parts = split_parts(name, split)
    if source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}; valid sources: {', '.join(SOURCES)}.")
    if source != "auto" and source not in spec.sources:
        raise ValueError(f"Dataset {name!r} cannot be loaded from source {source!r}; its "
                         f"sources: {', '.join(spec.sources)} (or 'auto').")
    if len(parts) > 1:  # every part from the same source, then one array in split order
        if source == "auto":
            source = _auto_source(name, parts, data_dir)
        loaded = [load(name, part, source=source, data_dir=data_dir, manual_dir=manual_dir,
                       num_bits=num_bits) for part in parts]
        return ImageDataset(name, "+".join(parts), np.concatenate([d.images for d in loaded]),
                            loaded[0].num_levels)
    split = parts[0]
    auto = source == "auto"
    if auto:
        source = _auto_source(name, parts, data_dir)

    if source == "embedded":
        ds = embedded.load_digits(split)
    elif source == "files":
        ds = files.load_files(name, split, data_dir)
    else:
        looked = None  # with "auto", report the local places searched before TFDS
        if auto and name in files.FOLDERS:
            looked = files.candidates(name, split, files.resolve_data_dir(data_dir))
        ds = tfds_source.load_tfds(name, split, data_dir=data_dir, manual_dir=manual_dir,
                                   looked=looked)
    _check(ds, spec)
    return reduce_bits(ds, num_bits)


def _auto_source(name: str, parts: tuple[str, ...], data_dir) -> str:
    """embedded where it is; else the files when every part's file is local; else tfds."""
    sources = info(name).sources
    if "embedded" in sources:
        return "embedded"
    local = files.resolve_data_dir(data_dir)
    if "files" in sources and (all(files.find(name, p, local) for p in parts)
                               or "tfds" not in sources):
        return "files"  # files-only datasets report the missing files themselves
    return "tfds"


def _check(ds: ImageDataset, spec) -> None:
    """The loaded array must match the registry (shape and level range)."""
    if ds.image_shape != spec.shape:
        raise ValueError(f"{ds.name!r} {ds.split!r}: images have shape {ds.image_shape}, "
                         f"expected {spec.shape}.")
    top = int(ds.images.max()) if len(ds) else 0
    if top >= ds.num_levels:
        raise ValueError(f"{ds.name!r} {ds.split!r}: found level {top}, expected levels in "
                         f"[0, {ds.num_levels}); is the data prepared differently (e.g. 0/255)?")
