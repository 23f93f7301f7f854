"""tensorflow-datasets builders for the two benchmark sets TFDS lacks.

- ``Caltech101Silhouettes`` (registered as ``caltech101_silhouettes``): Marlin et al.'s
  28x28 split 1, splits train / validation / test (4100 / 2264 / 2307).
- ``Omniglot28`` (registered as ``omniglot28``; TFDS's own ``omniglot`` is the 105x105 set):
  Burda et al.'s 28x28 ``chardata.mat``, splits train / test (24345 / 8070).

Both have one feature, ``image``: ``tfds.features.Tensor(shape=(28, 28, 1), dtype=uint8)``,
holding exactly what :mod:`flowzoo.data.formats` returns (Caltech: object = 1; OMNIGLOT:
round(255 x)); they are written as ``array_record`` with shuffling disabled, so examples keep
the file's order.  Tensor features need no TensorFlow: these build and read without it.

The official ``.mat`` is taken from the TFDS ``manual_dir`` when it is there (directly or in a
``caltech101_silhouettes/`` or ``omniglot/`` subfolder), else downloaded from its official URL.
Importing this module registers both names with TFDS.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from flowzoo.data import files, formats

_IMAGE = tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8)


def _official_file(dl_manager, name: str, url: str):
    """Path of the official file: from manual_dir if present there, else downloaded."""
    filename = url.rsplit("/", 1)[1]
    try:
        manual = dl_manager.manual_dir  # raises when no (non-empty) manual_dir exists
    except (AssertionError, ValueError):
        manual = None
    if manual is not None:
        for path in (manual / filename, manual / files.FOLDERS[name] / filename):
            if path.exists():
                return path
    return dl_manager.download(url)


def _examples(images: np.ndarray):
    for i, image in enumerate(images):
        yield i, {"image": image}


class Caltech101Silhouettes(tfds.core.GeneratorBasedBuilder):
    """Caltech-101 Silhouettes 28x28 (split 1), binary, object = 1."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release (flowzoo): upright images, object = 1."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Optional: put caltech101_silhouettes_28_split1.mat (from " + files.CALTECH_URL
        + ") in manual_dir; otherwise it is downloaded.")

    def __init__(self, *, file_format="array_record", **kwargs):
        super().__init__(file_format=file_format, **kwargs)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="Caltech-101 Silhouettes 28x28 (Marlin et al. 2010), split 1. "
                        "Upright images, object = 1, background = 0.",
            features=tfds.features.FeaturesDict({"image": _IMAGE}),
            homepage="https://people.cs.umass.edu/~marlin/data.shtml",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        path = _official_file(dl_manager, "caltech101_silhouettes", files.CALTECH_URL)
        arrays = formats.read_caltech101_silhouettes(path)
        return {split: _examples(images) for split, images in arrays.items()}

    def _generate_examples(self, images):  # required by the base class; unused
        return _examples(images)


class Omniglot28(tfds.core.GeneratorBasedBuilder):
    """OMNIGLOT 28x28 (Burda et al.'s chardata.mat), grey values stored as round(255 x)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release (flowzoo)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Optional: put chardata.mat (from " + files.OMNIGLOT_URL + ") in manual_dir; "
        "otherwise it is downloaded.")

    def __init__(self, *, file_format="array_record", **kwargs):
        super().__init__(file_format=file_format, **kwargs)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="OMNIGLOT characters downsampled to 28x28 (Burda et al. 2016, IWAE), "
                        "grey values in [0, 1] stored as uint8 round(255 x).",
            features=tfds.features.FeaturesDict({"image": _IMAGE}),
            homepage="https://github.com/yburda/iwae",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        path = _official_file(dl_manager, "omniglot", files.OMNIGLOT_URL)
        arrays = formats.read_omniglot_chardata(path)
        return {split: _examples(images) for split, images in arrays.items()}

    def _generate_examples(self, images):  # required by the base class; unused
        return _examples(images)


BUILDERS = {"caltech101_silhouettes": Caltech101Silhouettes, "omniglot": Omniglot28}
