"""gunicorn settings for faiss_app; the hooks start and stop the update thread per worker.

No ``preload_app``: each worker builds its own index after the fork (FAISS/OpenMP state and a
Kafka consumer must not cross a fork), so memory is one index per worker.

The settings are read here, in the master: a bad variable stops gunicorn before any worker
starts, with one line listing every bad variable and exit status 2.
"""

from shared.logs import gunicorn_logconfig
from shared.startup import load_settings

_settings = load_settings("faiss_app")
_faiss = _settings.faiss

bind = f"{_faiss.host}:{_faiss.port}"
workers = _faiss.workers
# Threaded workers keep the recommender's pooled connections alive (sync workers close each).
worker_class = "gthread"
threads = _faiss.threads
keepalive = 5
timeout = _faiss.worker_timeout_s
graceful_timeout = 15
preload_app = False
logconfig_dict = gunicorn_logconfig("faiss_app", _settings.logging)


def on_starting(server):  # noqa: ANN001, ANN201
    # Shared memory made before the fork: a reload in one worker reaches its siblings.
    from services.faiss_app import broadcast

    broadcast.install()


def post_worker_init(worker):  # noqa: ANN001, ANN201 (gunicorn hook signature)
    runtime = getattr(worker.wsgi, "runtime", None)
    if runtime is not None:
        runtime.start()


def worker_exit(server, worker):  # noqa: ANN001, ANN201
    runtime = getattr(worker.wsgi, "runtime", None)
    if runtime is not None:
        runtime.stop()
