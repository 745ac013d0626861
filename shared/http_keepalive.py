"""A small HTTP/1.1 client for calls between the platform's own services: one keep-alive
connection per calling thread, a total deadline per call, no retries beyond one resend on a
connection the server had already closed.

Why not urllib3 or ``http.client``: on the recommender's hot path they cost more CPU than the
work the call asks for (every answer's headers go through the ``email`` package, several
objects per call). Between two services we run, answers are plain HTTP/1.1 with a
``Content-Length`` (gunicorn + Falcon), so reading them needs a few lines.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 64 * 1024


class HttpError(OSError):
    """No usable answer: refused, reset, timed out, or not HTTP/1.1 with a Content-Length."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


class _Stale(Exception):
    """A reused connection was closed by the server before it answered: send again."""


class KeepAliveClient:
    """HTTP/1.1 to one ``http://host:port[/prefix]``; safe to share between threads (each
    thread gets its own connection)."""

    def __init__(self, base_url: str, max_body_bytes: int = 64 << 20):
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected an http://host:port URL, got {base_url!r}")
        self._address = (parts.hostname, parts.port or 80)
        self._prefix = parts.path.rstrip("/")
        self._host = parts.netloc.encode("ascii")
        self._max_body_bytes = max_body_bytes
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()

    def close(self) -> None:
        """Close every thread's connection (a later call opens a new one)."""
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            sock.close()

    def request(
        self,
        method: str,
        path: str,
        timeout_s: float,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send one request and read its answer within ``timeout_s`` seconds in total."""
        deadline = time.monotonic() + timeout_s
        lines = [f"{method} {self._prefix}{path} HTTP/1.1".encode(), b"Host: " + self._host]
        if body or method in ("POST", "PUT"):
            lines.append(b"Content-Length: %d" % len(body))
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}".encode("latin-1"))
        message = b"\r\n".join(lines) + b"\r\n\r\n" + body
        sock = getattr(self._local, "sock", None)
        if sock is not None:
            try:
                return self._exchange(sock, message, deadline)
            except _Stale:
                self._drop(sock)  # the server closed it while idle: one new connection
        return self._exchange(self._connect(deadline), message, deadline, fresh=True)

    # -- one exchange ------------------------------------------------------------------------

    def _connect(self, deadline: float) -> socket.socket:
        try:
            sock = socket.create_connection(self._address, timeout=_left(deadline))
        except OSError as exc:
            raise HttpError(
                f"cannot connect to {self._address[0]}:{self._address[1]}: {exc}"
            ) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._local.sock = sock
        with self._lock:
            self._open.add(sock)
        return sock

    def _drop(self, sock: socket.socket) -> None:
        self._local.sock = None
        with self._lock:
            self._open.discard(sock)
        sock.close()

    def _exchange(
        self, sock: socket.socket, message: bytes, deadline: float, fresh: bool = False
    ) -> Response:
        received = b""
        try:
            sock.settimeout(_left(deadline))
            sock.sendall(message)
            while b"\r\n\r\n" not in received:
                chunk = self._recv(sock, deadline)
                if not chunk:
                    if not received and not fresh:
                        raise _Stale
                    raise HttpError("connection closed before a complete answer")
                received += chunk
                if len(received) > MAX_HEADER_BYTES:
                    raise HttpError("answer headers too large")
            head, _, rest = received.partition(b"\r\n\r\n")
            status, headers = _parse_head(head)
            length = headers.get("content-length")
            if length is None or not length.isdigit():
                raise HttpError("answer without a Content-Length")
            size = int(length)
            if size > self._max_body_bytes:
                raise HttpError(f"answer of {size} bytes is over the limit")
            parts, have = [rest], len(rest)
            while have < size:
                chunk = self._recv(sock, deadline)
                if not chunk:
                    raise HttpError("connection closed in the middle of the answer")
                parts.append(chunk)
                have += len(chunk)
            body = b"".join(parts)
        except _Stale:
            raise
        except (ConnectionResetError, BrokenPipeError) as exc:
            self._drop(sock)
            if not received and not fresh:
                raise _Stale from exc
            raise HttpError(str(exc) or type(exc).__name__) from exc
        except HttpError:
            self._drop(sock)
            raise
        except OSError as exc:  # socket.timeout included
            self._drop(sock)
            raise HttpError(str(exc) or type(exc).__name__) from exc
        if len(body) != size or headers.get("connection", "").lower() == "close":
            self._drop(sock)
            body = body[:size]
        return Response(status, headers, body)

    @staticmethod
    def _recv(sock: socket.socket, deadline: float) -> bytes:
        sock.settimeout(_left(deadline))
        return sock.recv(65536)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise HttpError("timed out")
    return left


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise HttpError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(code), headers
