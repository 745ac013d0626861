from services.recommender_app.app import create_app
from shared.config import Settings

app = create_app(Settings.from_env())
