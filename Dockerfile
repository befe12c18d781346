# Gati Private Registry: one container, data in /data.
# The base is a build argument so the image can be built from a locally made base where no
# container registry is reachable (see docs/operations.md and packaging/test-image.sh).
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
COPY plugins ./plugins
# the registry with PostgreSQL support and the built-in policy plugins, in a venv so the
# image behaves the same on python:3.11-slim and on a debootstrap base (PEP 668)
RUN python3 -m venv /venv \
    && /venv/bin/pip install ".[postgres]" ./plugins \
    && useradd --system --uid 10001 --gid 0 --home-dir /data gati \
    && mkdir -p /data \
    && chown 10001:0 /data

# pg_dump/pg_restore for `gati-registry backup` against PostgreSQL: run backups from a
# job with the postgres client image, or add postgresql-client here (see docs/operations.md)
USER 10001
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GATI_REGISTRY_PORT', '8080'), timeout=2)"]
# gunicorn's master is PID 1: SIGTERM stops the workers gracefully (graceful_timeout 30 s)
STOPSIGNAL SIGTERM
ENTRYPOINT ["/venv/bin/gati-registry", "serve"]
