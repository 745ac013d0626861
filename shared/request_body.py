"""Reading a request body in the Falcon apps, chunked or not, never past a size limit.

``req.bounded_stream`` is bounded by Content-Length, so a chunked body (no Content-Length)
reads as empty there; such a body is read from the server's own stream, which decodes the
chunks and ends at the last one.
"""

from __future__ import annotations

import falcon

_CHUNK = 64 * 1024


def read_body(req: falcon.Request, max_bytes: int) -> bytes:
    """Up to ``max_bytes + 1`` bytes of the body of ``req``.

    A result longer than ``max_bytes`` means the body is over the limit; the rest is not read.
    """
    chunked = "chunked" in (req.get_header("Transfer-Encoding") or "").lower()
    stream = req.stream if chunked and req.content_length is None else req.bounded_stream
    parts: list[bytes] = []
    size = 0
    while size <= max_bytes:
        part = stream.read(min(_CHUNK, max_bytes + 1 - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)
