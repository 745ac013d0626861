from shared.config import Settings
from shared.storage import mongo, redis_store


def test_stack_answers_real_clients(settings: Settings) -> None:
    db = mongo.connect(settings.mongo)
    db.command("ping")
    assert redis_store.connect(settings.redis).ping()
