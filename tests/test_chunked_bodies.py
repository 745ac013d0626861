"""Chunked request bodies (no Content-Length) are read by both apps under real gunicorn.

Regression (issue 17): both apps read a chunked body as empty and answered 400 "Empty body";
gunicorn, unlike falcon's test client, hands the app a stream of unknown length. Each body
here is sent in several chunks, the way an HTTP/1.1 client streams what it has not measured.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from tests.recommender_world import TEST_API_KEY
from tests.test_recommender_support import World

KEYED = {"Authorization": f"Bearer {TEST_API_KEY}"}


def chunks(body: bytes, size: int = 7) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def send_chunked(url: str, method: str, path: str, body: bytes,
                 headers: dict[str, str] | None = None,
                 chunk_size: int = 7) -> tuple[int, Any]:
    """``body`` streamed with Transfer-Encoding: chunked; (status, JSON answer).

    Written on a plain socket: a server may answer (413) and close before the whole body is
    sent, which an HTTP client library reports as a broken pipe instead of the answer.
    """
    parsed = urlparse(url)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parsed.netloc}",
             "Transfer-Encoding: chunked", "Content-Type: application/json", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            for piece in chunks(body, chunk_size):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered before the end of the body: read the answer
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, json.loads(answer.read() or b"null")


def test_recommender_reads_chunked_events_and_item_metadata(recommender_url: str):
    event = {"user_id": "u-chunked", "item_id": "i1", "event": "view",
             "ts": int(time.time() * 1000)}
    status, answer = send_chunked(recommender_url, "POST", "/events", json.dumps(event).encode(),
                                     KEYED)
    assert status == 202, answer
    assert answer["accepted"] == 1 and answer["events"][0]["user_id"] == "u-chunked"

    metadata = {"title": "Sent in chunks", "category": "c1", "price": 3.5}
    status, answer = send_chunked(recommender_url, "PUT", "/items/chunked-1",
                                     json.dumps(metadata).encode(), KEYED)
    assert status == 201, answer
    assert answer["title"] == "Sent in chunks" and answer["price"] == 3.5


def test_recommender_bounds_a_chunked_body_it_cannot_measure_first(recommender_url: str):
    # 1.5 MB of events, over the default 1 MiB body limit: refused while reading, not after.
    event = {"user_id": "u1", "item_id": "i1", "event": "view", "ts": int(time.time() * 1000)}
    body = json.dumps([event] * 20_000).encode()
    status, answer = send_chunked(recommender_url, "POST", "/events", body, KEYED,
                                     chunk_size=65536)
    assert status == 413, answer


def test_faiss_app_reads_a_chunked_search(faiss_url: str, world: World):
    query = world.queries["u0"].tolist()
    body = json.dumps({"queries": [query], "k": 3}).encode()
    status, answer = send_chunked(faiss_url, "POST", "/v1/search", body)
    assert status == 200, answer
    assert answer["results"][0]["ids"] == [item for item, _ in world.exact_top_k("u0", 3, set())]


def test_faiss_app_bounds_a_chunked_body_it_cannot_measure_first(faiss_url: str):
    body = b'{"queries": [[' + b"0.5," * 1_500_000 + b'0.5]], "k": 3}'  # 6 MB > 4 MiB limit
    status, answer = send_chunked(faiss_url, "POST", "/v1/search", body, chunk_size=65536)
    assert status == 413, answer
