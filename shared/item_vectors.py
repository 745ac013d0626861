"""Wire format of the compacted ``item-vectors`` topic.

Key: the item id, UTF-8. Value: ``b"IV1"`` + uint16 length of the model version + the version
(UTF-8) + the vector as little-endian float32. A ``None`` value is a tombstone: the item is
deleted from the index (and compaction eventually drops the key).

Binary rather than JSON because the trainer publishes one message per changed item per
micro-batch and faiss_app decodes every one of them in every worker: a 65-float vector is
~270 bytes here against ~1.3 kB as JSON text, and ``np.frombuffer`` costs no parsing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

MAGIC = b"IV1"
_HEADER = struct.Struct("<3sH")


class VectorDecodeError(ValueError):
    """A message on item-vectors that is not in this format."""


@dataclass(frozen=True)
class ItemVectorUpdate:
    """One upsert (``vector`` set) or delete (``vector is None``) of an item in the index."""

    item_id: str
    model_version: str
    vector: np.ndarray | None  # float32, shape (dim,)


def encode_value(vector: np.ndarray, model_version: str) -> bytes:
    """Encode a float32 vector of shape (dim,) and the model version that produced it."""
    version = model_version.encode("utf-8")
    body = np.ascontiguousarray(vector, dtype="<f4").tobytes()
    return _HEADER.pack(MAGIC, len(version)) + version + body


def encode_values(vectors: np.ndarray, model_version: str) -> list[bytes]:
    """:func:`encode_value` of each row of float32 ``vectors`` (n, dim), header built once."""
    version = model_version.encode("utf-8")
    header = _HEADER.pack(MAGIC, len(version)) + version
    body = np.ascontiguousarray(vectors, dtype="<f4")
    width = body.shape[1] * 4 if body.ndim == 2 else 0
    raw = body.tobytes()
    return [header + raw[start : start + width] for start in range(0, len(raw), width or 1)]


def decode(key: bytes | None, value: bytes | None) -> ItemVectorUpdate:
    """Decode one message; raises VectorDecodeError on anything malformed."""
    if not key:
        raise VectorDecodeError("missing key (item id)")
    try:
        item_id = key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VectorDecodeError(f"key is not UTF-8: {exc}") from None
    if value is None:
        return ItemVectorUpdate(item_id, "", None)
    if len(value) < _HEADER.size:
        raise VectorDecodeError("value shorter than its header")
    magic, version_length = _HEADER.unpack_from(value)
    if magic != MAGIC:
        raise VectorDecodeError(f"unknown magic {magic!r}")
    start = _HEADER.size + version_length
    payload = value[start:]
    if len(payload) == 0 or len(payload) % 4:
        raise VectorDecodeError(f"vector payload of {len(payload)} bytes is not float32s")
    version = value[_HEADER.size : start].decode("utf-8", errors="replace")
    vector = np.frombuffer(payload, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(vector)):
        raise VectorDecodeError("vector has NaN or infinite values")
    return ItemVectorUpdate(item_id, version, vector)
