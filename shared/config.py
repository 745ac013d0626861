"""Typed settings read once from environment variables.

Every service builds one :class:`Settings` at start with :meth:`Settings.from_env` and passes the
pieces it needs down. Defaults point at the local stack (``python -m scripts.stack up``), so a
developer needs no environment at all; production sets the variables in docker-compose.yml.

A bad value stops the program at start with a :class:`ConfigError` naming the variable, rather
than failing later inside a request or a consume loop.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

PREFIX = "RECSYS_"

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration variable is missing or has a value that cannot be used."""


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _parse_positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _parse_non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or a positive integer")
    return value


def _parse_positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive, finite number")
    return value


def _parse_non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be zero or a positive, finite number")
    return value


def _parse_fraction(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


def _parse_port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("must be a TCP port between 1 and 65535")
    return value


def _parse_non_empty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return parse


def setting(name: str, default: Any, parse: Callable[[str], Any] = str) -> Any:
    """Declare a dataclass field read from ``RECSYS_<name>`` with a default and a parser."""
    return field(default=default, metadata={"env": PREFIX + name, "parse": parse})


C = TypeVar("C", bound="DataclassInstance")


def load_section(cls: type[C], env: Mapping[str, str]) -> C:
    """Build one settings dataclass from ``env``, raising ConfigError naming a bad variable."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        var = f.metadata["env"]
        raw = env.get(var)
        if raw is None:
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            raise ConfigError(f"{var}={raw!r} is invalid: {exc}") from None
    return cls(**values)


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = setting("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", _parse_non_empty)
    interactions_topic: str = setting("KAFKA_INTERACTIONS_TOPIC", "interactions", _parse_non_empty)
    dead_letter_topic: str = setting("KAFKA_DLQ_TOPIC", "interactions.dlq", _parse_non_empty)
    item_vectors_topic: str = setting("KAFKA_ITEM_VECTORS_TOPIC", "item-vectors", _parse_non_empty)
    interactions_partitions: int = setting("KAFKA_INTERACTIONS_PARTITIONS", 4, _parse_positive_int)
    item_vectors_partitions: int = setting("KAFKA_ITEM_VECTORS_PARTITIONS", 1, _parse_positive_int)
    trainer_group_id: str = setting("KAFKA_TRAINER_GROUP", "incremental-trainer", _parse_non_empty)
    session_timeout_ms: int = setting("KAFKA_SESSION_TIMEOUT_MS", 6000, _parse_positive_int)
    heartbeat_interval_ms: int = setting("KAFKA_HEARTBEAT_INTERVAL_MS", 500, _parse_positive_int)
    request_timeout_ms: int = setting("KAFKA_REQUEST_TIMEOUT_MS", 5000, _parse_positive_int)
    delivery_timeout_ms: int = setting("KAFKA_DELIVERY_TIMEOUT_MS", 10000, _parse_positive_int)


@dataclass(frozen=True)
class MongoSettings:
    uri: str = setting("MONGO_URI", "mongodb://127.0.0.1:27017", _parse_non_empty)
    database: str = setting("MONGO_DATABASE", "recsys", _parse_non_empty)
    timeout_ms: int = setting("MONGO_TIMEOUT_MS", 2000, _parse_positive_int)


@dataclass(frozen=True)
class RedisSettings:
    url: str = setting("REDIS_URL", "redis://127.0.0.1:6379/0", _parse_non_empty)
    timeout_s: float = setting("REDIS_TIMEOUT_S", 0.5, _parse_positive_float)
    seen_list_length: int = setting("REDIS_SEEN_LIST_LENGTH", 200, _parse_positive_int)
    popularity_half_life_s: float = setting(
        "POPULARITY_HALF_LIFE_S", 6 * 3600.0, _parse_positive_float
    )


@dataclass(frozen=True)
class StatsdSettings:
    host: str = setting("STATSD_HOST", "127.0.0.1", _parse_non_empty)
    port: int = setting("STATSD_PORT", 8125, _parse_port)
    prefix: str = setting("STATSD_PREFIX", "recsys", _parse_non_empty)
    enabled: bool = setting("STATSD_ENABLED", True, _parse_bool)


@dataclass(frozen=True)
class ModelSettings:
    models_dir: Path = setting("MODELS_DIR", Path("models"), lambda raw: Path(_parse_non_empty(raw)))
    embedding_dim: int = setting("EMBEDDING_DIM", 32, _parse_positive_int)
    id_mode: str = setting("ID_MODE", "vocab", _choice("vocab", "hash"))
    hash_buckets: int = setting("HASH_BUCKETS", 1 << 20, _parse_positive_int)
    initial_capacity: int = setting("INITIAL_CAPACITY", 1024, _parse_positive_int)
    growth_factor: float = setting("GROWTH_FACTOR", 0.10, _parse_positive_float)
    seed: int = setting("SEED", 7, _parse_non_negative_int)


@dataclass(frozen=True)
class TrainerSettings:
    batch_max_events: int = setting("TRAINER_BATCH_MAX_EVENTS", 512, _parse_positive_int)
    batch_max_ms: int = setting("TRAINER_BATCH_MAX_MS", 200, _parse_positive_int)
    learning_rate: float = setting("TRAINER_LEARNING_RATE", 0.05, _parse_positive_float)
    l2: float = setting("TRAINER_L2", 1e-4, _parse_non_negative_float)
    negatives_per_positive: int = setting("TRAINER_NEGATIVES", 4, _parse_non_negative_int)
    eval_sample_rate: float = setting("TRAINER_EVAL_SAMPLE_RATE", 0.2, _parse_fraction)
    eval_k: int = setting("TRAINER_EVAL_K", 10, _parse_positive_int)
    eval_window: int = setting("TRAINER_EVAL_WINDOW", 2000, _parse_positive_int)
    snapshot_interval_s: float = setting("TRAINER_SNAPSHOT_INTERVAL_S", 30.0, _parse_positive_float)
    snapshots_kept: int = setting("TRAINER_SNAPSHOTS_KEPT", 3, _parse_positive_int)
    # "" → <models_dir>/trainer_status.json; the heartbeat file ("" = none) is touched from
    # the poll loop, also while idle, for the container healthcheck.
    status_file: str = setting("TRAINER_STATUS_FILE", "", str)
    heartbeat_file: str = setting("TRAINER_HEARTBEAT_FILE", "", str)


@dataclass(frozen=True)
class FaissSettings:
    url: str = setting("FAISS_URL", "http://127.0.0.1:8081", _parse_non_empty)
    port: int = setting("FAISS_PORT", 8081, _parse_port)
    exact_max_items: int = setting("FAISS_EXACT_MAX_ITEMS", 200_000, _parse_positive_int)
    ann_type: str = setting("FAISS_ANN_TYPE", "hnsw", _choice("ivf", "hnsw"))
    ivf_nlist: int = setting("FAISS_IVF_NLIST", 0, _parse_non_negative_int)  # 0 → 4·√n
    ivf_nprobe: int = setting("FAISS_IVF_NPROBE", 16, _parse_positive_int)
    hnsw_m: int = setting("FAISS_HNSW_M", 32, _parse_positive_int)
    hnsw_ef_search: int = setting("FAISS_HNSW_EF_SEARCH", 128, _parse_positive_int)
    hnsw_ef_construction: int = setting("FAISS_HNSW_EF_CONSTRUCTION", 80, _parse_positive_int)
    max_k: int = setting("FAISS_MAX_K", 1000, _parse_positive_int)
    max_batch: int = setting("FAISS_MAX_BATCH", 256, _parse_positive_int)
    max_body_bytes: int = setting("FAISS_MAX_BODY_BYTES", 4 << 20, _parse_positive_int)
    admin_token: str = setting("FAISS_ADMIN_TOKEN", "change-me", _parse_non_empty)
    timeout_s: float = setting("FAISS_TIMEOUT_S", 0.25, _parse_positive_float)
    follow_updates: bool = setting("FAISS_FOLLOW_UPDATES", True, _parse_bool)
    workers: int = setting("FAISS_WORKERS", 2, _parse_positive_int)
    # Building an ANN index of millions of items takes minutes: boot and /v1/reload must not
    # be killed by gunicorn's worker timeout.
    worker_timeout_s: int = setting("FAISS_WORKER_TIMEOUT_S", 600, _parse_positive_int)


@dataclass(frozen=True)
class RecommenderSettings:
    port: int = setting("RECOMMENDER_PORT", 8080, _parse_port)
    default_k: int = setting("RECOMMENDER_DEFAULT_K", 10, _parse_positive_int)
    max_k: int = setting("RECOMMENDER_MAX_K", 100, _parse_positive_int)
    request_budget_s: float = setting("RECOMMENDER_REQUEST_BUDGET_S", 0.3, _parse_positive_float)
    max_body_bytes: int = setting("RECOMMENDER_MAX_BODY_BYTES", 1 << 20, _parse_positive_int)
    max_events_per_request: int = setting("RECOMMENDER_MAX_EVENTS", 500, _parse_positive_int)
    publish_timeout_s: float = setting("RECOMMENDER_PUBLISH_TIMEOUT_S", 2.0, _parse_positive_float)
    breaker_cooldown_s: float = setting("RECOMMENDER_BREAKER_COOLDOWN_S", 1.0, _parse_positive_float)


@dataclass(frozen=True)
class Settings:
    """All settings, one frozen section per concern."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    mongo: MongoSettings = field(default_factory=MongoSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    statsd: StatsdSettings = field(default_factory=StatsdSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    faiss: FaissSettings = field(default_factory=FaissSettings)
    recommender: RecommenderSettings = field(default_factory=RecommenderSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every section from ``env`` (default: ``os.environ``)."""
        source = os.environ if env is None else env
        return cls(
            **{
                # every section field is declared with default_factory=<its settings class>
                f.name: load_section(cast("type[Any]", f.default_factory), source)
                for f in dataclasses.fields(cls)
            }
        )


def environment_variables() -> dict[str, str]:
    """Every variable the settings read, mapped to its section and field (for docs and tests)."""
    names: dict[str, str] = {}
    for section in dataclasses.fields(Settings):
        for f in dataclasses.fields(section.default_factory):  # type: ignore[arg-type]
            names[f.metadata["env"]] = f"{section.name}.{f.name}"
    return names
