"""Fixtures for the data tests: the real dataset files come from ``$FLOWZOO_DATA_DIR``.

``FLOWZOO_DATA_DIR`` is a folder laid out as ``mnist/``, ``binarized_mnist/``,
``caltech101_silhouettes/`` holding the official files.  Tests that need it skip, saying so,
when it is unset; when it is set, the files must be there (a wrong folder fails).
"""

import os

import pytest

ENV_VAR = "FLOWZOO_DATA_DIR"


@pytest.fixture(scope="session")
def data_dir() -> str:
    path = os.environ.get(ENV_VAR)
    if not path:
        pytest.skip(f"{ENV_VAR} is not set: point it at a folder with mnist/, binarized_mnist/ "
                    f"and caltech101_silhouettes/ holding the official files to run the tests "
                    f"on real data")
    if not os.path.isdir(path):
        pytest.fail(f"{ENV_VAR}={path} is not a directory.")
    return path


@pytest.fixture
def no_env(monkeypatch):
    """Unsets FLOWZOO_DATA_DIR, so the library cannot fall back on it."""
    monkeypatch.delenv(ENV_VAR, raising=False)
