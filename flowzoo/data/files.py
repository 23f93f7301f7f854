"""Loading the official dataset files from a local folder (``source="files"``).

A data folder is laid out as::

    DATA_DIR/mnist/train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz   (or un-gzipped)
    DATA_DIR/binarized_mnist/binarized_mnist_{train,valid,test}.amat.gz    (or .amat)
    DATA_DIR/caltech101_silhouettes/caltech101_silhouettes_28_split1.mat
    DATA_DIR/omniglot/chardata.mat

``data_dir`` may also be the dataset's own folder (the files directly inside it).  When
``data_dir`` is None the environment variable ``FLOWZOO_DATA_DIR`` is used.  Parsed files are
cached in memory (keyed by path, size and modification time), so repeated loads are cheap.
"""

from __future__ import annotations

import functools
import os

from flowzoo.data import formats
from flowzoo.data.dataset import DataNotFoundError, ImageDataset, info

ENV_VAR = "FLOWZOO_DATA_DIR"

FOLDERS = {"mnist": "mnist", "binarized_mnist": "binarized_mnist",
           "caltech101_silhouettes": "caltech101_silhouettes", "omniglot": "omniglot",
           "celeba64_5bit": "celeba", "celeba64_3bit": "celeba", "celeba128_5bit": "celeba"}

_MNIST = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
_AMAT = {"train": "train", "validation": "valid", "test": "test"}
_CALTECH = "caltech101_silhouettes_28_split1.mat"
_OMNIGLOT = "chardata.mat"
# Flow++'s CelebA-HQ arrays (flows_celeba/README.md gives the 64x64 ones' URLs).
_CELEBA = {"celeba64_5bit": "celeba_full_64x64_5bit.npy",
           "celeba64_3bit": "celeba_full_64x64_3bit.npy",
           "celeba128_5bit": "celeba_128pixels_5bit_full.npy"}
_CELEBA_URLS = {"celeba64_5bit": "https://www.dropbox.com/s/vn5hqd7hflxhvrp/",
                "celeba64_3bit": "https://www.dropbox.com/s/q4lw5or2hb31ve5/"}

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"  # the copy TFDS uses
BINARIZED_MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
CALTECH_URL = "https://people.cs.umass.edu/~marlin/data/" + _CALTECH
OMNIGLOT_URL = "https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/" + _OMNIGLOT


def file_names(name: str, split: str) -> list[str]:
    """Accepted names of the file holding ``split``, in order of preference."""
    if name == "mnist":
        return [_MNIST[split] + ".gz", _MNIST[split]]
    if name == "binarized_mnist":
        stem = f"binarized_mnist_{_AMAT[split]}.amat"
        return [stem, stem + ".gz"]
    if name == "caltech101_silhouettes":
        return [_CALTECH]
    if name == "omniglot":
        return [_OMNIGLOT]
    if name in _CELEBA:
        return [_CELEBA[name]]
    raise ValueError(f"Dataset {name!r} has no local-file loader; use source='tfds'.")


def download_urls(name: str) -> list[str]:
    """The official files' URLs (for messages)."""
    if name == "mnist":
        return [MNIST_URL + f + ".gz" for f in _MNIST.values()]
    if name == "binarized_mnist":
        return [f"{BINARIZED_MNIST_URL}binarized_mnist_{s}.amat" for s in _AMAT.values()]
    if name in _CELEBA_URLS:
        return [_CELEBA_URLS[name] + _CELEBA[name] + "?dl=1"]
    return {"caltech101_silhouettes": [CALTECH_URL], "omniglot": [OMNIGLOT_URL]}.get(name, [])


def resolve_data_dir(data_dir) -> str | None:
    """``data_dir`` if given, else ``$FLOWZOO_DATA_DIR`` if set, else None."""
    if data_dir is not None:
        return os.fspath(data_dir)
    return os.environ.get(ENV_VAR) or None


def candidates(name: str, split: str, data_dir) -> list[str]:
    """Every path looked at, in order: DATA_DIR/<folder>/<file>, then DATA_DIR/<file>."""
    if data_dir is None:
        return []
    dirs = [os.path.join(data_dir, FOLDERS[name]), os.fspath(data_dir)]
    return [os.path.join(d, f) for d in dirs for f in file_names(name, split)]


def find(name: str, split: str, data_dir) -> str | None:
    """The first existing candidate file, or None."""
    return next((p for p in candidates(name, split, data_dir) if os.path.isfile(p)), None)


def load_files(name: str, split: str, data_dir=None) -> ImageDataset:
    """Loads ``split`` of ``name`` from the official files; DataNotFoundError if absent."""
    data_dir = resolve_data_dir(data_dir)
    path = find(name, split, data_dir)
    if path is None:
        raise DataNotFoundError(missing_message(name, split, candidates(name, split, data_dir),
                                                data_dir_given=data_dir is not None))
    st = os.stat(path)
    images = _parse(name, os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if isinstance(images, dict):
        images = images[split]
    return ImageDataset(name, split, images, info(name).num_levels)


@functools.lru_cache(maxsize=8)
def _parse(name, path, size, mtime_ns):
    del size, mtime_ns  # cache keys only
    if name == "mnist":
        return formats.read_idx(path, 3)[..., None]
    if name == "binarized_mnist":
        return formats.read_amat(path).reshape(-1, 28, 28, 1)
    if name == "caltech101_silhouettes":
        return formats.read_caltech101_silhouettes(path)
    if name in _CELEBA:
        return formats.read_npy_images(path)
    return formats.read_omniglot_chardata(path)


def missing_message(name: str, split: str, looked: list[str], *, data_dir_given: bool = True,
                    tfds_attempt: str | None = None) -> str:
    """The one message for missing data: where we looked and how to provide the data."""
    lines = [f"No data found for dataset {name!r}, split {split!r}.", "Looked in:"]
    if looked:
        lines += [f"  - {p}" for p in looked]
    if not data_dir_given:
        lines.append(f"  - (no local files: no data_dir given and ${ENV_VAR} is not set)")
    if tfds_attempt:
        lines.append(f"  - tensorflow-datasets: {tfds_attempt}")
    lines.append("To provide it, do one of:")
    urls = download_urls(name)
    if urls and name in FOLDERS:
        lines.append(f"  * download the official files into DIR/{FOLDERS[name]}/ and pass "
                     f"--config.data.data_dir=DIR (or load(..., data_dir=DIR), or set "
                     f"{ENV_VAR}=DIR):")
        lines += [f"      {u}" for u in urls]
    tfds_name = info(name).tfds_name
    if tfds_name:
        lines.append(f"  * use tensorflow-datasets ({tfds_name!r}): --config.data.source=tfds; it "
                     "downloads into its data_dir (--config.data.data_dir=DIR, default "
                     "~/tensorflow_datasets).")
        if urls:
            plain = ", un-gzipped" if name == "binarized_mnist" else ""
            lines.append(f"    Offline: put the official files (named as in the URLs above{plain}) "
                         f"in a folder M and pass it as the TFDS manual_dir: "
                         f"--config.data.manual_dir=M (load(..., manual_dir=M)).")
        if name in ("mnist", "binarized_mnist", "cifar10", "imagenet32", "imagenet64"):
            lines.append("    Preparing this dataset needs TensorFlow (pip install "
                         "tensorflow-cpu); reading prepared data does not.")
    if name == "digits":
        lines.append("  * install scikit-learn, which ships this dataset.")
    return "\n".join(lines)
