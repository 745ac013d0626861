"""shared.http_keepalive against small real socket servers: reuse, a server that closed the
idle connection, timeouts, refused connections and answers it cannot read."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from scripts.localstack import free_port
from shared.http_keepalive import HttpError, KeepAliveClient

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def serve(handle: Callable[[socket.socket, list[int]], None]) -> Iterator[tuple[str, list[int]]]:
    """A loopback server running ``handle(connection, accepted)`` on each connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            threading.Thread(target=handle, args=(conn, accepted), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join()
        listener.close()


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return b""
        data += chunk
    return data


@pytest.fixture
def keep_alive_server() -> Iterator[tuple[str, list[int]]]:
    def handle(conn: socket.socket, _accepted: list[int]) -> None:
        with conn:
            while read_request(conn):
                conn.sendall(OK)

    yield from serve(handle)


@pytest.fixture
def one_answer_per_connection() -> Iterator[tuple[str, list[int]]]:
    """Answers once, then closes without saying so: what an idle keep-alive timeout looks like."""

    def handle(conn: socket.socket, _accepted: list[int]) -> None:
        with conn:
            if read_request(conn):
                conn.sendall(OK)

    yield from serve(handle)


def test_one_connection_per_thread_is_reused(keep_alive_server) -> None:
    url, accepted = keep_alive_server
    client = KeepAliveClient(url)
    for _ in range(5):
        answer = client.request("POST", "/v1/search", 2.0, b'{"k": 1}')
        assert answer.status == 200 and answer.body == b"{}"
        assert answer.headers["content-type"] == "application/json"
    assert len(accepted) == 1
    client.close()


def test_a_connection_the_server_closed_is_replaced_once(one_answer_per_connection) -> None:
    url, accepted = one_answer_per_connection
    client = KeepAliveClient(url)
    for _ in range(3):
        assert client.request("GET", "/healthz", 2.0).status == 200
    assert len(accepted) == 3
    client.close()


def test_silence_times_out_within_the_deadline() -> None:
    def handle(conn: socket.socket, _accepted: list[int]) -> None:
        time.sleep(2.0)
        conn.close()

    for url, _ in serve(handle):
        client = KeepAliveClient(url)
        started = time.monotonic()
        with pytest.raises(HttpError):
            client.request("GET", "/healthz", 0.3)
        assert time.monotonic() - started < 1.0


def test_refused_connection_and_unreadable_answers_raise_http_error() -> None:
    with pytest.raises(HttpError, match="cannot connect"):
        KeepAliveClient(f"http://127.0.0.1:{free_port()}").request("GET", "/", 0.5)

    def no_length(conn: socket.socket, _accepted: list[int]) -> None:
        with conn:
            read_request(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")

    for url, _ in serve(no_length):
        with pytest.raises(HttpError, match="Content-Length"):
            KeepAliveClient(url).request("GET", "/", 1.0)
    with pytest.raises(ValueError):
        KeepAliveClient("https://example.invalid")
