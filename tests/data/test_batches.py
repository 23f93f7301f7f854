"""``data.Batches``: purity (resume), process slicing, epoch coverage, eval padding, binarization.

Most tests use the embedded digits (real data shipped with scikit-learn, so they always run);
the speed test uses real MNIST from ``$FLOWZOO_DATA_DIR``.
"""

import time

import numpy as np
import pytest

from flowzoo import data


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", "train")  # 1497 images, 17 levels


def test_batch_is_a_pure_function_of_step(digits):
    a = data.Batches(digits, 32, seed=7)
    b = data.Batches(digits, 32, seed=7)
    steps = [0, 5, 46, 47, 1000, 3]  # crosses epochs, out of order
    first = {s: a.batch(s) for s in steps}
    for s in reversed(steps):
        np.testing.assert_array_equal(b.batch(s)["index"], first[s]["index"])
        np.testing.assert_array_equal(b.batch(s)["image"], first[s]["image"])
    x = a.batch(5)
    assert x["image"].shape == (32, 8, 8, 1) and x["image"].dtype == np.uint8
    assert x["index"].dtype == np.int64
    np.testing.assert_array_equal(x["image"], digits.images[x["index"]])


def test_resume_from_a_checkpointed_step(digits):
    run = data.Batches(digits, 64, seed=1, binarization="dynamic")
    history = [run.batch(s)["image"] for s in range(60)]  # 23 steps per epoch
    resumed = data.Batches(digits, 64, seed=1, binarization="dynamic")  # "after restart"
    for s in range(37, 60):
        np.testing.assert_array_equal(resumed.batch(s)["image"], history[s])


@pytest.mark.parametrize("count", [2, 4])
def test_process_slices_concatenate_to_the_global_batch(digits, count):
    whole = data.Batches(digits, 32, seed=3, binarization="dynamic")
    parts = [data.Batches(digits, 32, seed=3, process_index=p, process_count=count,
                          binarization="dynamic") for p in range(count)]
    for step in (0, 9, 50):
        pieces = [p.batch(step) for p in parts]
        assert all(len(x["index"]) == 32 // count for x in pieces)
        for key in ("index", "image"):
            np.testing.assert_array_equal(np.concatenate([x[key] for x in pieces]),
                                          whole.batch(step)[key])


def test_every_example_once_per_epoch_and_epochs_differ(digits):
    test = data.load("digits", "test")  # 300 examples: 10 batches of 30, nothing dropped
    b = data.Batches(test, 30, seed=0)
    assert b.steps_per_epoch == 10
    epoch0 = np.concatenate([b.batch(s)["index"] for s in range(10)])
    epoch1 = np.concatenate([b.batch(s)["index"] for s in range(10, 20)])
    np.testing.assert_array_equal(np.sort(epoch0), np.arange(300))
    np.testing.assert_array_equal(np.sort(epoch1), np.arange(300))
    assert not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(epoch0, b.order(0))
    # With a remainder, each epoch drops N % G examples and repeats none.
    t = data.Batches(digits, 64, seed=0)
    assert t.steps_per_epoch == 1497 // 64
    seen = np.concatenate([t.batch(s)["index"] for s in range(t.steps_per_epoch)])
    assert len(np.unique(seen)) == len(seen) == 23 * 64
    other_seed = data.Batches(test, 30, seed=1)
    assert not np.array_equal(other_seed.batch(0)["index"], b.batch(0)["index"])


def test_no_shuffle_is_dataset_order(digits):
    b = data.Batches(digits, 10, seed=0, shuffle=False)
    np.testing.assert_array_equal(b.batch(3)["index"], np.arange(30, 40))
    np.testing.assert_array_equal(b.batch(b.steps_per_epoch)["index"], np.arange(10))


@pytest.mark.parametrize("count", [1, 3])
def test_eval_batches_cover_everything_once(count):
    test = data.load("digits", "test")  # 300 examples, global batch 48: 7 batches, 36 padding
    seen, num_batches = [], set()
    for p in range(count):
        b = data.Batches(test, 48, seed=0, process_index=p, process_count=count)
        batches = list(b.eval_batches())
        num_batches.add(len(batches))
        for x in batches:
            assert x["image"].shape == (48 // count, 8, 8, 1) and x["mask"].dtype == bool
            m = x["mask"]
            np.testing.assert_array_equal(x["image"][m], test.images[x["index"][m]])
            assert np.all(x["index"][~m] == -1) and not x["image"][~m].any()
            seen.append(x["index"][m])
    assert num_batches == {7}  # same count on every process
    seen = np.concatenate(seen)
    np.testing.assert_array_equal(np.sort(seen), np.arange(300))


def test_bad_arguments(digits):
    with pytest.raises(ValueError, match="not divisible by process_count=3"):
        data.Batches(digits, 32, seed=0, process_count=3)
    with pytest.raises(ValueError, match="process_index"):
        data.Batches(digits, 32, seed=0, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="binarization"):
        data.Batches(digits, 32, seed=0, binarization="yes")
    with pytest.raises(ValueError, match="fewer examples"):
        data.Batches(data.load("digits", "test"), 512, seed=0).batch(0)


def _rows_of(b, example, steps):
    """The image of ``example`` in each of ``steps`` where it occurs."""
    out = []
    for s in steps:
        x = b.batch(s)
        out += [img for i, img in zip(x["index"], x["image"]) if i == example]
    return out


def test_static_vs_dynamic_binarization(digits):
    test = data.load("digits", "test")
    static = data.Batches(test, 30, seed=5, binarization="static")
    dynamic = data.Batches(test, 30, seed=5, binarization="dynamic")
    assert static.num_levels == dynamic.num_levels == 2
    epochs = range(0, 40)  # 4 epochs of 10 steps
    s_rows, d_rows = _rows_of(static, 47, epochs), _rows_of(dynamic, 47, epochs)
    assert len(s_rows) == len(d_rows) == 4
    assert all(np.array_equal(r, s_rows[0]) for r in s_rows)  # fixed per example
    assert len({r.tobytes() for r in d_rows}) == 4             # redrawn per epoch
    for x in (static.batch(3)["image"], dynamic.batch(3)["image"]):
        assert set(np.unique(x)) <= {0, 1}
    # The static draw does not depend on batch size, process count or shuffling.
    other = data.Batches(test, 60, seed=5, shuffle=False, process_index=1, process_count=2,
                         binarization="static")
    x = other.batch(0)  # process 1 of an unshuffled batch of 60: examples 30..59
    assert x["index"][47 - 30] == 47
    np.testing.assert_array_equal(x["image"][47 - 30], s_rows[0])


def test_binarization_probabilities(digits):
    """Pixel of level v is 1 with probability v / 16; levels 0 and 16 are exact."""
    b = data.Batches(digits, 1497, seed=11, binarization="dynamic", shuffle=False)
    levels = digits.images.ravel()
    ones = np.zeros(17)
    epochs = 20
    for e in range(epochs):
        bits = b.batch(e)["image"].ravel()
        ones += np.bincount(levels, weights=bits, minlength=17)
    counts = np.bincount(levels, minlength=17) * epochs
    freq = ones / counts
    assert freq[0] == 0 and freq[16] == 1
    sd = np.sqrt(np.arange(17) / 16 * (1 - np.arange(17) / 16) / counts)
    assert np.all(np.abs(freq - np.arange(17) / 16) <= 5 * sd + 1e-12)


def test_binarizing_binary_data_is_a_no_op(digits):
    binary = data.ImageDataset("digits", "train", (digits.images >= 8).astype(np.uint8), 2)
    b = data.Batches(binary, 64, seed=0, binarization="dynamic")
    x = b.batch(4)
    np.testing.assert_array_equal(x["image"], binary.images[x["index"]])
    assert b.num_levels == 2


def test_mnist_batch_speed(data_dir):
    mnist = data.load("mnist", "train", data_dir=data_dir)
    for binarization in ("none", "static", "dynamic"):
        b = data.Batches(mnist, 64, seed=0, binarization=binarization)
        b.batch(0)
        times = []
        for step in range(1, 51):
            t = time.perf_counter()
            b.batch(step)
            times.append(time.perf_counter() - t)
        assert np.median(times) < 0.010, (binarization, np.median(times))
