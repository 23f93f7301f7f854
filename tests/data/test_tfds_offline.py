"""Preparing ``mnist`` and ``binarized_mnist`` through tensorflow-datasets, offline.

The real files from ``$FLOWZOO_DATA_DIR`` are the TFDS ``manual_dir`` (binarized MNIST's are
gunzipped into a temporary folder: TFDS registers the ``.amat`` files), every network
connection is refused, and the prepared splits must hold exactly the images the local file
loaders read.  TFDS writes the registered datasets in its own fixed shuffled order, so the
comparison is of the multisets of images (sorted SHA-1 digests of each image's bytes), plus
the count.  Preparing these builders needs TensorFlow: the module skips without it.
"""

import gzip
import hashlib
import importlib.util
import os
import socket

import numpy as np
import pytest

if importlib.util.find_spec("tensorflow") is None:
    pytest.skip("TensorFlow is not installed: TFDS needs it to prepare mnist and "
                "binarized_mnist (pip install tensorflow-cpu to run this test)",
                allow_module_level=True)

from flowzoo import data  # noqa: E402


@pytest.fixture
def offline(monkeypatch):
    """Refuses (and records) every DNS lookup and connection."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if len(args) > 1 else args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def _digests(images: np.ndarray) -> list[bytes]:
    return sorted(hashlib.sha1(img.tobytes()).digest() for img in images)


def _check_same_images(name, split, data_dir, tfds_dir, manual_dir):
    via_tfds = data.load(name, split, source="tfds", data_dir=tfds_dir, manual_dir=manual_dir)
    via_files = data.load(name, split, source="files", data_dir=data_dir)
    assert via_tfds.images.shape == via_files.images.shape
    assert via_tfds.num_levels == via_files.num_levels
    assert _digests(via_tfds.images) == _digests(via_files.images), (name, split)


def test_mnist_offline_from_manual_dir(data_dir, tmp_path, offline):
    manual = os.path.join(data_dir, "mnist")  # the .gz files, as TFDS registers them
    for split in ("train", "test"):
        _check_same_images("mnist", split, data_dir, tmp_path / "tfds", manual)
    assert offline == []


def test_binarized_mnist_offline_from_manual_dir(data_dir, tmp_path, offline):
    manual = tmp_path / "manual"
    manual.mkdir()
    for part in ("train", "valid", "test"):
        name = f"binarized_mnist_{part}.amat"
        with gzip.open(os.path.join(data_dir, "binarized_mnist", name + ".gz")) as f:
            (manual / name).write_bytes(f.read())
    for split in ("train", "validation", "test"):
        _check_same_images("binarized_mnist", split, data_dir, tmp_path / "tfds", manual)
    assert offline == []


def test_tfrecord_prepared_data_is_read_with_tensorflow(data_dir, tmp_path, offline):
    """Data an earlier tfds.load prepared as tfrecord (no random access) is still read."""
    import tensorflow_datasets as tfds

    from flowzoo.data.tfds_builders import Caltech101Silhouettes

    builder = Caltech101Silhouettes(data_dir=tmp_path, file_format="tfrecord")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=os.path.join(data_dir, "caltech101_silhouettes"), try_download_gcs=False))
    via_tfds = data.load("caltech101_silhouettes", "test", source="tfds", data_dir=tmp_path)
    via_files = data.load("caltech101_silhouettes", "test", source="files", data_dir=data_dir)
    np.testing.assert_array_equal(via_tfds.images, via_files.images)
    assert offline == []
