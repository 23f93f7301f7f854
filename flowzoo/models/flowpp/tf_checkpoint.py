"""Reads TensorFlow checkpoints (``PREFIX.index`` + ``PREFIX.data-*``) without TensorFlow.

A TF checkpoint (the "tensor bundle" written by ``tf.train.Saver`` / ``tf.train.Checkpoint``)
is an index and one or more data shards:

* ``PREFIX.index`` is a LevelDB-format table: sorted (key, value) entries in blocks, an index
  block pointing at the data blocks and a 48-byte footer pointing at the index block.  The
  entry with the empty key is a ``BundleHeaderProto`` (number of shards, byte order); every
  other key is a variable name whose value is a ``BundleEntryProto`` (dtype, shape, shard,
  offset and size of its bytes).
* ``PREFIX.data-SSSSS-of-NNNNN`` hold the raw tensor bytes.

Only what Flow++ checkpoints use is supported: uncompressed tables and whole (not sliced)
numeric tensors; anything else is an error that names it.  The data checksums are not
verified (a pure-Python CRC32C of a 125 MB checkpoint would take minutes); sizes are.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER_SIZE = 5  # compression type (1 byte) + masked CRC32C (4 bytes)

# tensorflow/core/framework/types.proto -> NumPy, for the numeric types.
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
           9: np.int64, 10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32,
           23: np.uint64}


class TensorEntry(NamedTuple):
    """Where one tensor's bytes are: dtype, shape, shard number, byte offset and size."""

    dtype: np.dtype
    shape: tuple
    shard: int
    offset: int
    size: int


def _varint(buf, pos):
    """(value, next position) of the base-128 varint at ``buf[pos:]``."""
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _proto_fields(buf):
    """(field number, value) pairs of a serialized protobuf message: an int for varint
    and fixed-width fields, bytes for length-delimited ones."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = bytes(buf[pos:pos + length]), pos + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, value


def _block(data, handle, path):
    """The contents of the table block at ``handle`` (offset, size), checked uncompressed."""
    offset, size = handle
    if data[offset + size] != 0:
        raise ValueError(f"{path}: compressed table blocks are not supported by this reader; "
                         f"read the checkpoint with TensorFlow (pip install 'flowzoo[tf]', "
                         f"tf.train.load_checkpoint) and pass the arrays as a dict.")
    return data[offset:offset + size]


def _block_entries(block):
    """The (key, value) entries of one table block (keys are prefix-compressed)."""
    num_restarts = int.from_bytes(block[-4:], "little")
    end = len(block) - 4 - 4 * num_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + bytes(block[pos:pos + unshared])
        pos += unshared
        yield key, block[pos:pos + value_len]
        pos += value_len


def _handle(buf, pos=0):
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return (offset, size), pos


def _table_entries(path):
    with open(path, "rb") as f:
        data = memoryview(f.read())
    if len(data) < _FOOTER_SIZE or int.from_bytes(data[-8:], "little") != _TABLE_MAGIC:
        raise ValueError(f"{path} is not a TensorFlow checkpoint index (bad table footer).")
    footer = data[-_FOOTER_SIZE:]
    _, pos = _handle(footer)  # the metaindex block: unused by tensor bundles
    index_handle, _ = _handle(footer, pos)
    for _, handle_bytes in _block_entries(_block(data, index_handle, path)):
        yield from _block_entries(_block(data, _handle(handle_bytes)[0], path))


def _shape(buf):
    dims = []
    for field, value in _proto_fields(buf):
        if field == 2:  # repeated Dim {int64 size = 1; string name = 2}
            dims.append(next((v for f, v in _proto_fields(value) if f == 1), 0))
        elif field == 3 and value:
            raise ValueError("a tensor of unknown rank")
    return tuple(dims)


def _entry(name, buf):
    fields = dict(dtype=1, shard=0, offset=0, size=0, shape=())
    for field, value in _proto_fields(buf):
        if field == 1:
            fields["dtype"] = value
        elif field == 2:
            fields["shape"] = _shape(value)
        elif field in (3, 4, 5):
            fields[{3: "shard", 4: "offset", 5: "size"}[field]] = value
        elif field == 7:
            raise ValueError(f"variable {name!r} is stored in slices (a partitioned "
                             f"variable), which this reader does not support.")
    if fields["dtype"] not in _DTYPES:
        raise ValueError(f"variable {name!r} has TensorFlow dtype enum {fields['dtype']}, "
                         f"which this reader does not support (numeric types only).")
    return TensorEntry(np.dtype(_DTYPES[fields["dtype"]]), fields["shape"], fields["shard"],
                       fields["offset"], fields["size"])


def _check_prefix(prefix):
    index = f"{prefix}.index"
    if not os.path.isfile(index):
        hint = ""
        if prefix.endswith((".index", ".meta")) or ".data-" in prefix:
            hint = " Pass the prefix without the .index/.data-*/.meta suffix."
        raise FileNotFoundError(f"No TensorFlow checkpoint index {index!r}.{hint}")
    return index


def read_index(prefix):
    """``(entries, num_shards, byte_order)``: the metadata of checkpoint ``prefix`` (the path
    without ``.index``), with ``entries`` a dict name -> :class:`TensorEntry`."""
    index = _check_prefix(prefix)
    entries, num_shards, byte_order = {}, 1, "<"
    for key, value in _table_entries(index):
        if key == b"":  # BundleHeaderProto
            header = dict(_proto_fields(value))
            num_shards = header.get(1, 1)
            byte_order = ">" if header.get(2, 0) == 1 else "<"
        else:
            name = key.decode("utf-8")
            entries[name] = _entry(name, value)
    return entries, num_shards, byte_order


def variable_shapes(prefix):
    """name -> shape of every tensor in checkpoint ``prefix`` (reads only the index)."""
    return {name: e.shape for name, e in read_index(prefix)[0].items()}


def load_checkpoint(prefix, names=None):
    """name -> NumPy array of the tensors in checkpoint ``prefix`` (all, or ``names``)."""
    entries, num_shards, byte_order = read_index(prefix)
    wanted = sorted(entries) if names is None else list(names)
    missing = [n for n in wanted if n not in entries]
    if missing:
        raise KeyError(f"checkpoint {prefix!r} has no variables {missing}")
    out, shards = {}, {}
    try:
        for name in wanted:
            e = entries[name]
            expected = e.dtype.itemsize * int(np.prod(e.shape, dtype=np.int64))
            if e.size != expected:
                raise ValueError(f"variable {name!r}: {e.size} bytes stored, {expected} "
                                 f"expected for {e.dtype} {e.shape}")
            if e.shard not in shards:
                path = f"{prefix}.data-{e.shard:05d}-of-{num_shards:05d}"
                if not os.path.isfile(path):
                    raise FileNotFoundError(f"Missing checkpoint data shard {path!r}.")
                shards[e.shard] = open(path, "rb")
            f = shards[e.shard]
            f.seek(e.offset)
            raw = f.read(e.size)
            if len(raw) != e.size:
                raise ValueError(f"variable {name!r}: data shard {e.shard} is truncated")
            array = np.frombuffer(raw, e.dtype.newbyteorder(byte_order)).reshape(e.shape)
            out[name] = array.astype(e.dtype)  # native byte order, writable copy
    finally:
        for f in shards.values():
            f.close()
    return out
