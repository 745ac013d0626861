"""One logging setup for every entry point: structured ``key=value`` lines with a request id.

Libraries and handlers only call ``logging.getLogger(__name__)``; entry points call
:func:`setup_logging` once. The request id lives in a context variable, so every line logged
while a request is handled carries it without being passed around.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


LOG_FORMAT = (
    "ts=%(asctime)s level=%(levelname)s service=%(service)s logger=%(name)s "
    "request_id=%(request_id)s msg=%(message)s"
)


def setup_logging(service: str, level: str | None = None) -> None:
    """Configure the root logger for ``service``; level from RECSYS_LOG_LEVEL (default INFO)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT.replace("%(service)s", service)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("RECSYS_LOG_LEVEL", "INFO")).upper())
