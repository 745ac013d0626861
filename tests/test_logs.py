"""Log lines are JSON objects (one per line) with service, instance and request id, for our own
loggers, gunicorn's and librdkafka's alike."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import sys
from collections.abc import Iterator

import pytest

from shared.config import LogSettings
from shared.logs import gunicorn_logconfig, request_id_var, setup_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
    for name in ("gunicorn.error", "gunicorn.access"):
        logging.getLogger(name).handlers.clear()


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_every_line_is_one_json_object_with_the_context(capsys: pytest.CaptureFixture) -> None:
    setup_logging("recommender_app", LogSettings())
    log = logging.getLogger("services.recommender_app.x")
    token = request_id_var.set("req-42")
    try:
        log.warning('user %s said "%s"', "u1", "hi\nlevel=ERROR")
    finally:
        request_id_var.reset(token)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second = lines(capsys.readouterr().err)
    assert first["msg"] == 'user u1 said "hi\nlevel=ERROR"'
    assert first["level"] == "WARNING" and first["request_id"] == "req-42"
    assert first["service"] == "recommender_app" and first["logger"].endswith(".x")
    assert first["instance"].endswith(f"-{__import__('os').getpid()}")
    assert first["ts"].endswith("Z")
    assert second["request_id"] == "-"
    assert "ValueError: boom" in second["exc"]


def test_text_format_keeps_one_line_per_record(capsys: pytest.CaptureFixture) -> None:
    setup_logging("faiss_app", LogSettings(format="text"))
    logging.getLogger("x").info("two\nlines")
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert 'msg="two\\nlines"' in line and "service=faiss_app" in line


def test_records_go_to_the_stderr_of_their_time_not_one_since_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    setup_logging("faiss_app", LogSettings(format="text"))
    logging.getLogger("x").warning("one")
    # A test's captured stderr is replaced and closed while a thread of the app still logs.
    monkeypatch.setattr(sys, "stderr", second)
    first.close()
    failures: list[str] = []
    monkeypatch.setattr(logging.Handler, "handleError", lambda _h, r: failures.append(r.msg))
    logging.getLogger("x").warning("two")
    assert not failures
    assert "msg=two" in second.getvalue()


def test_gunicorn_logs_use_the_same_formatter(capsys: pytest.CaptureFixture) -> None:
    logging.config.dictConfig(gunicorn_logconfig("faiss_app", LogSettings()))
    logging.getLogger("gunicorn.access").info('127.0.0.1 "GET /healthz" 200')
    logging.getLogger("gunicorn.error").info("Booting worker with pid: 1")
    access, error = lines(capsys.readouterr().err)
    assert access["logger"] == "gunicorn.access" and access["service"] == "faiss_app"
    assert error["msg"] == "Booting worker with pid: 1"


def test_librdkafka_logs_go_through_logging() -> None:
    from shared.config import KafkaSettings
    from shared.kafka import LIBRDKAFKA_LOG, consumer_config, producer_config

    assert producer_config(KafkaSettings())["logger"] is LIBRDKAFKA_LOG
    assert consumer_config(KafkaSettings(), "g")["logger"] is LIBRDKAFKA_LOG
