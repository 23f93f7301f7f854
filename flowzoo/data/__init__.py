"""Datasets as in-memory uint8 arrays, and deterministic resumable batches.

>>> from flowzoo import data
>>> ds = data.load("digits", "train")              # embedded: no download, no TensorFlow
>>> ds.images.shape, ds.num_levels
((1497, 8, 8, 1), 17)
>>> batches = data.Batches(ds, 64, seed=0)
>>> b = batches.batch(0)                            # a pure function of the step
>>> b["image"].shape, b["index"].shape
((64, 8, 8, 1), (64,))

Modules: ``dataset`` (``ImageDataset``, ``DATASETS``), ``formats`` (official file parsers),
``files`` (local folders), ``embedded`` (scikit-learn digits), ``tfds_source`` and
``tfds_builders`` (tensorflow-datasets, imported only when used), ``loading``, ``batches`` and
``binarize``.  Dequantization is the model's job: batches hold integer levels.
"""

from flowzoo.data.batches import Batches
from flowzoo.data.dataset import DATASETS, DataNotFoundError, DatasetInfo, ImageDataset
from flowzoo.data.loading import load

__all__ = ["Batches", "DATASETS", "DataNotFoundError", "DatasetInfo", "ImageDataset", "load"]
