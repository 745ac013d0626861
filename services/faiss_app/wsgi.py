"""gunicorn entry point: ``gunicorn -c services/faiss_app/gunicorn.conf.py services.faiss_app.wsgi:app``."""

from services.faiss_app.app import create_app
from shared.logs import setup_logging
from shared.startup import load_settings

_settings = load_settings("faiss_app")
setup_logging("faiss_app", _settings.logging)
app = create_app(_settings)
