"""``python -m services.recommender_app``: one process, for development (gunicorn in production).

Settings come from RECSYS_* environment variables (see the README); --help needs none of them.
"""

from __future__ import annotations

import argparse

from shared.startup import load_settings

SERVICE = "recommender_app"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.recommender_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=None, help="port (default: RECSYS_RECOMMENDER_PORT, 8080)"
    )
    args = parser.parse_args(argv)
    settings = load_settings(SERVICE)

    # Imported after the settings are known good: --help and a bad setting stay fast.
    from services.recommender_app.app import create_app
    from shared.devserver import serve
    from shared.logs import setup_logging

    setup_logging(SERVICE, settings.logging)
    try:
        serve(create_app(settings), args.host, args.port or settings.recommender.port)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
