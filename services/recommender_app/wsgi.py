"""gunicorn entry point: ``gunicorn -c services/recommender_app/gunicorn.conf.py services.recommender_app.wsgi:app``."""

from services.recommender_app.app import create_app
from shared.startup import load_settings

app = create_app(load_settings("recommender_app"))
