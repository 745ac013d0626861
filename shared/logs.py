"""One logging setup for every entry point: JSON lines with service, instance and request id.

Libraries and handlers only call ``logging.getLogger(__name__)``; entry points call
:func:`setup_logging` once (gunicorn's own loggers get the same formatter through
:func:`gunicorn_logconfig`, librdkafka's through the ``logger`` client setting in
:mod:`shared.kafka`). The request id lives in a context variable, so every line logged while a
request is handled carries it without being passed around.

A line is one JSON object: ``ts`` (UTC, ISO 8601, milliseconds), ``level``, ``service``,
``instance`` (host and process id: replicas and workers are told apart), ``logger``,
``request_id`` (``-`` outside a request), ``msg``, and ``exc`` with the traceback when there is
one. ``RECSYS_LOG_FORMAT=text`` gives the same fields as ``key=value`` for a terminal.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import socket
import sys
import time
from typing import Any

from shared.config import LogSettings

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def instance_name() -> str:
    """``<host>-<pid>``: which replica and which worker process (safe as a metric segment)."""
    host = socket.gethostname().split(".")[0] or "host"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in host)
    return f"{safe}-{os.getpid()}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; the service is fixed, the instance read per record.

    The instance is computed per record (cheaply, cached per pid) because gunicorn forks
    workers after the formatter was built in the master.
    """

    def __init__(self, service: str):
        super().__init__()
        self.service = service
        self._pid = -1
        self._instance = ""

    def _current_instance(self) -> str:
        pid = os.getpid()
        if pid != self._pid:
            self._pid, self._instance = pid, instance_name()
        return self._instance

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        seconds = time.gmtime(record.created)
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "instance": self._current_instance(),
            "logger": record.name,
            "request_id": request_id_var.get(),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return entry

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.fields(record), ensure_ascii=False, default=str)


class TextFormatter(JsonFormatter):
    """The same fields as ``key=value`` (values JSON-quoted when they need it), for terminals."""

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for key, value in self.fields(record).items():
            text = str(value)
            if not text or any(c in text for c in ' "=\n'):
                text = json.dumps(text, ensure_ascii=False)
            parts.append(f"{key}={text}")
        return " ".join(parts)


def make_formatter(service: str, log_format: str = "json") -> logging.Formatter:
    return TextFormatter(service) if log_format == "text" else JsonFormatter(service)


class CurrentStderrHandler(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when a record arrives.

    A handler given ``sys.stderr`` once keeps that stream after it was replaced and closed (a
    test's captured output, which background threads still logging then hit with "I/O operation
    on closed file"); logging's own last-resort handler looks it up the same way.
    """

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass  # always the current sys.stderr


def setup_logging(service: str, level: str | LogSettings | None = None) -> None:
    """Configure the root logger for ``service`` (one stderr handler).

    ``level`` is a level name or the :class:`LogSettings` an entry point loaded; when absent,
    RECSYS_LOG_LEVEL and RECSYS_LOG_FORMAT are read directly (scripts without full settings).
    """
    if isinstance(level, LogSettings):
        name, log_format = level.level, level.format
    else:
        name = level or os.environ.get("RECSYS_LOG_LEVEL", "INFO")
        log_format = os.environ.get("RECSYS_LOG_FORMAT", "json")
    handler = CurrentStderrHandler()
    handler.setFormatter(make_formatter(service, log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(name.upper())


def gunicorn_logconfig(service: str, settings: LogSettings) -> dict[str, Any]:
    """A ``logconfig_dict`` for gunicorn: its error and access logs in the same format."""
    formatter = (
        "shared.logs.TextFormatter" if settings.format == "text" else ("shared.logs.JsonFormatter")
    )
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "recsys",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"recsys": {"()": formatter, "service": service}},
        "handlers": {"recsys": handler},
        "root": {"level": settings.level.upper(), "handlers": ["recsys"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["recsys"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["recsys"], "propagate": False},
        },
    }
