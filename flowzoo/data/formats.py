"""Parsers for the official dataset files (no TensorFlow, no network).

Each parser takes a path and returns numpy arrays, checking the file's structure and raising
ValueError naming the file and what was wrong.  Files ending in ``.gz`` are decompressed.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

# IDX type codes (http://yann.lecun.com/exdb/mnist/): all big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes, gunzipped when the name ends in ``.gz``."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (gzip.BadGzipFile, EOFError) as e:
        raise ValueError(f"{path}: not a valid gzip file ({e}).") from e


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """An IDX file (MNIST) as an array of rank ``ndim`` (images: 3, labels: 1).

    The header is the magic number ``00 00 TT NN`` (TT: type code, NN: rank) followed by NN
    big-endian int32 sizes; MNIST images have magic 0x00000803, labels 0x00000801.
    """
    raw = read_bytes(path)
    expected = f"0x000008{ndim:02x}"
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'}, "
                         f"expected {expected} for rank-{ndim} uint8 data); is the file "
                         f"truncated or not MNIST IDX?")
    if raw[3] != ndim:
        raise ValueError(f"{path}: IDX rank is {raw[3]} (magic 0x{raw[:4].hex()}), expected "
                         f"{ndim} (magic {expected}); images and labels swapped?")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: IDX header truncated ({len(raw)} bytes).")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    size = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != size:
        raise ValueError(f"{path}: IDX header says shape {shape} ({size} bytes of data) but "
                         f"the file holds {len(raw) - header} bytes after the header.")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_amat(path: str | os.PathLike, width: int = 784) -> np.ndarray:
    """A binarized-MNIST ``.amat`` (or ``.amat.gz``) as uint8 (N, width) of 0/1.

    The format is one example per line, ``width`` values separated by spaces.  The official
    files hold single characters ``0``/``1``, parsed with a vectorized fast path; anything else
    (e.g. ``0.0``) goes through ``np.loadtxt``.  Values other than 0 and 1 are an error.
    """
    raw = np.frombuffer(read_bytes(path), np.uint8)
    space = (raw == ord(" ")) | (raw == ord("\n")) | (raw == ord("\r")) | (raw == ord("\t"))
    value = ~space
    chars = raw[value]
    # Fast path: every token is one character (no two value bytes adjacent) and is 0 or 1.
    single = not np.any(value[1:] & value[:-1])
    if chars.size and single and np.all((chars == 48) | (chars == 49)):
        starts = np.concatenate([[0], np.flatnonzero(raw == ord("\n")) + 1])
        starts = starts[starts < raw.size]
        counts = np.add.reduceat(value.view(np.uint8), starts, dtype=np.int64)
        counts = counts[counts > 0]  # blank lines hold no example
        if np.any(counts != width):
            bad = int(np.flatnonzero(counts != width)[0])
            raise ValueError(f"{path}: example {bad + 1} has {counts[bad]} values, expected "
                             f"{width}.")
        return (chars - 48).astype(np.uint8).reshape(-1, width)
    text = bytes(raw).decode("ascii", errors="replace").splitlines()
    try:
        values = np.loadtxt(text, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise ValueError(f"{path}: not a .amat text file of {width} numbers per line ({e}).") from e
    if values.shape[1] != width:
        raise ValueError(f"{path}: {values.shape[1]} values per line, expected {width}.")
    if not np.all((values == 0) | (values == 1)):
        raise ValueError(f"{path}: expected binary values 0/1, found others.")
    return values.astype(np.uint8)


def _loadmat(path):
    import scipy.io  # scipy is only needed for the .mat datasets

    try:
        return scipy.io.loadmat(os.fspath(path))
    except Exception as e:  # scipy raises several types for non-.mat input
        raise ValueError(f"{path}: cannot read as a MATLAB .mat file ({e}).") from e


def _keys(mat) -> list[str]:
    return sorted(k for k in mat if not k.startswith("__"))


def _columns_to_images(path, key, flat, rows_are_examples: bool):
    if flat.ndim != 2 or flat.shape[1 if rows_are_examples else 0] != 784:
        want = "(N, 784)" if rows_are_examples else "(784, N)"
        raise ValueError(f"{path}: {key!r} has shape {flat.shape}, expected {want}.")
    flat = flat if rows_are_examples else flat.T
    # MATLAB stores each 28x28 image column-major: reshape in Fortran order to get it upright.
    return flat.reshape(-1, 28, 28, order="F")[..., None]


CALTECH_KEYS = {"train": "train_data", "validation": "val_data", "test": "test_data"}


def read_caltech101_silhouettes(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``caltech101_silhouettes_28_split1.mat`` -> {split: uint8 (N, 28, 28, 1)}.

    The file stores each image as a 784 row in column-major order with background = 1 and
    object = 0.  We return upright images with **object = 1, background = 0** (``1 - x``), the
    polarity of binarized MNIST (ink = 1); checked by rendering the images (pyramids point up).
    """
    mat = _loadmat(path)
    out = {}
    for split, key in CALTECH_KEYS.items():
        if key not in mat:
            raise ValueError(f"{path}: missing key {key!r}; keys: {_keys(mat)}.")
        x = np.asarray(mat[key])
        if not np.all((x == 0) | (x == 1)):
            raise ValueError(f"{path}: {key!r} should hold 0/1 values.")
        out[split] = (1 - _columns_to_images(path, key, x, True)).astype(np.uint8)
    return out


OMNIGLOT_KEYS = {"train": "data", "test": "testdata"}


def read_omniglot_chardata(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Burda et al.'s ``chardata.mat`` -> {split: uint8 (N, 28, 28, 1)} of round(255 x).

    The file holds ``data`` (784, 24345) and ``testdata`` (784, 8070), grey values in [0, 1],
    one image per column, column-major (the IWAE loader's ``reshape(..., order='F')``); values
    are kept as they are (no polarity change).  Only a generated file of this structure was
    available for testing, not the real one.
    """
    mat = _loadmat(path)
    out = {}
    for split, key in OMNIGLOT_KEYS.items():
        if key not in mat:
            raise ValueError(f"{path}: missing key {key!r}; keys: {_keys(mat)}.")
        x = np.asarray(mat[key], np.float64)
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"{path}: {key!r} values should lie in [0, 1], found "
                             f"[{x.min()}, {x.max()}].")
        out[split] = np.rint(_columns_to_images(path, key, x, False) * 255).astype(np.uint8)
    return out


def read_npy_images(path: str | os.PathLike) -> np.ndarray:
    """A NumPy ``.npy`` array of uint8 images (N, H, W, C), e.g. Flow++'s CelebA-HQ files."""
    try:
        images = np.load(os.fspath(path), allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{path}: not a NumPy .npy array ({e}).") from e
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"{path}: expected uint8 images (N, H, W, C), got {images.dtype} "
                         f"{images.shape}.")
    return images
