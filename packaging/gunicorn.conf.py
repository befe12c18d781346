# gunicorn settings for running the WSGI app directly (`gunicorn -c packaging/gunicorn.conf.py
# 'gati_private_registry:create_app()'`). `gati-registry serve` sets the same values itself
# from the registry settings; use this file only when you need gunicorn's own command line.
import os

bind = f"{os.environ.get('GATI_REGISTRY_HOST', '0.0.0.0')}:{os.environ.get('GATI_REGISTRY_PORT', '8080')}"
workers = int(os.environ.get("GATI_REGISTRY_WORKERS", "2"))
threads = int(os.environ.get("GATI_REGISTRY_THREADS", "8"))
worker_class = "gthread"
keepalive = 30
timeout = 120
graceful_timeout = 30
accesslog = None
errorlog = "-"


def post_worker_init(worker):  # noqa: ANN001 - gunicorn's hook signature
    """Start the background followers (webhook delivery, re-signing) in each worker, as
    `gati-registry serve` does; a lease per job lets one of them work at a time."""
    from gati_private_registry.services.background import start_background

    start_background(worker.wsgi.extensions["gati"])
