"""What every entry point does first: read the settings, or say what is wrong and exit 2.

A configuration error is a person's mistake, not a bug: it gets one line on stderr listing
every bad variable with what it expects, no traceback, and exit status 2 (the usual status for
bad usage), so a supervisor or a CI job can tell it from a crash.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Mapping, Sequence
from typing import NoReturn

from shared.config import ConfigError, Settings

CONFIG_ERROR_EXIT = 2


def config_error_exit(service: str, error: ConfigError) -> NoReturn:
    """Print ``error`` as one line naming ``service`` and exit with status 2."""
    print(f"{service}: invalid configuration: {error}", file=sys.stderr, flush=True)
    raise SystemExit(CONFIG_ERROR_EXIT)


# The secrets each service uses: in production only these must be set (a service is not handed
# secrets it does not need, e.g. the trainer gets no API keys).
SERVICE_SECRETS: dict[str, tuple[str, ...]] = {
    "recommender_app": ("RECSYS_API_KEYS",),
    "faiss_app": ("RECSYS_FAISS_ADMIN_TOKEN",),
}


def load_settings(service: str, env: Mapping[str, str] | None = None) -> Settings:
    """``Settings.from_env(env)`` checking ``service``'s secrets (:data:`SERVICE_SECRETS`;
    none for other programs); on a configuration error, :func:`config_error_exit`."""
    secrets: Collection[str] = SERVICE_SECRETS.get(service, ())
    try:
        return Settings.from_env(env, secrets=secrets)
    except ConfigError as exc:
        config_error_exit(service, exc)


def settings_for_parser(service: str, argv: Sequence[str] | None = None) -> Settings:
    """The settings a script's argument parser takes its defaults from.

    ``--help`` must work whatever the environment holds, so with ``-h``/``--help`` on the
    command line the built-in defaults are used (the help then shows those); otherwise
    :func:`load_settings`, which exits 2 on a bad variable.
    """
    args = sys.argv[1:] if argv is None else argv
    if "-h" in args or "--help" in args:
        return Settings.from_env({})
    return load_settings(service, None)
