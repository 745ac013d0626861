# incremental_trainer: the Kafka consumer that keeps the GMF model current. The same image runs
# the one-shot initial step (scripts.generate_data + scripts.initial_training), so it also
# carries scripts/.
# Build from the repository root:  docker build -f Dockerfiles/incremental_trainer.Dockerfile .

FROM python:3.11-slim AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# Optional: an extra wheel index (for example a CPU-only torch index or a local mirror), given
# at build time with --build-arg; nothing is baked into the image.
ARG PIP_EXTRA_INDEX_URL
RUN python -m venv /opt/venv
# Only what this service imports (tests/test_images.py), pinned as in requirements.txt.
COPY Dockerfiles/requirements/incremental_trainer.txt /tmp/requirements.txt
# torch from the PyTorch CPU wheel index: the default index's Linux wheel pulls the CUDA
# libraries (several GB) that this CPU-only trainer never uses. The version is the one pinned in
# the requirements file (2.13.0 is satisfied by 2.13.0+cpu); a mirror can be given with
# --build-arg TORCH_INDEX_URL=...
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN if [ -n "${PIP_EXTRA_INDEX_URL:-}" ]; then export PIP_EXTRA_INDEX_URL; else unset PIP_EXTRA_INDEX_URL; fi \
 && /opt/venv/bin/pip install --index-url "${TORCH_INDEX_URL}" "$(grep '^torch==' /tmp/requirements.txt)" \
 && /opt/venv/bin/pip install -r /tmp/requirements.txt

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    RECSYS_MODELS_DIR=/app/models \
    RECSYS_TRAINER_HEARTBEAT_FILE=/tmp/recsys-trainer.heartbeat
RUN groupadd --system --gid 10001 recsys \
 && useradd --system --uid 10001 --gid recsys --home-dir /app --no-create-home --shell /usr/sbin/nologin recsys \
 && mkdir -p /app/models /app/data && chown recsys:recsys /app/models /app/data
WORKDIR /app
COPY --from=deps /opt/venv /opt/venv
COPY Dockerfiles/healthcheck.py /usr/local/bin/recsys-healthcheck
COPY shared/ shared/
COPY scripts/ scripts/
COPY services/__init__.py services/__init__.py
COPY services/incremental_trainer/ services/incremental_trainer/
USER 10001:10001
# No HTTP port: the trainer touches a heartbeat file from its poll loop (also while idle), and is
# healthy while that file is younger than 60 s.
HEALTHCHECK --interval=20s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "/usr/local/bin/recsys-healthcheck", "heartbeat", "RECSYS_TRAINER_HEARTBEAT_FILE", "/tmp/recsys-trainer.heartbeat", "60"]
CMD ["python", "-m", "services.incremental_trainer"]
