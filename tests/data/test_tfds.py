"""tensorflow-datasets paths that need no TensorFlow: the custom builders (built from the real
Caltech file and a generated OMNIGLOT file) and TFDS-only datasets through ``mock_data``."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from flowzoo import data  # noqa: E402
from tests.data.test_formats import write_chardata  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Makes `import tensorflow` fail and `importlib.util.find_spec("tensorflow")` return None,
# exactly as when TensorFlow is not installed, even where it is.
HIDE_TENSORFLOW = textwrap.dedent("""
    import sys

    class _Hide:
        def __init__(self, finder):
            self.finder = finder

        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                return None
            find = getattr(self.finder, "find_spec", None)
            return find(name, path, target) if find else None

        def invalidate_caches(self):
            getattr(self.finder, "invalidate_caches", lambda: None)()

    sys.meta_path[:] = [_Hide(f) for f in sys.meta_path]
""")


def test_caltech_builder_builds_and_reads_without_tensorflow(data_dir, tmp_path):
    script = HIDE_TENSORFLOW + textwrap.dedent(f"""
        import importlib.util
        import numpy as np
        from flowzoo import data

        assert importlib.util.find_spec("tensorflow") is None
        for split in ("train", "validation", "test"):
            via_tfds = data.load("caltech101_silhouettes", split, source="tfds",
                                 data_dir={str(tmp_path / "tfds")!r},
                                 manual_dir={os.path.join(data_dir, "caltech101_silhouettes")!r})
            via_files = data.load("caltech101_silhouettes", split, source="files",
                                  data_dir={data_dir!r})
            assert np.array_equal(via_tfds.images, via_files.images), split  # same order too
        assert "tensorflow" not in sys.modules
        print("BUILT WITHOUT TENSORFLOW")
    """)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BUILT WITHOUT TENSORFLOW" in result.stdout
    assert (tmp_path / "tfds" / "caltech101_silhouettes" / "1.0.0").is_dir()


def test_caltech_builder_finds_the_file_in_a_manual_dir_subfolder(data_dir, tmp_path):
    """manual_dir may be the whole data folder (file in caltech101_silhouettes/)."""
    via_tfds = data.load("caltech101_silhouettes", "validation", source="tfds",
                         data_dir=tmp_path, manual_dir=data_dir)
    via_files = data.load("caltech101_silhouettes", "validation", data_dir=data_dir)
    np.testing.assert_array_equal(via_tfds.images, via_files.images)


def test_train_plus_validation_through_tfds(data_dir, tmp_path):
    """The union loads through TFDS too: the same 6,364 images as the files, in order."""
    via_tfds = data.load("caltech101_silhouettes", "train+valid", source="tfds",
                         data_dir=tmp_path, manual_dir=data_dir)
    via_files = data.load("caltech101_silhouettes", "train+valid", data_dir=data_dir)
    assert via_tfds.split == "train+validation" and len(via_tfds) == 4100 + 2264
    np.testing.assert_array_equal(via_tfds.images, via_files.images)


def test_omniglot_builder_on_a_generated_chardata(tmp_path):
    """Only a generated file of the real structure (the real one was not available)."""
    manual = tmp_path / "manual"
    manual.mkdir()
    train, test = write_chardata(manual / "chardata.mat", n_train=6, n_test=4)
    for split, expected in (("train", train), ("test", test)):
        via_tfds = data.load("omniglot", split, source="tfds", data_dir=tmp_path / "tfds",
                             manual_dir=manual)
        via_files = data.load("omniglot", split, source="files", data_dir=manual)
        assert via_tfds.num_levels == 256
        np.testing.assert_array_equal(via_tfds.images, via_files.images)
        np.testing.assert_array_equal(via_tfds.images[..., 0], np.rint(expected * 255))


def test_cifar10_through_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        train = data.load("cifar10", "train", source="tfds", data_dir=tmp_path)
        test = data.load("cifar10", "test", data_dir=tmp_path, num_bits=5)  # auto -> tfds
    assert train.images.shape == (12, 32, 32, 3) and train.images.dtype == np.uint8
    assert train.num_levels == 256 and test.num_levels == 32 and test.images.max() < 32


def test_binary_dataset_with_8bit_values_is_refused(tmp_path):
    """mock_data fills binarized_mnist's images with 0..255: not 2-level data, so refused."""
    with tfds.testing.mock_data(num_examples=5):
        with pytest.raises(ValueError, match=r"levels in \[0, 2\)"):
            data.load("binarized_mnist", "test", source="tfds", data_dir=tmp_path)


@pytest.mark.parametrize("name, config, size", [("imagenet32", "32x32", 32),
                                                ("imagenet64", "64x64", 64)])
def test_downsampled_imagenet_names_and_splits(tmp_path, name, config, size):
    calls = []

    def fake_source(builder, split, **kwargs):
        calls.append((builder.name, builder.builder_config.name, split))
        return [{"image": np.full((size, size, 3), i, np.uint8)} for i in range(3)]

    with tfds.testing.mock_data(as_data_source_fn=fake_source):
        ds = data.load(name, "validation", source="tfds", data_dir=tmp_path)
    assert calls == [("downsampled_imagenet", config, "validation")]
    assert ds.images.shape == (3, size, size, 3) and ds.images[2].min() == 2
    with pytest.raises(ValueError, match="valid splits: train, validation"):
        data.load(name, "test")
