"""``data.load`` on the real files and the embedded digits; errors and the missing-data message."""

import gzip
import os
import shutil

import numpy as np
import pytest

from flowzoo import data
from flowzoo.data import files, tfds_source

SIZES = [("mnist", "train", 60000), ("mnist", "test", 10000),
         ("binarized_mnist", "train", 50000), ("binarized_mnist", "validation", 10000),
         ("binarized_mnist", "test", 10000),
         ("caltech101_silhouettes", "train", 4100),
         ("caltech101_silhouettes", "validation", 2264),
         ("caltech101_silhouettes", "test", 2307)]


@pytest.mark.parametrize("name, split, n", SIZES)
def test_file_datasets(data_dir, name, split, n):
    ds = data.load(name, split, source="files", data_dir=data_dir)
    spec = data.DATASETS[name]
    assert (ds.name, ds.split, len(ds)) == (name, split, n)
    assert ds.images.shape == (n, *spec.shape) and ds.images.dtype == np.uint8
    assert ds.num_levels == spec.num_levels
    assert ds.images.min() == 0 and ds.images.max() == ds.num_levels - 1
    assert not ds.images.flags.writeable


def test_known_pixel_means(data_dir):
    """Pins the parsers against published statistics (MNIST train mean 0.1307)."""
    mean = lambda name, split: data.load(name, split, data_dir=data_dir).images.mean()  # noqa
    assert abs(mean("mnist", "train") / 255 - 0.1307) < 1e-4
    assert abs(mean("binarized_mnist", "train") - 0.1306) < 1e-3
    assert abs(mean("caltech101_silhouettes", "train") - 0.4489) < 1e-3


def test_dataset_folder_itself_and_plain_files(data_dir, tmp_path):
    whole = data.load("mnist", "test", source="files", data_dir=data_dir)
    folder = data.load("mnist", "test", source="files", data_dir=os.path.join(data_dir, "mnist"))
    np.testing.assert_array_equal(whole.images, folder.images)
    with gzip.open(os.path.join(data_dir, "mnist", "t10k-images-idx3-ubyte.gz")) as f:
        (tmp_path / "t10k-images-idx3-ubyte").write_bytes(f.read())
    plain = data.load("mnist", "test", source="files", data_dir=tmp_path)
    np.testing.assert_array_equal(whole.images, plain.images)


def test_auto_uses_files_then_env(data_dir, monkeypatch):
    explicit = data.load("caltech101_silhouettes", "test", source="files", data_dir=data_dir)
    auto = data.load("caltech101_silhouettes", "test", data_dir=data_dir)
    np.testing.assert_array_equal(explicit.images, auto.images)
    monkeypatch.setenv(files.ENV_VAR, data_dir)
    from_env = data.load("caltech101_silhouettes", "test", source="files")
    np.testing.assert_array_equal(explicit.images, from_env.images)


@pytest.mark.parametrize("name, sizes", [("binarized_mnist", (50000, 10000)),
                                         ("caltech101_silhouettes", (4100, 2264))])
def test_train_plus_validation_is_both_splits_in_order(data_dir, name, sizes):
    """The VLAE paper's final training set: train then validation, one array."""
    both = data.load(name, "train+valid", data_dir=data_dir)
    train = data.load(name, "train", data_dir=data_dir)
    valid = data.load(name, "validation", data_dir=data_dir)
    assert (len(train), len(valid)) == sizes
    assert (both.name, both.split, len(both)) == (name, "train+validation", sum(sizes))
    np.testing.assert_array_equal(both.images[:sizes[0]], train.images)
    np.testing.assert_array_equal(both.images[sizes[0]:], valid.images)
    assert both.num_levels == 2 and not both.images.flags.writeable
    spelled_out = data.load(name, "train+validation", source="files", data_dir=data_dir)
    np.testing.assert_array_equal(spelled_out.images, both.images)


def test_split_unions_without_a_validation_split_fail_naming_the_fix():
    for name in ("mnist", "omniglot", "digits"):
        with pytest.raises(ValueError, match=f"{name}' has no validation split.*train_split"):
            data.load(name, "train+valid")
    with pytest.raises(ValueError, match="names a split twice"):
        data.load("binarized_mnist", "train+train")
    with pytest.raises(ValueError, match="no split 'tset'"):
        data.load("binarized_mnist", "train+tset")


def test_digits_embedded(no_env):
    from sklearn.datasets import load_digits

    train, test = data.load("digits", "train"), data.load("digits", "test", source="embedded")
    assert train.images.shape == (1497, 8, 8, 1) and test.images.shape == (300, 8, 8, 1)
    assert train.num_levels == test.num_levels == 17
    both = np.concatenate([train.images, test.images])[..., 0]
    np.testing.assert_array_equal(both, load_digits().images)  # file order: first 1497 / last 300
    assert both.min() == 0 and both.max() == 16


def test_bad_names():
    with pytest.raises(ValueError, match="valid splits: train, validation, test"):
        data.load("binarized_mnist", "val")
    with pytest.raises(ValueError, match="valid splits: train, test"):
        data.load("mnist", "validation")
    with pytest.raises(ValueError, match="known datasets: digits, mnist"):
        data.load("fashion_mnist", "train")
    with pytest.raises(ValueError, match="valid sources"):
        data.load("mnist", "train", source="web")
    with pytest.raises(ValueError, match="its sources: embedded"):
        data.load("digits", "train", source="tfds")
    with pytest.raises(ValueError, match="its sources: tfds"):
        data.load("cifar10", "train", source="files")


def test_num_bits(data_dir):
    full = data.load("mnist", "test", data_dir=data_dir)
    five = data.load("mnist", "test", data_dir=data_dir, num_bits=5)
    assert five.num_levels == 32 and five.images.max() == 31
    np.testing.assert_array_equal(five.images, full.images >> 3)
    assert data.load("mnist", "test", data_dir=data_dir, num_bits=8).num_levels == 256
    with pytest.raises(ValueError, match="not 8-bit|has 17 levels"):
        data.load("digits", "train", num_bits=3)
    with pytest.raises(ValueError, match="has 2 levels"):
        data.load("caltech101_silhouettes", "test", data_dir=data_dir, num_bits=1)
    with pytest.raises(ValueError, match=r"in \[1, 8\]"):
        data.load("mnist", "test", data_dir=data_dir, num_bits=0)


def test_missing_files_message_lists_places_and_remedies(tmp_path, no_env):
    with pytest.raises(data.DataNotFoundError) as err:
        data.load("binarized_mnist", "validation", source="files", data_dir=tmp_path)
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    for place in files.candidates("binarized_mnist", "validation", str(tmp_path)):
        assert place in msg
    assert os.path.join(str(tmp_path), "binarized_mnist", "binarized_mnist_valid.amat") in msg
    for remedy in ("--config.data.data_dir=", "--config.data.source=tfds", "manual_dir",
                   files.BINARIZED_MNIST_URL + "binarized_mnist_valid.amat", files.ENV_VAR):
        assert remedy in msg
    with pytest.raises(data.DataNotFoundError, match="no data_dir given and .FLOWZOO_DATA_DIR"):
        data.load("caltech101_silhouettes", "test", source="files")


def test_auto_missing_everywhere_is_one_error(tmp_path, no_env, monkeypatch):
    """No files and TFDS cannot prepare (here: a simulated failed download, no network)."""

    class Offline:
        data_dir = str(tmp_path / "tfds" / "mnist" / "3.0.1")

        def download_and_prepare(self, **kwargs):
            raise ConnectionError("Failed to resolve 'storage.googleapis.com'")

    monkeypatch.setattr(tfds_source, "builder", lambda name, data_dir=None: Offline())
    with pytest.raises(data.DataNotFoundError) as err:
        data.load("mnist", "train", data_dir=tmp_path)
    msg = str(err.value)
    for place in files.candidates("mnist", "train", str(tmp_path)):
        assert place in msg
    assert Offline.data_dir in msg and "ConnectionError" in msg
    assert files.MNIST_URL + "train-images-idx3-ubyte.gz" in msg
    assert isinstance(err.value.__cause__, ConnectionError)
    with pytest.raises(data.DataNotFoundError) as err:  # no data_dir, no FLOWZOO_DATA_DIR
        data.load("mnist", "test")
    assert "no data_dir given and $FLOWZOO_DATA_DIR is not set" in str(err.value)
    assert Offline.data_dir in str(err.value)


def test_non_binary_caltech_is_refused(tmp_path, data_dir):
    """A caltech file holding 0/2 would silently break 2-level models: refused."""
    import scipy.io

    src = os.path.join(data_dir, "caltech101_silhouettes", files.CALTECH_URL.rsplit("/", 1)[1])
    shutil.copy(src, tmp_path / "x.mat")
    mat = scipy.io.loadmat(tmp_path / "x.mat")
    mat = {k: v for k, v in mat.items() if not k.startswith("__")}
    mat["test_data"] = mat["test_data"] * 2
    scipy.io.savemat(tmp_path / os.path.basename(src), mat)
    with pytest.raises(ValueError, match="0/1 values"):
        data.load("caltech101_silhouettes", "test", data_dir=tmp_path)


def test_datasets_registry():
    assert set(data.DATASETS) == {"digits", "mnist", "binarized_mnist", "caltech101_silhouettes",
                                  "omniglot", "cifar10", "imagenet32", "imagenet64",
                                  "celeba64_5bit", "celeba64_3bit", "celeba128_5bit"}
    for name, spec in data.DATASETS.items():
        assert len(spec.shape) == 3 and 2 <= spec.num_levels <= 256, name
        assert set(spec.splits) <= {"train", "validation", "test"}, name
        assert set(spec.sources) <= {"files", "tfds", "embedded"}, name
        assert ("tfds" in spec.sources) == (spec.tfds_name is not None), name


def test_image_dataset_validates():
    with pytest.raises(ValueError, match="uint8"):
        data.ImageDataset("x", "train", np.zeros((2, 3, 3, 1), np.float32), 256)
    with pytest.raises(ValueError, match="num_levels"):
        data.ImageDataset("x", "train", np.zeros((2, 3, 3, 1), np.uint8), 1)


def test_flowpp_celeba_arrays_load_from_their_npy_files(tmp_path):
    """The official Flow++ CelebA-HQ files are bit-reduced uint8 .npy arrays (here a small
    generated one in their layout); a missing file names where to get it."""
    folder = tmp_path / "celeba"
    folder.mkdir()
    images = np.random.default_rng(0).integers(0, 8, (5, 64, 64, 3), dtype=np.uint8)
    np.save(folder / "celeba_full_64x64_3bit.npy", images)
    ds = data.load("celeba64_3bit", "train", data_dir=tmp_path)
    assert ds.num_levels == 8 and ds.images.shape == (5, 64, 64, 3)
    np.testing.assert_array_equal(ds.images, images)
    np.save(folder / "celeba_full_64x64_5bit.npy", images.astype(np.float32))
    with pytest.raises(ValueError, match="expected uint8 images"):
        data.load("celeba64_5bit", "train", data_dir=tmp_path)
    with pytest.raises(data.DataNotFoundError, match="dropbox.com/s/q4lw5or2hb31ve5"):
        data.load("celeba64_3bit", "train", data_dir=tmp_path / "elsewhere")
