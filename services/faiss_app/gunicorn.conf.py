"""gunicorn settings for faiss_app; the hooks start and stop the update thread per worker.

No ``preload_app``: each worker builds its own index after the fork (FAISS/OpenMP state and a
Kafka consumer must not cross a fork), so memory is one index per worker.
"""

import os

bind = f"0.0.0.0:{os.environ.get('RECSYS_FAISS_PORT', '8081')}"
workers = int(os.environ.get("RECSYS_FAISS_WORKERS", "2"))
worker_class = "sync"
# Building an ANN index of millions of items takes minutes: the boot and /v1/reload must not
# be killed by the worker timeout.
timeout = int(os.environ.get("RECSYS_FAISS_WORKER_TIMEOUT_S", "600"))
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
