"""File parsers on the real files (and deliberately corrupted copies of them)."""

import gzip
import os

import numpy as np
import pytest
import scipy.io

from flowzoo.data import formats


def _mnist(data_dir, name):
    return os.path.join(data_dir, "mnist", name)


def test_idx_reads_mnist_with_its_magic_numbers(data_dir):
    images = formats.read_idx(_mnist(data_dir, "t10k-images-idx3-ubyte.gz"), 3)
    labels = formats.read_idx(_mnist(data_dir, "t10k-labels-idx1-ubyte.gz"), 1)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    raw = formats.read_bytes(_mnist(data_dir, "t10k-images-idx3-ubyte.gz"))
    assert raw[:4] == bytes([0, 0, 8, 3])  # 0x00000803


@pytest.mark.parametrize("offset, value, message", [
    (0, 0x1F, "not an IDX file"),          # first magic byte must be 0
    (2, 0x07, "not an IDX file"),          # unknown type code
    (3, 0x02, "rank is 2"),                # images read as rank 3, header says 2
    (7, 0x00, "header says shape"),        # N changed: sizes no longer match the data
])
def test_idx_corrupt_header_is_a_clear_error(data_dir, tmp_path, offset, value, message):
    raw = bytearray(formats.read_bytes(_mnist(data_dir, "t10k-images-idx3-ubyte.gz")))
    raw[offset] = value
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=message) as err:
        formats.read_idx(path, 3)
    assert str(path) in str(err.value)


def test_idx_truncated_and_non_gzip(data_dir, tmp_path):
    raw = formats.read_bytes(_mnist(data_dir, "t10k-labels-idx1-ubyte.gz"))
    (tmp_path / "short").write_bytes(raw[:1000])
    with pytest.raises(ValueError, match="holds 992 bytes"):
        formats.read_idx(tmp_path / "short", 1)
    (tmp_path / "fake.gz").write_bytes(raw[:100])
    with pytest.raises(ValueError, match="not a valid gzip file"):
        formats.read_idx(tmp_path / "fake.gz", 1)


def test_amat_plain_and_gz_agree(data_dir, tmp_path):
    gz = os.path.join(data_dir, "binarized_mnist", "binarized_mnist_valid.amat.gz")
    plain = tmp_path / "binarized_mnist_valid.amat"
    with gzip.open(gz, "rb") as f:
        plain.write_bytes(f.read())
    a, b = formats.read_amat(gz), formats.read_amat(plain)
    assert a.shape == (10000, 784) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0, 1}


def test_amat_general_path_and_errors(data_dir, tmp_path):
    gz = os.path.join(data_dir, "binarized_mnist", "binarized_mnist_test.amat.gz")
    with gzip.open(gz, "rt") as f:
        lines = [next(f) for _ in range(3)]
    expected = formats.read_amat(gz)[:3]
    # The same three real examples written as floats take the np.loadtxt path.
    floats = tmp_path / "floats.amat"
    floats.write_text("".join(" ".join(f"{float(v):.1f}" for v in ln.split()) + "\n"
                              for ln in lines))
    np.testing.assert_array_equal(formats.read_amat(floats), expected)
    short = tmp_path / "short.amat"
    short.write_text(lines[0] + " ".join(lines[1].split()[:-1]) + "\n")
    with pytest.raises(ValueError, match="example 2 has 783 values"):
        formats.read_amat(short)
    grey = tmp_path / "grey.amat"
    grey.write_text(lines[0].replace("1", "0.5", 1))
    with pytest.raises(ValueError, match="binary values"):
        formats.read_amat(grey)


def _caltech(data_dir):
    return os.path.join(data_dir, "caltech101_silhouettes", "caltech101_silhouettes_28_split1.mat")


def test_caltech_polarity_object_is_one(data_dir):
    images = formats.read_caltech101_silhouettes(_caltech(data_dir))
    for split, n in {"train": 4100, "validation": 2264, "test": 2307}.items():
        x = images[split]
        assert x.shape == (n, 28, 28, 1) and x.dtype == np.uint8
        border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1)
        assert border.mean() < 0.05        # background (0) surrounds the object ...
        assert x[:, 10:18, 10:18].mean() > 0.85  # ... which fills the centre (1)


def test_caltech_orientation_upright(data_dir):
    """Pinned by looking at renders: pyramids and buddhas are wide at the bottom, umbrellas
    at the top.  A transposed reading would move that asymmetry to left/right, a flipped
    one would reverse it."""
    path = _caltech(data_dir)
    x = formats.read_caltech101_silhouettes(path)["train"][..., 0].astype(np.int64)
    mat = scipy.io.loadmat(path)
    classes = [str(c[0]) for c in mat["classnames"][0]]
    labels = mat["train_labels"].ravel()  # 1-based class numbers
    for name, bottom_heavy in (("pyramid", True), ("buddha", True), ("umbrella", False)):
        xs = x[labels == classes.index(name) + 1]
        assert len(xs) > 30
        top, bottom = xs[:, :9].sum((1, 2)), xs[:, -9:].sum((1, 2))
        left, right = xs[:, :, :9].sum((1, 2)), xs[:, :, -9:].sum((1, 2))
        assert np.mean((bottom > top) == bottom_heavy) > 0.95, name
        assert np.abs(bottom - top).mean() > 2 * np.abs(right - left).mean(), name


def _glyph(k: int) -> np.ndarray:
    """An upright 'L' with a grey corner, shifted by k columns: row = y, column = x."""
    img = np.zeros((28, 28))
    img[4:24, 5 + k] = 1.0   # vertical stroke
    img[23, 5 + k:20 + k] = 1.0  # foot, at the bottom
    img[23, 5 + k] = 0.5
    return img


def write_chardata(path, n_train=5, n_test=3):
    """A generated chardata.mat with the real file's structure: (784, N) float columns,
    each image stored column-major (MATLAB order).  Returns the upright images."""
    train = np.stack([_glyph(k) for k in range(n_train)])
    test = np.stack([_glyph(k) for k in range(n_test)])[:, ::-1]  # test images upside down
    columns = lambda imgs: imgs.reshape(len(imgs), -1, order="F").T  # noqa: E731
    scipy.io.savemat(path, {"data": columns(train), "testdata": columns(test),
                            "target": np.zeros((50, n_train)),
                            "testtarget": np.zeros((50, n_test))})
    return train, test


def test_omniglot_generated_chardata(tmp_path):
    """Only a generated file of the real structure is tested (the real one is not here)."""
    path = tmp_path / "chardata.mat"
    train, test = write_chardata(path)
    out = formats.read_omniglot_chardata(path)
    assert out["train"].shape == (5, 28, 28, 1) and out["test"].shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(out["train"][..., 0], np.rint(train * 255).astype(np.uint8))
    np.testing.assert_array_equal(out["test"][..., 0], np.rint(test * 255).astype(np.uint8))
    assert out["train"][0, 23, 5, 0] == 128 and out["train"][0, 23, 19, 0] == 255  # foot at bottom


def test_omniglot_structure_errors(tmp_path):
    scipy.io.savemat(tmp_path / "a.mat", {"data": np.zeros((784, 2))})
    with pytest.raises(ValueError, match="missing key 'testdata'"):
        formats.read_omniglot_chardata(tmp_path / "a.mat")
    scipy.io.savemat(tmp_path / "b.mat", {"data": np.zeros((2, 784)),
                                          "testdata": np.zeros((784, 1))})
    with pytest.raises(ValueError, match=r"expected \(784, N\)"):
        formats.read_omniglot_chardata(tmp_path / "b.mat")
    scipy.io.savemat(tmp_path / "c.mat", {"data": np.full((784, 1), 2.0),
                                          "testdata": np.zeros((784, 1))})
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        formats.read_omniglot_chardata(tmp_path / "c.mat")
    (tmp_path / "d.mat").write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="MATLAB"):
        formats.read_omniglot_chardata(tmp_path / "d.mat")
