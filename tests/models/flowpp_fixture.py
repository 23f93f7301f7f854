"""The reference fixture made with the authors' Flow++ TensorFlow code, for the tests.

``$FLOWZOO_DATA_DIR/flowpp_official/`` (its README lists the contents): a checkpoint of
``flows.run_cifar.construct(filters=16, dequant_filters=16, components=4, blocks=2)`` after
the official data-dependent init, its inputs and per-example outputs, per-layer traces, and
the variable lists of the full-size CIFAR-10 models.  Tests skip when it is absent.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

from flowzoo.models import flowpp

FIXTURE = "flowpp_official"
# The fixture's construct() arguments in flowzoo's terms; everything else is the official
# CIFAR-10 architecture (dequantizer couplings with 2 blocks, 4 heads, steps 4 / 2 / 3, a
# 32-channel context network of 3 gated convs).  Evaluation runs without dropout.
SMALL_MODEL = dict(name="flowpp", filters=16, dequant_filters=16, num_components=4, blocks=2,
                   dropout=0.0)
IMAGE_SHAPE = (32, 32, 3)


def fixture_dir() -> str:
    root = os.environ.get("FLOWZOO_DATA_DIR")
    if not root:
        pytest.skip("FLOWZOO_DATA_DIR is not set: point it at a folder holding "
                    "flowpp_official/ (made with the official Flow++ code) to run the "
                    "equivalence tests.")
    path = os.path.join(root, FIXTURE)
    if not os.path.isfile(os.path.join(path, "model.ckpt.index")):
        pytest.skip(f"{path}/model.ckpt.index is missing: the official Flow++ fixture is not "
                    f"under $FLOWZOO_DATA_DIR.")
    return path


def prefix() -> str:
    return os.path.join(fixture_dir(), "model.ckpt")


@functools.lru_cache(maxsize=None)
def small_flow(**overrides):
    return flowpp.make_flow({**SMALL_MODEL, **overrides}, IMAGE_SHAPE, 256)


@functools.lru_cache(maxsize=None)
def converted_params():
    return flowpp.official_params(small_flow(), prefix())


def arrays(name: str) -> dict:
    """The arrays of ``reference.npz``, ``trace.npz`` or ``variables.npz``."""
    with np.load(os.path.join(fixture_dir(), name)) as f:
        return {k: f[k] for k in f.files}


def variable_list(name: str) -> dict:
    """name -> shape from one of the fixture's ``*variables.txt`` listings."""
    shapes = {}
    with open(os.path.join(fixture_dir(), name)) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            shapes[fields[0]] = tuple(int(d) for d in fields[1].strip("[]").split(",") if d)
    return shapes
