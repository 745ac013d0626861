"""Typed settings read once from environment variables.

Every service builds one :class:`Settings` at start with :meth:`Settings.from_env` and passes the
pieces it needs down. Defaults point at the local stack (``python -m scripts.stack up``), so a
developer needs no environment at all; production sets the variables in docker-compose.yml.

A bad value stops the program at start with a :class:`ConfigError` that lists every bad
variable with what it expects, rather than failing later inside a request or a consume loop
(entry points turn it into one message and exit status 2: :mod:`shared.startup`).

Secrets (API keys, the faiss admin token) may also come from a file named by ``<VARIABLE>_FILE``
(Docker secrets). With ``RECSYS_ENV=production`` a secret left empty or at its local-stack
default is a configuration error too.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

from shared.spaces import check_name, parse_spaces

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

PREFIX = "RECSYS_"

T = TypeVar("T")


class ConfigError(ValueError):
    """One or more configuration variables are missing or have values that cannot be used.

    ``problems`` holds one ``"VARIABLE=value: expects ..."`` string per bad variable; the
    message is all of them on one line.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def _int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("expects an integer") from None


def _float(raw: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise ValueError("expects a number") from None


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expects one of 1/0, true/false, yes/no, on/off")


def _parse_positive_int(raw: str) -> int:
    try:
        value = _int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError("expects a positive integer")
    return value


def _parse_non_negative_int(raw: str) -> int:
    try:
        value = _int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError("expects zero or a positive integer")
    return value


def _parse_positive_float(raw: str) -> float:
    value = _float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError("expects a positive, finite number")
    return value


def _parse_non_negative_float(raw: str) -> float:
    value = _float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError("expects zero or a positive, finite number")
    return value


def _parse_fraction(raw: str) -> float:
    value = _float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("expects a number between 0 and 1")
    return value


def _parse_port(raw: str) -> int:
    value = int(raw) if raw.strip().isdigit() else 0
    if not 0 < value < 65536:
        raise ValueError("expects a TCP port between 1 and 65535")
    return value


def _url(raw: str, schemes: tuple[str, ...], what: str, needs_port: bool = False) -> str:
    """``raw`` stripped, when it is a URL with one of ``schemes`` and a host (and port)."""
    value = raw.strip()
    expects = f"expects {what}"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(expects) from None
    if parts.scheme not in schemes or (
        not parts.hostname and not (parts.scheme == "unix" and parts.path)
    ):
        raise ValueError(expects)
    if needs_port and port is None:
        raise ValueError(expects)
    return value


def _parse_mongo_uri(raw: str) -> str:
    return _url(raw, ("mongodb", "mongodb+srv"), "a mongodb:// or mongodb+srv:// URI with a host")


def _parse_redis_url(raw: str) -> str:
    return _url(raw, ("redis", "rediss", "unix"), "a redis://, rediss:// or unix:// URL")


def _parse_http_url(raw: str) -> str:
    return _url(raw, ("http", "https"), "an http:// or https:// URL with a host")


def _parse_bootstrap_servers(raw: str) -> str:
    servers = [s.strip() for s in raw.split(",")]
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or "/" in server or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expects host:port[,host:port...]")
    return ",".join(servers)


def _parse_host(raw: str) -> str:
    value = raw.strip()
    if not value or any(c in value for c in " /:@"):
        raise ValueError("expects a host name or IP address (no scheme or port)")
    return value


def _parse_keys(raw: str) -> tuple[str, ...]:
    """A comma-separated list of secrets (empty entries dropped)."""
    return tuple(key.strip() for key in raw.split(",") if key.strip())


SECRET_MIN_LENGTH = 16


def _parse_non_empty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("expects a non-empty value")
    return raw.strip()


def _parse_space_name(raw: str) -> str:
    return check_name(raw.strip())


def _parse_spaces(raw: str) -> str:
    parse_spaces(raw)  # raises ValueError naming the bad entry
    return ",".join(part.strip() for part in raw.split(",") if part.strip())


# Vector spaces the ranking stage can take candidates from (shared/ranking/space_sources.py).
RANKING_SPACE_SOURCES = ("two_tower", "triplet")


def _parse_space_sources(raw: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    unknown = [n for n in names if n not in RANKING_SPACE_SOURCES]
    if unknown:
        raise ValueError(f"unknown {unknown}; expects any of {', '.join(RANKING_SPACE_SOURCES)}")
    return names


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"expects one of {', '.join(allowed)}")
        return value

    return parse


def setting(
    name: str, default: Any, parse: Callable[[str], Any] = str, *, secret: bool = False
) -> Any:
    """Declare a dataclass field read from ``RECSYS_<name>`` with a default and a parser.

    A ``secret`` is never echoed in error messages, may be read from the file named by
    ``RECSYS_<name>_FILE``, and must be set (not empty, not its default) in production.
    """
    return field(
        default=default, metadata={"env": PREFIX + name, "parse": parse, "secret": secret}
    )


C = TypeVar("C", bound="DataclassInstance")


def _shown(raw: str, secret: bool) -> str:
    # Never echo a secret, nor a URI that may carry credentials.
    return "<hidden>" if secret or "@" in raw else repr(raw)


def _raw_value(var: str, secret: bool, env: Mapping[str, str]) -> str | None:
    """The variable's text, for a secret possibly from the file named by ``<var>_FILE``."""
    path = env.get(var + "_FILE") if secret else None
    if path and var not in env:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ValueError(f"{var}_FILE={path!r}: cannot read ({exc.strerror})") from None
    return env.get(var)


def load_section(cls: type[C], env: Mapping[str, str], problems: list[str] | None = None) -> C:
    """Build one settings dataclass from ``env``.

    Every bad variable is appended to ``problems`` when given (bad fields keep their default,
    so the caller can go on collecting); without it a :class:`ConfigError` lists this section's.
    """
    found: list[str] = []
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        var, secret = f.metadata["env"], f.metadata.get("secret", False)
        try:
            raw = _raw_value(var, secret, env)
        except ValueError as exc:
            found.append(str(exc))
            continue
        if raw is None:
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            found.append(f"{var}={_shown(raw, secret)}: {exc}")
    if problems is None and found:
        raise ConfigError(found)
    if problems is not None:
        problems.extend(found)
    return cls(**values)


def production_problems(
    settings: DataclassInstance, secrets: Collection[str] | None = None
) -> list[str]:
    """Secrets in ``settings`` (a :class:`Settings`) left empty or at their default.

    ``secrets`` names the variables this process uses (default: every secret).
    """
    problems: list[str] = []
    for section in dataclasses.fields(settings):
        values = getattr(settings, section.name)
        for f in dataclasses.fields(values):
            var = f.metadata["env"]
            if not f.metadata.get("secret") or (secrets is not None and var not in secrets):
                continue
            value = getattr(values, f.name)
            keys = value if isinstance(value, tuple) else (value,)
            if not keys or not all(keys):
                problems.append(f"{var}: expects a secret in production (it is empty)")
            elif value == f.default:
                problems.append(f"{var}: expects a secret in production (it is the default)")
            elif any(len(key) < SECRET_MIN_LENGTH for key in keys):
                problems.append(
                    f"{var}: expects secrets of at least {SECRET_MIN_LENGTH} characters"
                )
    return problems


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = setting(
        "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", _parse_bootstrap_servers
    )
    interactions_topic: str = setting("KAFKA_INTERACTIONS_TOPIC", "interactions", _parse_non_empty)
    dead_letter_topic: str = setting("KAFKA_DLQ_TOPIC", "interactions.dlq", _parse_non_empty)
    item_vectors_topic: str = setting("KAFKA_ITEM_VECTORS_TOPIC", "item-vectors", _parse_non_empty)
    interactions_partitions: int = setting("KAFKA_INTERACTIONS_PARTITIONS", 4, _parse_positive_int)
    item_vectors_partitions: int = setting("KAFKA_ITEM_VECTORS_PARTITIONS", 1, _parse_positive_int)
    trainer_group_id: str = setting("KAFKA_TRAINER_GROUP", "incremental-trainer", _parse_non_empty)
    session_timeout_ms: int = setting("KAFKA_SESSION_TIMEOUT_MS", 6000, _parse_positive_int)
    heartbeat_interval_ms: int = setting("KAFKA_HEARTBEAT_INTERVAL_MS", 500, _parse_positive_int)
    request_timeout_ms: int = setting("KAFKA_REQUEST_TIMEOUT_MS", 5000, _parse_positive_int)
    # How long the broker may hold a fetch that finds nothing new. librdkafka's default (500)
    # costs nothing where the broker answers as soon as data arrives, but a broker that holds
    # the fetch for the whole wait adds it to every event → consumer hop: measured on the local
    # Tansu, produce → consume p50 115 ms at 500 and 5 ms at 50. 50 ms costs an idle consumer
    # 20 small fetches a second.
    fetch_wait_max_ms: int = setting("KAFKA_FETCH_WAIT_MAX_MS", 50, _parse_positive_int)
    delivery_timeout_ms: int = setting("KAFKA_DELIVERY_TIMEOUT_MS", 10000, _parse_positive_int)


@dataclass(frozen=True)
class MongoSettings:
    uri: str = setting("MONGO_URI", "mongodb://127.0.0.1:27017", _parse_mongo_uri)
    database: str = setting("MONGO_DATABASE", "recsys", _parse_non_empty)
    timeout_ms: int = setting("MONGO_TIMEOUT_MS", 2000, _parse_positive_int)


@dataclass(frozen=True)
class RedisSettings:
    url: str = setting("REDIS_URL", "redis://127.0.0.1:6379/0", _parse_redis_url)
    timeout_s: float = setting("REDIS_TIMEOUT_S", 0.5, _parse_positive_float)
    seen_list_length: int = setting("REDIS_SEEN_LIST_LENGTH", 200, _parse_positive_int)
    popularity_half_life_s: float = setting(
        "POPULARITY_HALF_LIFE_S", 6 * 3600.0, _parse_positive_float
    )


@dataclass(frozen=True)
class StatsdSettings:
    host: str = setting("STATSD_HOST", "127.0.0.1", _parse_host)
    port: int = setting("STATSD_PORT", 8125, _parse_port)
    prefix: str = setting("STATSD_PREFIX", "recsys", _parse_non_empty)
    enabled: bool = setting("STATSD_ENABLED", True, _parse_bool)


@dataclass(frozen=True)
class ModelSettings:
    models_dir: Path = setting(
        "MODELS_DIR", Path("models"), lambda raw: Path(_parse_non_empty(raw))
    )
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
    # Item vectors moved by a batch are published coalesced: new items at once, engaged-with
    # items within this many ms, items moved only as sampled negatives within the slower bound
    # (services/incremental_trainer/publisher.py, PendingItemRows, says why not per batch).
    item_vectors_interval_ms: int = setting(
        "TRAINER_ITEM_VECTORS_INTERVAL_MS", 1000, _parse_positive_int
    )
    negative_vectors_interval_s: float = setting(
        "TRAINER_NEGATIVE_VECTORS_INTERVAL_S", 5.0, _parse_positive_float
    )
    # MongoDB users (the serving copy the recommender reads only when Redis has no vector) are
    # written behind at most this many users per second, each user's newest vector once per
    # round; a clean stop writes what is left at the store's pace.
    mongo_users_per_s: int = setting("TRAINER_MONGO_USERS_PER_S", 500, _parse_positive_int)
    # Several trainer processes in one consumer group: share item rows through item-vectors
    # and hand partitions' users over through <models_dir>/partitions (docs/CONTRACTS.md).
    share_items: bool = setting("TRAINER_SHARE_ITEMS", False, _parse_bool)
    # "" → <models_dir>/trainer_status.json; the heartbeat file ("" = none) is touched from
    # the poll loop, also while idle, for the container healthcheck.
    status_file: str = setting("TRAINER_STATUS_FILE", "", str)
    heartbeat_file: str = setting("TRAINER_HEARTBEAT_FILE", "", str)


@dataclass(frozen=True)
class FaissSettings:
    url: str = setting("FAISS_URL", "http://127.0.0.1:8081", _parse_http_url)
    port: int = setting("FAISS_PORT", 8081, _parse_port)
    # Loopback unless told otherwise: the index answers anyone who can reach it (containers set
    # 0.0.0.0 in their image).
    host: str = setting("FAISS_HOST", "127.0.0.1", _parse_non_empty)
    exact_max_items: int = setting("FAISS_EXACT_MAX_ITEMS", 200_000, _parse_positive_int)
    ann_type: str = setting("FAISS_ANN_TYPE", "hnsw", _choice("ivf", "hnsw"))
    ivf_nlist: int = setting("FAISS_IVF_NLIST", 0, _parse_non_negative_int)  # 0 → 4·√n
    # Cells probed per IVF query; 0 = 1% of the space's cells, at least 32 (index.default_nprobe).
    # The same share answers alike at every size: triplet-space recall@10 0.967 at 10M (128 of
    # 12,649 cells, reports/bench_faiss_triplet_10m_d64.md) and 0.969 at 1M (40 of 4,000,
    # reports/bench_faiss_nprobe_1m.md), where a fixed 128 scanned 3.2% of the rows for 0.996.
    ivf_nprobe: int = setting("FAISS_IVF_NPROBE", 0, _parse_non_negative_int)
    # Rows scanned per IVF query at most (0: no cap): bounds the slowest queries, which land in
    # the densest cells (reports/bench_faiss_triplet_10m.md).
    ivf_max_codes: int = setting("FAISS_IVF_MAX_CODES", 0, _parse_non_negative_int)
    hnsw_m: int = setting("FAISS_HNSW_M", 32, _parse_positive_int)
    hnsw_ef_search: int = setting("FAISS_HNSW_EF_SEARCH", 128, _parse_positive_int)
    hnsw_ef_construction: int = setting("FAISS_HNSW_EF_CONSTRUCTION", 80, _parse_positive_int)
    # Named vector spaces served beside the default "gmf" (shared/spaces.py): name[:index type].
    spaces: str = setting("FAISS_SPACES", "triplet:ivf,two_tower", _parse_spaces)
    # An IVF space re-trains its k-means cells in the background once the items added since
    # the cells were trained reach this fraction of the items they were trained on.
    recluster_growth: float = setting("FAISS_RECLUSTER_GROWTH", 0.2, _parse_positive_float)
    max_k: int = setting("FAISS_MAX_K", 1000, _parse_positive_int)
    max_batch: int = setting("FAISS_MAX_BATCH", 256, _parse_positive_int)
    max_body_bytes: int = setting("FAISS_MAX_BODY_BYTES", 4 << 20, _parse_positive_int)
    admin_token: str = setting("FAISS_ADMIN_TOKEN", "change-me", _parse_non_empty, secret=True)
    timeout_s: float = setting("FAISS_TIMEOUT_S", 0.25, _parse_positive_float)
    follow_updates: bool = setting("FAISS_FOLLOW_UPDATES", True, _parse_bool)
    workers: int = setting("FAISS_WORKERS", 2, _parse_positive_int)
    # gunicorn threads per worker, and OpenMP threads one search may use (1: searches run side by
    # side on the request threads instead of competing for cores; services/faiss_app/openmp.py).
    threads: int = setting("FAISS_THREADS", 2, _parse_positive_int)
    omp_threads: int = setting("FAISS_OMP_THREADS", 1, _parse_positive_int)
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
    # gunicorn threads per worker (services/recommender_app/gunicorn.conf.py; the worker count
    # is gunicorn's WEB_CONCURRENCY).
    threads: int = setting("RECOMMENDER_THREADS", 4, _parse_positive_int)
    # In-process item metadata cache per worker: entries live this long (0 = off), at most
    # this many (services/recommender_app/metadata_cache.py).
    metadata_cache_s: float = setting(
        "RECOMMENDER_METADATA_CACHE_S", 5.0, _parse_non_negative_float
    )
    metadata_cache_items: int = setting(
        "RECOMMENDER_METADATA_CACHE_ITEMS", 100_000, _parse_positive_int
    )
    # Events Kafka does not acknowledge in time wait here (one fsync'd log per worker); 0 bytes
    # turns the spool off (POST /events then answers 503 while Kafka is away).
    spool_dir: str = setting("RECOMMENDER_SPOOL_DIR", "spool", _parse_non_empty)
    spool_max_bytes: int = setting("RECOMMENDER_SPOOL_MAX_BYTES", 256 << 20, _parse_non_negative_int)
    # With the spool on, a POST /events waits this long for Kafka (at most the publish timeout),
    # then spools what is unacknowledged (services/recommender_app/handover.py): a stalled
    # broker holds request threads this long, not the publish timeout.
    events_direct_wait_s: float = setting(
        "RECOMMENDER_EVENTS_DIRECT_WAIT_S", 0.25, _parse_positive_float
    )
    # faiss_app space answering /recommend?item_id= first; "gmf" (cosine) is always the fallback.
    similar_space: str = setting("RECOMMENDER_SIMILAR_SPACE", "triplet", _parse_space_name)
    # The top of Redis ``popular`` kept in process this long for the fill step (0 = off);
    # dropped at once when a Redis call fails (services/recommender_app/popular_list.py).
    popular_cache_s: float = setting("RECOMMENDER_POPULAR_CACHE_S", 1.0, _parse_non_negative_float)
    # Each worker searches its own copy of faiss_app's gmf index (same snapshot, same Kafka
    # updates) instead of calling faiss_app, which stays the fallback while the copy is not
    # current (services/recommender_app/local_index.py). Memory: one index per worker.
    local_search: bool = setting("RECOMMENDER_LOCAL_SEARCH", False, _parse_bool)


@dataclass(frozen=True)
class CatalogueSettings:
    """The catalogue API: how fast deletes reach every worker, how new items get shown."""

    deleted_refresh_s: float = setting("DELETED_ITEMS_REFRESH_S", 0.5, _parse_positive_float)
    # Answer slots (at the tail) offered to items PUT in the last new_item_window_s seconds.
    new_item_slots: int = setting("NEW_ITEM_SLOTS", 1, _parse_non_negative_int)
    new_item_window_s: float = setting("NEW_ITEM_WINDOW_S", 86400.0, _parse_positive_float)
    new_item_refresh_s: float = setting("NEW_ITEM_REFRESH_S", 1.0, _parse_positive_float)
    tombstone_timeout_s: float = setting("TOMBSTONE_TIMEOUT_S", 2.0, _parse_positive_float)


@dataclass(frozen=True)
class AccessSettings:
    """Who may call what, and whether this is a production deployment."""

    # "production" turns a default or empty secret into a configuration error at start.
    environment: str = setting("ENV", "development", _choice("development", "production"))
    # Keys accepted for POST /events and the catalogue writes ("" = open, development only).
    api_keys: tuple[str, ...] = setting("API_KEYS", (), _parse_keys, secret=True)
    recommend_requires_key: bool = setting("RECOMMEND_REQUIRES_KEY", False, _parse_bool)
    # Per API key and per worker process; 0 = no limit.
    events_rate_per_s: float = setting("EVENTS_RATE_PER_S", 0.0, _parse_non_negative_float)
    events_burst: int = setting("EVENTS_BURST", 100, _parse_positive_int)

    @property
    def production(self) -> bool:
        return self.environment == "production"


@dataclass(frozen=True)
class LogSettings:
    level: str = setting("LOG_LEVEL", "info", _choice("debug", "info", "warning", "error"))
    # "json": one object per line (production); "text": for a terminal.
    format: str = setting("LOG_FORMAT", "json", _choice("json", "text"))


@dataclass(frozen=True)
class RankingSettings:
    """The ranking stage (shared/ranking): candidate sources, their stores, ranker, rerank."""

    enabled: bool = setting("RANKING_ENABLED", True, _parse_bool)
    trending_half_life_s: float = setting(
        "RANKING_TRENDING_HALF_LIFE_S", 3600.0, _parse_positive_float
    )
    co_engagement_half_life_s: float = setting(
        "RANKING_CO_ENGAGEMENT_HALF_LIFE_S", 7 * 86400.0, _parse_positive_float
    )
    co_engagement_per_item: int = setting(
        "RANKING_CO_ENGAGEMENT_PER_ITEM", 50, _parse_positive_int
    )
    list_length: int = setting("RANKING_LIST_LENGTH", 200, _parse_positive_int)
    new_items_kept: int = setting("RANKING_NEW_ITEMS_KEPT", 200, _parse_positive_int)
    gmf_candidates: int = setting("RANKING_GMF_CANDIDATES", 100, _parse_positive_int)
    co_engagement_candidates: int = setting(
        "RANKING_CO_ENGAGEMENT_CANDIDATES", 50, _parse_positive_int
    )
    trending_candidates: int = setting("RANKING_TRENDING_CANDIDATES", 30, _parse_positive_int)
    popular_candidates: int = setting("RANKING_POPULAR_CANDIDATES", 30, _parse_positive_int)
    new_item_candidates: int = setting("RANKING_NEW_ITEM_CANDIDATES", 20, _parse_positive_int)
    max_per_category: int = setting("RANKING_MAX_PER_CATEGORY", 0, _parse_non_negative_int)
    # MMR's λ in the rerank (shared/ranking/rerank.py): 1 = relevance only (off).
    mmr_lambda: float = setting("RANKING_MMR_LAMBDA", 1.0, _parse_fraction)
    # Vector spaces asked for candidates too (comma list of two_tower, triplet; "" = none); the
    # trainer's ranker training ranks with the same ones, so their weights are learned. On by
    # default: in scripts.evaluate_stream the served pipeline with both spaces beats it without
    # them on MovieLens 100k and the synthetic stream (reports/ranking_quality.md). A space
    # faiss_app does not serve or has not loaded answers nothing.
    space_sources: tuple[str, ...] = setting("RANKING_SPACE_SOURCES", RANKING_SPACE_SOURCES,
                                             _parse_space_sources)
    lists_cache_s: float = setting("RANKING_LISTS_CACHE_S", 1.0, _parse_non_negative_float)
    ranker_learning_rate: float = setting(
        "RANKING_RANKER_LEARNING_RATE", 0.05, _parse_positive_float
    )
    ranker_publish_interval_s: float = setting(
        "RANKING_RANKER_PUBLISH_INTERVAL_S", 10.0, _parse_positive_float
    )
    # Share of the trainer's wall time its online ranker training may use (0 = never trains).
    ranker_train_share: float = setting("RANKING_RANKER_TRAIN_SHARE", 0.05, _parse_fraction)


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
    catalogue: CatalogueSettings = field(default_factory=CatalogueSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    logging: LogSettings = field(default_factory=LogSettings)
    ranking: RankingSettings = field(default_factory=RankingSettings)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, secrets: Collection[str] | None = None
    ) -> Settings:
        """Read every section from ``env`` (default: ``os.environ``).

        Raises :class:`ConfigError` listing every bad variable (and, in production, every
        secret left empty or at its default; ``secrets``: only those variables, the ones the
        calling service uses, default all).
        """
        source = os.environ if env is None else env
        problems: list[str] = []
        settings = cls(
            **{
                # every section field is declared with default_factory=<its settings class>
                f.name: load_section(cast("type[Any]", f.default_factory), source, problems)
                for f in dataclasses.fields(cls)
            }
        )
        if settings.access.production:
            problems += production_problems(settings, secrets)
        if problems:
            raise ConfigError(problems)
        return settings


def environment_variables() -> dict[str, str]:
    """Every variable the settings read, mapped to its section and field (for docs and tests)."""
    names: dict[str, str] = {}
    for section in dataclasses.fields(Settings):
        for f in dataclasses.fields(section.default_factory):  # type: ignore[arg-type]
            names[f.metadata["env"]] = f"{section.name}.{f.name}"
    return names
