"""Request bodies → checked values. Raises the domain errors of errors.py, never HTTP ones."""

from __future__ import annotations

import re
from typing import Any

import falcon
import numpy as np

from services.faiss_app.errors import BadQuery, PayloadTooLarge
from shared.config import FaissSettings
from shared.json_limits import JSONLimitError, JSONLimits, loads_bounded
from shared.request_body import read_body

_NUMBER = (int, float)
MAX_VERSION_LENGTH = 64
# Snapshot folder names (shared.snapshots.new_version); anything else cannot name one.
VERSION_PATTERN = re.compile(rf"[A-Za-z0-9_:\-][A-Za-z0-9_.:\-]{{0,{MAX_VERSION_LENGTH - 1}}}")


def read_json(req: falcon.Request, max_bytes: int, required: bool = True) -> Any:
    """The JSON body of ``req``, read up to ``max_bytes`` (PayloadTooLarge above it)."""
    if req.content_length is not None and req.content_length > max_bytes:
        raise PayloadTooLarge(f"body of {req.content_length} bytes; the limit is {max_bytes}")
    raw = read_body(req, max_bytes)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"body over the limit of {max_bytes} bytes")
    if not raw.strip():
        if required:
            raise BadQuery("a JSON body is required")
        return {}
    try:
        return loads_bounded(raw, JSONLimits(max_bytes=max_bytes))
    except JSONLimitError as exc:
        raise BadQuery(f"malformed JSON: {exc}") from None


def check_k(k: Any, limits: FaissSettings) -> int:
    if type(k) is not int or not 1 <= k <= limits.max_k:
        raise BadQuery(f"k must be an integer between 1 and {limits.max_k}")
    return k


def parse_search(
    body: Any, limits: FaissSettings
) -> tuple[np.ndarray, int, list[list[str]] | None]:
    """``{"queries": [[float]*d, ...], "k": int, "exclude": [[str, ...], ...]?}`` →
    (float32 (n, d) queries, k, exclude or None)."""
    if not isinstance(body, dict):
        raise BadQuery("the body must be a JSON object")
    queries = body.get("queries")
    if not isinstance(queries, list) or not queries:
        raise BadQuery("queries must be a non-empty list of vectors")
    if len(queries) > limits.max_batch:
        raise BadQuery(f"at most {limits.max_batch} queries per request")
    width = len(queries[0]) if isinstance(queries[0], list) else -1
    for row in queries:
        if not isinstance(row, list) or len(row) != width or width == 0:
            raise BadQuery("queries must be lists of numbers, all of the same length")
        for value in row:
            if type(value) not in _NUMBER:
                raise BadQuery("query vectors must hold numbers only")
    matrix = np.asarray(queries, dtype=np.float64)
    if not np.all(np.isfinite(matrix)) or np.any(np.abs(matrix) > np.finfo(np.float32).max):
        raise BadQuery("query vectors must be finite (no NaN or infinity)")
    k = check_k(body.get("k", 10), limits)
    exclude = body.get("exclude")
    if exclude is not None:
        if not isinstance(exclude, list) or len(exclude) != len(queries):
            raise BadQuery("exclude must hold one list of item ids per query")
        for ids in exclude:
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise BadQuery("exclude lists must hold item ids (strings)")
        if sum(len(ids) for ids in exclude) > limits.max_k * len(queries):
            raise BadQuery(f"at most {limits.max_k} excluded ids per query")
    return matrix.astype(np.float32), k, exclude


def parse_version(body: Any) -> str | None:
    if not isinstance(body, dict):
        raise BadQuery("the body must be a JSON object")
    version = body.get("version")
    if version is not None and (
        not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version)
    ):
        raise BadQuery(
            f"version must be 1-{MAX_VERSION_LENGTH} characters of letters, digits and _.:-, "
            "not starting with a dot"
        )
    return version


def check_scores(answer: dict[str, Any]) -> dict[str, Any]:
    """``answer`` of a search, or BadQuery when a score overflowed float32: query values far
    beyond any model's range (each one finite) whose products are not (JSON has no
    infinity; the score would read as null)."""
    for result in answer["results"]:
        if not np.isfinite(result["scores"]).all():
            raise BadQuery("query values too large: a score overflows float32")
    return answer
