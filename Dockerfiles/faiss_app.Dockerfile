# faiss_app: the in-memory item index (POST /v1/search, GET /v1/similar, ...), run by gunicorn.
# Build from the repository root:  docker build -f Dockerfiles/faiss_app.Dockerfile .
# (docker compose does this for you; see docs/deploy.md)

FROM python:3.11-slim AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# Optional: an extra wheel index (for example a CPU-only torch index or a local mirror), given
# at build time with --build-arg; nothing is baked into the image.
ARG PIP_EXTRA_INDEX_URL
RUN python -m venv /opt/venv
# Only what this service imports (tests/test_images.py), pinned as in requirements.txt.
COPY Dockerfiles/requirements/faiss_app.txt /tmp/requirements.txt
RUN if [ -n "${PIP_EXTRA_INDEX_URL:-}" ]; then export PIP_EXTRA_INDEX_URL; else unset PIP_EXTRA_INDEX_URL; fi \
 && /opt/venv/bin/pip install -r /tmp/requirements.txt

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    RECSYS_MODELS_DIR=/app/models RECSYS_FAISS_PORT=8081 RECSYS_FAISS_HOST=0.0.0.0
RUN groupadd --system --gid 10001 recsys \
 && useradd --system --uid 10001 --gid recsys --home-dir /app --no-create-home --shell /usr/sbin/nologin recsys \
 && mkdir -p /app/models && chown recsys:recsys /app/models
WORKDIR /app
COPY --from=deps /opt/venv /opt/venv
COPY Dockerfiles/healthcheck.py /usr/local/bin/recsys-healthcheck
COPY shared/ shared/
COPY services/__init__.py services/__init__.py
COPY services/faiss_app/ services/faiss_app/
USER 10001:10001
EXPOSE 8081
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
  CMD ["python", "/usr/local/bin/recsys-healthcheck", "http", "RECSYS_FAISS_PORT", "8081", "/readyz"]
# services/faiss_app/gunicorn.conf.py binds RECSYS_FAISS_PORT, runs RECSYS_FAISS_WORKERS workers
# without preload (each worker builds its own index and Kafka follower after the fork) and
# starts/stops the follower thread in its worker hooks.
CMD ["gunicorn", "-c", "services/faiss_app/gunicorn.conf.py", "--access-logfile", "-", "services.faiss_app.wsgi:app"]
