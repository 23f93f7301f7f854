"""The run's workdir as one path type: a local folder or any URL that ``etils.epath``
(and so Orbax) understands, e.g. ``gs://bucket/run``.

Everything the trainer writes (checkpoints, ``metrics.jsonl``, TensorBoard events, PNGs,
``config.json``, ``summary.json``) goes through :func:`resolve`'s path.  Object stores have
no append and no atomic rename, so files that grow are rewritten whole
(:func:`write_atomic`): on a local disk through a temporary file and ``os.replace`` (a kill
mid-write leaves the old file), on an object store as one upload (atomic there).

``gs://`` needs a client: the ``gcs`` extra (``pip install 'flowzoo[gcs]'``, gcsfs), or
TensorFlow, which etils prefers when it is installed (``EPATH_USE_TF=false`` turns that off).
"""

from __future__ import annotations

import os
import tempfile

from etils import epath


def is_remote(path) -> bool:
    """True for ``scheme://…`` paths (gs, s3, …); False for local ones."""
    return "://" in os.fspath(path)


def resolve(workdir) -> epath.Path:
    """``workdir`` as an ``epath.Path``: local paths made absolute, URLs kept as they are
    (``os.path.abspath("gs://b/r")`` would give a local folder named ``gs:``)."""
    text = os.fspath(workdir)
    if not text:
        raise ValueError("The workdir is empty; pass --workdir=PATH (a folder or gs://…).")
    path = epath.Path(text if is_remote(text) else os.path.abspath(os.path.expanduser(text)))
    if is_remote(text) and not isinstance(path, epath.gpath.PosixGPath):
        raise ValueError(f"No filesystem for {text!r}: etils.epath supports gs://, s3:// and "
                         f"local paths.")
    return path


def write_atomic(path: epath.Path, data: bytes | str) -> None:
    """Replaces ``path``'s content with ``data``, never leaving a half-written file."""
    data = data.encode() if isinstance(data, str) else data
    if is_remote(path):
        path.write_bytes(data)  # one object upload: it lands whole or not at all
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.fspath(path.parent), prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, os.fspath(path))
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def make_dirs(path: epath.Path) -> None:
    """Creates a local folder (and its parents); object stores need none."""
    if not is_remote(path):
        path.mkdir(parents=True, exist_ok=True)
