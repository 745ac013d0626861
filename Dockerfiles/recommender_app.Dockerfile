# recommender_app: GET /recommend, POST /events, GET /healthz, GET /readyz, run by gunicorn.
# Build from the repository root:  docker build -f Dockerfiles/recommender_app.Dockerfile .

FROM python:3.11-slim AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# Optional: an extra wheel index (for example a CPU-only torch index or a local mirror), given
# at build time with --build-arg; nothing is baked into the image.
ARG PIP_EXTRA_INDEX_URL
RUN python -m venv /opt/venv
# Only what this service imports (tests/test_images.py), pinned as in requirements.txt.
COPY Dockerfiles/requirements/recommender_app.txt /tmp/requirements.txt
RUN if [ -n "${PIP_EXTRA_INDEX_URL:-}" ]; then export PIP_EXTRA_INDEX_URL; else unset PIP_EXTRA_INDEX_URL; fi \
 && /opt/venv/bin/pip install -r /tmp/requirements.txt

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    RECSYS_RECOMMENDER_PORT=8080 RECSYS_RECOMMENDER_SPOOL_DIR=/var/lib/recsys/spool
RUN groupadd --system --gid 10001 recsys \
 && useradd --system --uid 10001 --gid recsys --home-dir /app --no-create-home --shell /usr/sbin/nologin recsys \
 && mkdir -p /var/lib/recsys/spool && chown 10001:10001 /var/lib/recsys/spool
WORKDIR /app
COPY --from=deps /opt/venv /opt/venv
COPY Dockerfiles/healthcheck.py /usr/local/bin/recsys-healthcheck
COPY shared/ shared/
COPY services/__init__.py services/__init__.py
COPY services/recommender_app/ services/recommender_app/
USER 10001:10001
EXPOSE 8080
# Liveness only (/healthz): /readyz also checks the dependencies and belongs to the load balancer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "/usr/local/bin/recsys-healthcheck", "http", "RECSYS_RECOMMENDER_PORT", "8080", "/healthz"]
# services/recommender_app/gunicorn.conf.py validates the settings in the master (one line and
# exit 2 on a bad one), binds RECSYS_RECOMMENDER_PORT and logs JSON lines (access log included);
# workers: WEB_CONCURRENCY.
CMD ["gunicorn", "-c", "services/recommender_app/gunicorn.conf.py", "--access-logfile", "-", "services.recommender_app.wsgi:app"]
