from pathlib import Path

import pytest

from shared.config import ConfigError, Settings, environment_variables


def test_defaults_point_at_the_local_stack() -> None:
    settings = Settings.from_env({})
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.mongo.uri.startswith("mongodb://127.0.0.1")
    assert settings.redis.url.startswith("redis://127.0.0.1")
    assert settings.kafka.item_vectors_topic == "item-vectors"


def test_values_are_parsed_into_their_types() -> None:
    settings = Settings.from_env(
        {
            "RECSYS_EMBEDDING_DIM": "64",
            "RECSYS_STATSD_ENABLED": "no",
            "RECSYS_MODELS_DIR": "/srv/models",
            "RECSYS_TRAINER_EVAL_SAMPLE_RATE": "0.5",
            "RECSYS_ID_MODE": "HASH",
        }
    )
    assert settings.model.embedding_dim == 64
    assert settings.statsd.enabled is False
    assert settings.model.models_dir == Path("/srv/models")
    assert settings.trainer.eval_sample_rate == 0.5
    assert settings.model.id_mode == "hash"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RECSYS_EMBEDDING_DIM", "zero"),
        ("RECSYS_EMBEDDING_DIM", "-3"),
        ("RECSYS_STATSD_PORT", "70000"),
        ("RECSYS_STATSD_ENABLED", "maybe"),
        ("RECSYS_TRAINER_EVAL_SAMPLE_RATE", "1.5"),
        ("RECSYS_ID_MODE", "bloom"),
        ("RECSYS_KAFKA_BOOTSTRAP_SERVERS", "  "),
        ("RECSYS_REDIS_TIMEOUT_S", "inf"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_every_field_has_a_distinct_variable() -> None:
    names = environment_variables()
    assert len(names) == len(set(names.values()))
    assert all(name.startswith("RECSYS_") for name in names)
    assert names["RECSYS_MONGO_URI"] == "mongo.uri"
