"""gunicorn settings for recommender_app.

The settings are read here, in the master: a bad variable stops gunicorn before any worker
starts, with one line listing every bad variable and exit status 2. The worker count is
gunicorn's own WEB_CONCURRENCY; command-line flags still override this file.
"""

from shared.logs import gunicorn_logconfig
from shared.startup import load_settings

_settings = load_settings("recommender_app")

bind = f"0.0.0.0:{_settings.recommender.port}"
# Threaded workers: a request mostly waits on Redis and faiss_app, and clients' keep-alive
# connections are kept (sync workers close the connection after every answer).
worker_class = "gthread"
threads = _settings.recommender.threads
keepalive = 5
timeout = 30
graceful_timeout = 20
logconfig_dict = gunicorn_logconfig("recommender_app", _settings.logging)
