"""``python -m services.faiss_app``: one process, for development (gunicorn in production).

Settings come from RECSYS_* environment variables (see the README); --help needs none of them.
"""

from __future__ import annotations

import argparse

from shared.startup import load_settings

SERVICE = "faiss_app"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.faiss_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=None, help="port (default: RECSYS_FAISS_PORT, 8081)"
    )
    args = parser.parse_args(argv)
    settings = load_settings(SERVICE)

    # Imported after the settings are known good: --help and a bad setting stay fast.
    from services.faiss_app.app import create_app
    from shared.devserver import serve
    from shared.logs import setup_logging

    setup_logging(SERVICE, settings.logging)
    app = create_app(settings)
    app.runtime.start()
    try:
        serve(app, args.host, args.port or settings.faiss.port)
    except KeyboardInterrupt:
        pass
    finally:
        app.runtime.stop()


if __name__ == "__main__":
    main()
