"""gunicorn settings for faiss_app; the hooks start and stop the update thread per worker.

No ``preload_app``: each worker builds its own index after the fork (FAISS/OpenMP state and a
Kafka consumer must not cross a fork), so memory is one index per worker.
"""

from shared.config import Settings

_faiss = Settings.from_env().faiss  # a bad value stops gunicorn at start, naming the variable

bind = f"0.0.0.0:{_faiss.port}"
workers = _faiss.workers
worker_class = "sync"
timeout = _faiss.worker_timeout_s
graceful_timeout = 15
preload_app = False


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
