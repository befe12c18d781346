# Gati Private Registry: one container, data in /data.
# The base is a build argument so the image can be built from a locally made base where no
# container registry is reachable (see docs/operations.md).
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GATI_REGISTRY_HOST=0.0.0.0 \
    GATI_REGISTRY_PORT=8080 \
    GATI_REGISTRY_DATA=/data

WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY gati_private_registry ./gati_private_registry
RUN python -m venv /venv \
    && /venv/bin/pip install ".[postgres]" \
    && useradd --system --uid 10001 --home-dir /data gati \
    && mkdir -p /data && chown gati /data

USER gati
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD ["/venv/bin/python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
# gunicorn's master handles SIGTERM with a graceful stop of its workers
ENTRYPOINT ["/venv/bin/gati-registry", "serve"]
