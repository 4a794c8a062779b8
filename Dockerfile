# syntax=docker/dockerfile:1
# One image for the API (default command), the worker (`arq jobs.worker.WorkerSettings`)
# and the migration runner (`python -m service migrate`).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# --- builder: the locked dependencies in a virtualenv (wheels only, no compiler needed)
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r /tmp/requirements.txt

# --- runtime: the virtualenv and the code, as a non-root user
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/metrics
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY --chown=app:app alembic.ini pyproject.toml ./
COPY --chown=app:app alembic/ alembic/
COPY --chown=app:app service/ service/
COPY --chown=app:app jobs/ jobs/
USER 10001:10001
EXPOSE 8000 9100 9101
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', timeout=2)"]
CMD ["python", "-m", "service", "serve"]
