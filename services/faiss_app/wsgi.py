"""gunicorn entry point: ``gunicorn -c services/faiss_app/gunicorn.conf.py services.faiss_app.wsgi:app``."""

from services.faiss_app.app import create_app
from shared.config import Settings
from shared.logs import setup_logging

setup_logging("faiss_app")
app = create_app(Settings.from_env())
