"""The in-memory dataset type, the dataset registry and the missing-data error."""

from __future__ import annotations

import dataclasses

import numpy as np

from flowzoo.errors import ConfigError, UserError


@dataclasses.dataclass(frozen=True, eq=False)
class ImageDataset:
    """One split of an image dataset, held in memory.

    ``images`` is uint8 of shape (N, H, W, C) holding integer levels in ``[0, num_levels)``
    (256 for 8-bit data, 17 for scikit-learn's digits, 2 for binary data).  The array is made
    read-only, so datasets can share it (the file loaders cache parsed files).
    """

    name: str
    split: str
    images: np.ndarray
    num_levels: int

    def __post_init__(self):
        x = self.images
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
            raise ValueError(f"ImageDataset.images must be a uint8 array of shape (N, H, W, C), "
                             f"got {type(x).__name__} {getattr(x, 'dtype', '')} "
                             f"{getattr(x, 'shape', '')}.")
        if not 2 <= self.num_levels <= 256:
            raise ValueError(f"num_levels must be in [2, 256], got {self.num_levels}.")
        if x.flags.writeable:
            x = x.view()
            x.flags.writeable = False
            object.__setattr__(self, "images", x)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C)."""
        return tuple(self.images.shape[1:])

    def __repr__(self) -> str:
        return (f"ImageDataset(name={self.name!r}, split={self.split!r}, "
                f"images=uint8{tuple(self.images.shape)}, num_levels={self.num_levels})")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset that :func:`flowzoo.data.load` knows.

    ``shape`` is (H, W, C); ``sources`` are the values ``load(source=...)`` accepts besides
    "auto"; ``tfds_name`` is the tensorflow-datasets name (custom builders for the two
    datasets TFDS lacks live in :mod:`flowzoo.data.tfds_builders`).
    """

    shape: tuple[int, int, int]
    num_levels: int
    splits: tuple[str, ...]
    sources: tuple[str, ...]
    tfds_name: str | None = None
    note: str = ""


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        (8, 8, 1), 17, ("train", "test"), ("embedded",),
        note="scikit-learn's bundled 8x8 digits (1797 images, levels 0..16); "
             "train = first 1497 images, test = last 300, in the file's order."),
    "mnist": DatasetInfo(
        (28, 28, 1), 256, ("train", "test"), ("files", "tfds"), "mnist",
        note="60000 / 10000, original IDX files."),
    "binarized_mnist": DatasetInfo(
        (28, 28, 1), 2, ("train", "validation", "test"), ("files", "tfds"), "binarized_mnist",
        note="Larochelle & Murray's fixed binarization, 50000 / 10000 / 10000 (.amat)."),
    "caltech101_silhouettes": DatasetInfo(
        (28, 28, 1), 2, ("train", "validation", "test"), ("files", "tfds"),
        "caltech101_silhouettes",
        note="Marlin et al. split 1, 4100 / 2264 / 2307; object = 1, background = 0."),
    "omniglot": DatasetInfo(
        (28, 28, 1), 256, ("train", "test"), ("files", "tfds"), "omniglot28",
        note="Burda et al.'s 28x28 chardata.mat (24345 / 8070), grey values in [0, 1] "
             "stored as round(255 x); binarize it (static or dynamic) for VLAE."),
    "cifar10": DatasetInfo((32, 32, 3), 256, ("train", "test"), ("tfds",), "cifar10"),
    "imagenet32": DatasetInfo(
        (32, 32, 3), 256, ("train", "validation"), ("tfds",), "downsampled_imagenet/32x32",
        note="the validation split is the usual test set."),
    "imagenet64": DatasetInfo(
        (64, 64, 3), 256, ("train", "validation"), ("tfds",), "downsampled_imagenet/64x64",
        note="the validation split is the usual test set; train needs ~16 GB of memory."),
    # The CelebA-HQ arrays of the official Flow++ code (flows_celeba/README.md): already
    # reduced to 5 or 3 bits, one array each, no held-out split.
    "celeba64_5bit": DatasetInfo((64, 64, 3), 32, ("train",), ("files",),
                                 note="celeba_full_64x64_5bit.npy (Flow++'s CelebA-HQ)."),
    "celeba64_3bit": DatasetInfo((64, 64, 3), 8, ("train",), ("files",),
                                 note="celeba_full_64x64_3bit.npy (Flow++'s CelebA-HQ)."),
    "celeba128_5bit": DatasetInfo((128, 128, 3), 32, ("train",), ("files",),
                                  note="celeba_128pixels_5bit_full.npy (Flow++'s CelebA-HQ)."),
}


def info(name: str) -> DatasetInfo:
    """The registry entry for ``name``; ValueError listing the known names otherwise."""
    if name not in DATASETS:
        raise ConfigError(f"Unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}.")
    return DATASETS[name]


SPLIT_ALIASES = {"valid": "validation"}  # the official .amat files' name for it


def check_split(name: str, split: str) -> None:
    """Raises ConfigError unless ``split`` is one of the dataset's split names."""
    splits = info(name).splits
    if split not in splits:
        raise ConfigError(f"Dataset {name!r} has no split {split!r}; valid splits: "
                         f"{', '.join(splits)}.")


def split_parts(name: str, split: str) -> tuple[str, ...]:
    """The splits a split name stands for: ``"train"`` -> ("train",); a union such as
    ``"train+valid"`` (the paper protocol's final training set) -> ("train", "validation"),
    in that order ("valid" is accepted for "validation").  ConfigError for an unknown part,
    a part given twice, or a validation part on a dataset that has none."""
    parts = tuple(SPLIT_ALIASES.get(p.strip(), p.strip()) for p in str(split).split("+"))
    splits = info(name).splits
    if len(parts) > 1 and "validation" in parts and "validation" not in splits:
        raise ConfigError(
            f"Dataset {name!r} has no validation split, so it cannot load {split!r}; its "
            f"splits: {', '.join(splits)}. Train on 'train' (e.g. "
            f"--config.data.train_split=train).")
    if len(set(parts)) != len(parts):
        raise ConfigError(f"Split {split!r} names a split twice; write each once, e.g. "
                          f"'train+valid'.")
    for part in parts:
        check_split(name, part)
    return parts


def reduce_bits(ds: ImageDataset, num_bits: int | None) -> ImageDataset:
    """Keeps the top ``num_bits`` bits of 8-bit data: levels ``x >> (8 - num_bits)``."""
    if num_bits is None:
        return ds
    if ds.num_levels != 256:
        raise ValueError(f"num_bits={num_bits} reduces the bit depth of 8-bit data, but "
                         f"{ds.name!r} has {ds.num_levels} levels; leave num_bits unset.")
    if not isinstance(num_bits, (int, np.integer)) or not 1 <= num_bits <= 8:
        raise ValueError(f"num_bits must be an integer in [1, 8], got {num_bits!r}.")
    images = ds.images if num_bits == 8 else ds.images >> np.uint8(8 - num_bits)
    return ImageDataset(ds.name, ds.split, images, 2 ** int(num_bits))


class DataNotFoundError(UserError, FileNotFoundError):
    """The data was found nowhere; the message lists where it looked and how to provide it."""

    def summary(self) -> str:
        first = str(self).strip().splitlines()[0]
        return (f"{first}\nFix: --config.data.data_dir=DIR with the official files in "
                f"DIR/<dataset>/ (or FLOWZOO_DATA_DIR=DIR), or --config.data.source=tfds; "
                f"--verbose_errors lists where it looked.")
