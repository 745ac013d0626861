"""``python -m services.faiss_app``: one process, for development (gunicorn in production)."""

from __future__ import annotations

import argparse
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, make_server

from services.faiss_app.app import create_app
from shared.config import Settings
from shared.logs import setup_logging


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=settings.faiss.port, help="port (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    setup_logging("faiss_app")
    app = create_app(settings)
    app.runtime.start()
    with make_server(args.host, args.port, app, server_class=_ThreadingServer) as server:
        try:
            server.serve_forever()
        finally:
            app.runtime.stop()


if __name__ == "__main__":
    main()
