"""A threaded development server for the Falcon apps (gunicorn serves them in containers)."""

from __future__ import annotations

from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    # The apps log each request themselves (JSON, with its request id).
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib's name)
        pass


def serve(app: Callable[..., Any], host: str, port: int) -> None:
    """Serve ``app`` on ``host:port`` until interrupted (Ctrl-C / SIGTERM)."""
    with make_server(
        host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
    ) as server:
        server.serve_forever()
