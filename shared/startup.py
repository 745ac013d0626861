"""What every entry point does first: read the settings, or say what is wrong and exit 2.

A configuration error is a person's mistake, not a bug: it gets one line on stderr listing
every bad variable with what it expects, no traceback, and exit status 2 (the usual status for
bad usage), so a supervisor or a CI job can tell it from a crash.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import NoReturn

from shared.config import ConfigError, Settings

CONFIG_ERROR_EXIT = 2


def config_error_exit(service: str, error: ConfigError) -> NoReturn:
    """Print ``error`` as one line naming ``service`` and exit with status 2."""
    print(f"{service}: invalid configuration: {error}", file=sys.stderr, flush=True)
    raise SystemExit(CONFIG_ERROR_EXIT)


def load_settings(service: str, env: Mapping[str, str] | None = None) -> Settings:
    """``Settings.from_env(env)``; on a configuration error, :func:`config_error_exit`."""
    try:
        return Settings.from_env(env)
    except ConfigError as exc:
        config_error_exit(service, exc)
