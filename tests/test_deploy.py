"""Deployment files: docker-compose.yml, Dockerfiles/, .dockerignore and the Grafana provisioning.

Docker is not needed: these tests read the files and hold them to the code's own contracts:
the settings in ``shared.config`` and the metric catalogue in ``shared.metrics``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import http.server
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from shared.config import ConfigError, Settings, environment_variables
from shared.metrics import CATALOGUE, MetricSpec, UnknownMetricError, spec_for
from shared.startup import SERVICE_SECRETS

INSTANCE = "{instance}"

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
DASHBOARD_FILE = REPO / "grafana" / "dashboards" / "recsys.json"
DATASOURCE_FILE = REPO / "grafana" / "provisioning" / "datasources" / "graphite.yml"
DASHBOARD_PROVIDER_FILE = REPO / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
STATSD_CONFIG_FILE = REPO / "grafana" / "statsd" / "udp.js"

INFRA_SERVICES = {"kafka", "kafka-init", "mongo", "redis", "graphite", "grafana"}
APP_SERVICES = {
    # compose service → Dockerfile
    "faiss-app": "Dockerfiles/faiss_app.Dockerfile",
    "recommender-app": "Dockerfiles/recommender_app.Dockerfile",
    "incremental-trainer": "Dockerfiles/incremental_trainer.Dockerfile",
}
ONE_SHOT_SERVICES = {"kafka-init", "model-init"}
# Long-running services that run a script from one of the images above (its own healthcheck).
SCRIPT_SERVICES = {
    # compose service → (Dockerfile, the script it runs)
    "triplet-trainer": ("Dockerfiles/incremental_trainer.Dockerfile", "scripts.train_triplet"),
    "two-tower-trainer": ("Dockerfiles/incremental_trainer.Dockerfile",
                          "scripts.train_two_tower"),
}
EXPECTED_SERVICES = INFRA_SERVICES | set(APP_SERVICES) | {"model-init"} | set(SCRIPT_SERVICES)
DOCKERFILES = sorted(set(APP_SERVICES.values()))

# RECSYS_* variables the deployment sets that shared/config.py does not read, each with the
# code that reads it. Anything else must be a real setting.
NON_CONFIG_RECSYS: dict[str, str] = {}


# Setting → compose services its host part must name (a typo here is a silent outage there).
HOST_SETTINGS = {
    "RECSYS_KAFKA_BOOTSTRAP_SERVERS": "kafka",
    "RECSYS_MONGO_URI": "mongo",
    "RECSYS_REDIS_URL": "redis",
    "RECSYS_STATSD_HOST": "graphite",
    "RECSYS_FAISS_URL": "faiss-app",
}


# ------------------------------------------------------------------------------ helpers


def load_compose() -> dict[str, Any]:
    with COMPOSE_FILE.open() as f:
        return yaml.safe_load(f)


_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# Variables the stack requires (``${NAME:?message}``): the operator must set them, with the
# value these tests use. Anything else without a default is a mistake.
REQUIRED_VARIABLES = {"IMAGE_TAG": "2026-11-23-test"}


def interpolate(value: str) -> str:
    """Resolve compose's ``${VAR:-default}`` with the default (no variables set), required
    ``${VAR:?message}`` from :data:`REQUIRED_VARIABLES`, and ``$$``."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.group(1), match.group(2), match.group(3)
        if op in (":-", "-"):
            return default
        if op in (":?", "?") and name in REQUIRED_VARIABLES:
            return REQUIRED_VARIABLES[name]
        raise AssertionError(f"${{{name}}} has no default: the stack would not start without it")

    return _INTERPOLATION.sub(sub, value)


def service_env(service: dict[str, Any]) -> dict[str, str]:
    """The environment of one compose service, as a flat dict of strings (defaults applied)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): interpolate(str(v)) for k, v in env.items()}


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def dockerignored(path: str) -> bool:
    """Whether ``path`` (relative, posix) is left out of the build context (last match wins)."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in dockerignore_patterns():
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        for candidate in candidates:
            hit = fnmatch.fnmatchcase(candidate, pattern)
            if pattern.startswith("**/"):
                hit = hit or fnmatch.fnmatchcase(candidate.split("/")[-1], pattern[3:])
            if hit:
                ignored = not negate
                break
    return ignored


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def copy_sources(args: str) -> list[str]:
    """Sources of one COPY/ADD (the last word is the destination); [] for COPY --from=stage."""
    if args.startswith("["):
        words = json.loads(args)
    else:
        words = shlex.split(args)
    flags = [w for w in words if w.startswith("--")]
    if any(flag.startswith("--from=") for flag in flags):
        return []
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1]


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------- graphite path → catalogue


def statsd_config() -> dict[str, Any]:
    # The file is JSON (which statsd, evaluating it as JavaScript, reads the same way).
    return json.loads(STATSD_CONFIG_FILE.read_text())


def percent_thresholds() -> set[str]:
    raw = statsd_config().get("percentThreshold", 90)
    values = raw if isinstance(raw, list) else [raw]
    return {str(v).replace(".", "_") for v in values}


_TIMER_STATS = {
    "mean",
    "median",
    "upper",
    "lower",
    "count",
    "count_ps",
    "sum",
    "sum_squares",
    "std",
}
_PERCENTILE_STAT = re.compile(r"^(count|mean|upper|lower|sum|sum_squares)_(\d+(?:_\d+)?)$")
_GRAPHITE_PATH = re.compile(r"(?<![\w.$])(stats(?:_counts)?\.[A-Za-z0-9_\-.*${}]+)")


def graphite_paths(target: str) -> list[str]:
    """The metric paths in one Graphite target expression (function calls and aliases dropped)."""
    return _GRAPHITE_PATH.findall(target)


class DashboardPathError(ValueError):
    """A dashboard metric path that does not map to a catalogue entry of the right kind."""


def metric_for_path(path: str, prefix: str) -> tuple[MetricSpec, str, str | None]:
    """Map a graphite-statsd path (legacy namespace) back to its catalogue entry.

    Returns ``(spec, kind_of_path, timer_stat)``. Raises DashboardPathError when the path is
    not a statsd path, names no catalogue metric, uses the wrong kind's namespace (a timer
    statistic on a gauge, ...), or puts a wildcard where the catalogue has a fixed segment.
    """
    path = path.replace("${prefix}", prefix).replace("$prefix", prefix)
    segments = path.split(".")
    stat: str | None = None
    if segments[0] == "stats_counts":
        kind, rest = "counter", segments[1:]
    elif segments[0] == "stats" and len(segments) > 1 and segments[1] == "timers":
        kind, rest, stat = "timer", segments[2:-1], segments[-1]
        if stat not in _TIMER_STATS:
            m = _PERCENTILE_STAT.match(stat)
            if not m:
                raise DashboardPathError(f"{path}: {stat!r} is not a statsd timer statistic")
            if m.group(2) not in percent_thresholds():
                raise DashboardPathError(
                    f"{path}: percentile {m.group(2)} is not in statsd's percentThreshold"
                )
    elif segments[0] == "stats" and len(segments) > 1 and segments[1] == "gauges":
        kind, rest = "gauge", segments[2:]
    elif segments[0] == "stats":
        kind, rest = "counter", segments[1:]
    else:
        raise DashboardPathError(f"{path}: not a graphite-statsd path")
    prefix_segments = prefix.split(".")
    if rest[: len(prefix_segments)] != prefix_segments:
        raise DashboardPathError(f"{path}: does not start with the prefix {prefix!r}")
    name_segments = rest[len(prefix_segments) :]
    for segment in name_segments:
        if segment != "*" and not re.fullmatch(r"[A-Za-z0-9_\-]+", segment):
            raise DashboardPathError(f"{path}: only whole-segment '*' wildcards are supported")
    concrete = ".".join("WILDCARD" if s == "*" else s for s in name_segments)
    try:
        spec = spec_for(concrete)
    except UnknownMetricError:
        raise DashboardPathError(
            f"{path}: {concrete!r} is not in shared.metrics.CATALOGUE"
        ) from None
    spec_segments = spec.name.split(".")
    for mine, theirs in zip(name_segments, spec_segments, strict=True):
        if mine == "*" and not re.fullmatch(r"\{[a-z_]+\}", theirs):
            raise DashboardPathError(f"{path}: wildcard over the fixed segment {theirs!r}")
    if spec.kind != kind:
        raise DashboardPathError(f"{path}: read as a {kind}, but {spec.name} is a {spec.kind}")
    return spec, kind, stat


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text())


def dashboard_prefix(dashboard: dict[str, Any]) -> str:
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("name") == "prefix":
            return str(variable["query"])
    return "recsys"


def dashboard_targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, target expression) for every Graphite query on the dashboard."""

    def walk(panels: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
        for panel in panels:
            yield from walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                yield panel.get("title", "?"), target["target"]

    yield from walk(dashboard["panels"])


def dashboard_metrics() -> dict[str, MetricSpec]:
    dashboard = load_dashboard()
    prefix = dashboard_prefix(dashboard)
    used: dict[str, MetricSpec] = {}
    for _title, target in dashboard_targets(dashboard):
        for path in graphite_paths(target):
            spec, _kind, _stat = metric_for_path(path, prefix)
            used[spec.name] = spec
    return used


# ------------------------------------------------------------------------ compose


def test_compose_parses_and_has_every_service() -> None:
    compose = load_compose()
    assert set(compose["services"]) == EXPECTED_SERVICES


def secret_variables() -> set[str]:
    return {
        f.metadata["env"]
        for section in dataclasses.fields(Settings)
        for f in dataclasses.fields(section.default_factory)  # type: ignore[arg-type]
        if f.metadata.get("secret")
    }


def test_compose_recsys_variables_are_settings() -> None:
    known = set(environment_variables()) | set(NON_CONFIG_RECSYS)
    known |= {f"{name}_FILE" for name in secret_variables()}
    for name, service in load_compose()["services"].items():
        unknown = {k for k in service_env(service) if k.startswith("RECSYS_")} - known
        assert not unknown, f"{name} sets variables shared/config.py does not read: {unknown}"


def test_compose_interpolated_variables_are_settings_or_not_recsys() -> None:
    text = COMPOSE_FILE.read_text()
    used = set(re.findall(r"(?<!\$)\$\{(RECSYS_[A-Z0-9_]+)", text))
    assert used <= set(environment_variables()) | set(NON_CONFIG_RECSYS)


def _read_by(name: str, where: str) -> bool:
    target = REPO / where
    files = [target] if target.is_file() else sorted(target.rglob("*.py"))
    return any(name in path.read_text() for path in files)


@pytest.mark.parametrize("name", sorted(NON_CONFIG_RECSYS))
def test_non_config_variables_are_read_where_documented(name: str) -> None:
    assert name not in environment_variables(), f"{name} is a setting now: drop it from the list"
    assert _read_by(name, NON_CONFIG_RECSYS[name]), (
        f"{NON_CONFIG_RECSYS[name]} no longer reads {name}"
    )


def test_non_config_variables_are_documented() -> None:
    guide = (REPO / "docs" / "deploy.md").read_text()
    for name in NON_CONFIG_RECSYS:
        assert f"`{name}`" in guide, name


def test_trainer_writes_the_heartbeat_file_its_healthcheck_reads() -> None:
    assert "RECSYS_TRAINER_HEARTBEAT_FILE" in environment_variables()
    env = service_env(load_compose()["services"]["incremental-trainer"])
    beat = env["RECSYS_TRAINER_HEARTBEAT_FILE"]
    assert load_compose()["services"]["incremental-trainer"]["healthcheck"]["test"][-3:] == [
        "RECSYS_TRAINER_HEARTBEAT_FILE",
        beat,
        "60",
    ]
    trainer = "\n".join(
        p.read_text() for p in (REPO / "services" / "incremental_trainer").rglob("*.py")
    )
    assert "heartbeat_file" in trainer


# compose service → the program it runs (shared.startup.SERVICE_SECRETS keys)
PROGRAMS = {
    "faiss-app": "faiss_app",
    "recommender-app": "recommender_app",
    "incremental-trainer": "incremental_trainer",
    "model-init": "initial_training",
    "triplet-trainer": "train_triplet",
    "two-tower-trainer": "train_two_tower",
}


def with_secret_files(env: dict[str, str], folder: Path, value: str) -> dict[str, str]:
    """``env`` with every ``*_FILE`` pointing at a file in ``folder`` that holds ``value``."""
    changed = dict(env)
    for name, path in env.items():
        if name.endswith("_FILE") and path.startswith("/run/secrets/"):
            local = folder / path.rsplit("/", 1)[1]
            local.write_text(value + "\n")
            changed[name] = str(local)
    return changed


@pytest.mark.parametrize("name", sorted(set(APP_SERVICES) | {"model-init"} | set(SCRIPT_SERVICES)))
def test_compose_settings_load_without_config_error(name: str, tmp_path: Path) -> None:
    env = with_secret_files(service_env(load_compose()["services"][name]), tmp_path, "s" * 32)
    assert env["RECSYS_ENV"] == "production"
    try:
        settings = Settings.from_env(env, secrets=SERVICE_SECRETS.get(PROGRAMS[name], ()))
    except ConfigError as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(f"{name}: {exc}")
    assert settings.statsd.enabled and settings.access.production
    assert str(settings.model.models_dir) == "/app/models"


@pytest.mark.parametrize("name", sorted(set(APP_SERVICES)))
def test_compose_production_refuses_the_default_secret(name: str, tmp_path: Path) -> None:
    env = with_secret_files(service_env(load_compose()["services"][name]), tmp_path, "")
    needed = SERVICE_SECRETS.get(PROGRAMS[name], ())
    if not needed:
        return
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env, secrets=needed)
    assert all(variable in str(caught.value) for variable in needed)


def test_compose_hands_each_service_its_secrets_as_files() -> None:
    compose = load_compose()
    declared = compose["secrets"]
    for name, service in compose["services"].items():
        env = service_env(service)
        secret_files = {f"{v}_FILE" for v in secret_variables()}
        files = {k: v for k, v in env.items() if k in secret_files or k.endswith("__FILE")}
        program = PROGRAMS.get(name)
        wanted = {f"{v}_FILE" for v in SERVICE_SECRETS.get(program or "", ())}
        assert wanted <= set(files), f"{name} lacks {wanted - set(files)}"
        for variable, path in files.items():
            secret = path.removeprefix("/run/secrets/")
            assert path.startswith("/run/secrets/") and secret in service.get("secrets", [])
            assert secret in declared, secret
            source = declared[secret]["environment"]
            if variable.startswith("RECSYS_"):
                assert source == variable.removesuffix("_FILE"), (variable, source)
        # No secret as a plain value in the file (dev defaults included).
        for variable in secret_variables():
            assert variable not in env, f"{name} sets {variable} in plain text"
    grafana = service_env(compose["services"]["grafana"])
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert declared["grafana_admin_password"]["environment"] == "GRAFANA_ADMIN_PASSWORD"


_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)([KMG])$")


def test_every_service_has_cpu_and_memory_limits() -> None:
    for name, service in load_compose()["services"].items():
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        cpus, memory = interpolate(str(limits.get("cpus"))), interpolate(str(limits.get("memory")))
        assert 0 < float(cpus) <= 8, f"{name}: cpus {cpus}"
        match = _MEMORY.match(memory)
        assert match and float(match.group(1)) > 0, f"{name}: memory {memory}"


def test_redis_is_bounded_and_cannot_evict_platform_data() -> None:
    command = [interpolate(str(w)) for w in load_compose()["services"]["redis"]["command"]]
    assert "--maxmemory" in command
    maxmemory = command[command.index("--maxmemory") + 1]
    assert re.fullmatch(r"\d+(mb|gb)", maxmemory), maxmemory
    policy = command[command.index("--maxmemory-policy") + 1]
    # allkeys-* would drop seen lists, popularity and query vectors; volatile-* only evicts keys
    # with a TTL, and the platform writes none (checked below).
    assert policy == "noeviction" or policy.startswith("volatile-"), policy
    writers = "\n".join(p.read_text() for p in (REPO / "shared").rglob("*.py"))
    writers += "\n".join(p.read_text() for p in (REPO / "services").rglob("*.py"))
    assert not re.search(r"\.(expire|pexpire|setex|psetex)\(|\bex=|\bpx=", writers)
    memory = load_compose()["services"]["redis"]["deploy"]["resources"]["limits"]["memory"]
    assert int(maxmemory[:-2]) < int(interpolate(memory)[:-1])  # both in MB here


def test_compose_hosts_name_compose_services() -> None:
    services = load_compose()["services"]
    for name, service in services.items():
        for variable, wanted in HOST_SETTINGS.items():
            value = service_env(service).get(variable)
            if value is None:
                continue
            host = (
                value.split(",")[0].rsplit(":", 1)[0]
                if "://" not in value
                else urlsplit(value).hostname
            )
            assert host == wanted and host in services, f"{name}: {variable}={value}"


def test_app_services_get_the_settings_they_need() -> None:
    services = load_compose()["services"]
    for name in list(APP_SERVICES) + ["model-init"]:
        env = service_env(services[name])
        for variable in (
            "RECSYS_KAFKA_BOOTSTRAP_SERVERS",
            "RECSYS_STATSD_HOST",
            "RECSYS_MODELS_DIR",
        ):
            assert variable in env, f"{name} lacks {variable}"
    assert "RECSYS_FAISS_URL" in service_env(services["recommender-app"])
    assert service_env(services["faiss-app"])["RECSYS_FAISS_PORT"] == "8081"
    assert service_env(services["recommender-app"])["RECSYS_RECOMMENDER_PORT"] == "8080"


def test_compose_statsd_prefix_matches_dashboard() -> None:
    prefix = dashboard_prefix(load_dashboard())
    for name in APP_SERVICES:
        env = service_env(load_compose()["services"][name])
        assert env.get("RECSYS_STATSD_PREFIX", "recsys") == prefix


def test_compose_startup_order() -> None:
    services = load_compose()["services"]
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["kafka-init"]["condition"] == "service_completed_successfully"
    for name in ("faiss-app", "incremental-trainer", *SCRIPT_SERVICES):
        assert services[name]["depends_on"]["model-init"]["condition"] == (
            "service_completed_successfully"
        )
    assert services["recommender-app"]["depends_on"]["faiss-app"]["condition"] == "service_healthy"
    assert services["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ONE_SHOT_SERVICES:
        assert services[name]["restart"] == "no"


def test_compose_runs_the_entry_points() -> None:
    services = load_compose()["services"]
    init = "\n".join(services["model-init"]["command"])
    assert "python -m scripts.generate_data --out data/" in init
    assert "python -m scripts.initial_training" in init
    topics = "\n".join(services["kafka-init"]["command"])
    for variable in ("INTERACTIONS_TOPIC", "DLQ_TOPIC", "ITEM_VECTORS_TOPIC"):
        assert f'--topic "$${{RECSYS_KAFKA_{variable}}}"' in topics
    assert "cleanup.policy=compact" in topics.split("ITEM_VECTORS_TOPIC", 2)[1]
    for name, dockerfile in APP_SERVICES.items():
        assert services[name]["build"] == {"context": ".", "dockerfile": dockerfile}
        assert (REPO / dockerfile).is_file()


def test_model_init_flags_exist() -> None:
    # Each `python -m scripts.X --flag` in model-init's command is an option of that script.
    init = "\n".join(load_compose()["services"]["model-init"]["command"])
    calls = re.findall(r"python -m (scripts\.\w+)([^\n]*)", init)
    assert {module for module, _ in calls} == {"scripts.generate_data", "scripts.initial_training"}
    for module, args in calls:
        if not (REPO / (module.replace(".", "/") + ".py")).is_file():
            continue  # not written yet: the entry point test above holds the name
        helptext = subprocess.run(
            [sys.executable, "-m", module, "--help"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        for flag in re.findall(r"--[a-z][a-z0-9-]*", args):
            assert flag in helptext, f"{module} has no {flag}"


@pytest.mark.parametrize("name", sorted(SCRIPT_SERVICES))
def test_script_services_run_their_script_with_flags_it_has(name: str) -> None:
    service = load_compose()["services"][name]
    dockerfile, module = SCRIPT_SERVICES[name]
    assert service["build"] == {"context": ".", "dockerfile": dockerfile}
    assert service["image"] == load_compose()["services"]["incremental-trainer"]["image"]
    script = "\n".join(service["command"])
    assert f"python -m {module}" in script
    helptext = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO,
                              capture_output=True, text=True, timeout=120, check=True).stdout
    for flag in set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", script)):
        assert flag in helptext, f"{module} has no {flag}"
    # its healthcheck reads the file the script is told to beat
    env = service_env(service)
    check = service["healthcheck"]["test"]
    variable = check[-3]
    assert check[-4] == "heartbeat" and variable.endswith("_HEARTBEAT_FILE")
    assert check[-2] == env[variable]
    assert f'--heartbeat-file "$${{{variable}}}"' in script


def test_compose_long_running_services_restart_and_have_healthchecks() -> None:
    services = load_compose()["services"]
    for name, service in services.items():
        if name in ONE_SHOT_SERVICES:
            continue
        assert service.get("restart") in {"unless-stopped", "always"}, name
        check = service.get("healthcheck")
        if check is None and name in APP_SERVICES:
            continue  # the Dockerfile's HEALTHCHECK applies (checked below)
        assert check and check.get("test") and not check.get("disable"), name


def test_compose_images_are_pinned() -> None:
    for name, service in load_compose()["services"].items():
        if "build" in service:
            # The project's own images: IMAGE_TAG is required, never latest.
            assert service["image"].endswith(":${IMAGE_TAG:?set IMAGE_TAG, the tag of the images built here}"), name
            continue
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and "/" not in tag, f"{name}: {image}"


def test_compose_models_volume_is_shared() -> None:
    compose = load_compose()
    assert "models" in compose["volumes"]
    mounts = {
        name: [m for m in service.get("volumes", []) if m.startswith("models:")]
        for name, service in compose["services"].items()
    }
    assert mounts["model-init"] == ["models:/app/models"]
    assert mounts["incremental-trainer"] == ["models:/app/models"]
    assert mounts["triplet-trainer"] == ["models:/app/models"]  # writes models/spaces/triplet
    assert mounts["two-tower-trainer"] == ["models:/app/models"]  # models/spaces/two_tower
    assert mounts["faiss-app"] == ["models:/app/models:ro"]
    assert mounts["recommender-app"] == ["models:/app/models:ro"]  # the two-tower encoder


def test_faiss_app_can_be_scaled() -> None:
    faiss = load_compose()["services"]["faiss-app"]
    # A published host port or a fixed container name would make `--scale faiss-app=N` fail.
    assert "ports" not in faiss and "container_name" not in faiss


def test_compose_mounts_grafana_and_statsd_files_that_exist() -> None:
    for name, service in load_compose()["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
    graphite = load_compose()["services"]["graphite"]
    assert "./grafana/statsd/udp.js:/opt/statsd/config/udp.js:ro" in graphite["volumes"]


def test_no_registry_hosts_or_machine_paths_in_deploy_files() -> None:
    files = [COMPOSE_FILE, REPO / ".dockerignore", *(REPO / p for p in DOCKERFILES)]
    files += sorted(p for p in (REPO / "grafana").rglob("*.*") if "node_modules" not in p.parts)
    services = set(load_compose()["services"])
    torch_dockerfile = REPO / APP_SERVICES["incremental-trainer"]
    for path in files:
        text = path.read_text()
        if path == torch_dockerfile:
            # The one index the images need: PyTorch's CPU wheels (see the test below).
            text = text.replace(f"ARG TORCH_INDEX_URL={TORCH_CPU_INDEX}", "")
            text = text.replace('--index-url "${TORCH_INDEX_URL}"', "")
        assert "index-url" not in text.lower().replace("pip_extra_index_url", ""), path
        # URLs only to loopback or to a service on the compose network, never to a registry.
        for host in re.findall(r"https?://([A-Za-z0-9_.\-]+)", text):
            assert host == "127.0.0.1" or host in services, f"{path}: {host}"
        assert not re.search(r"(?<![\w.])/(home|root|Users|work)/", text), path


# ---------------------------------------------------------------------- Dockerfiles

TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def test_trainer_image_takes_torch_from_the_cpu_wheel_index() -> None:
    instructions = dockerfile_instructions(REPO / APP_SERVICES["incremental-trainer"])
    args = [a for k, a in instructions if k == "ARG"]
    assert f"TORCH_INDEX_URL={TORCH_CPU_INDEX}" in args
    runs = " ".join(a for k, a in instructions if k == "RUN")
    torch_first = runs.index('--index-url "${TORCH_INDEX_URL}"')
    assert torch_first < runs.index("pip install -r /tmp/requirements.txt")
    for name in ("faiss-app", "recommender-app"):
        steps = " ".join(a for _k, a in dockerfile_instructions(REPO / APP_SERVICES[name]))
        assert "torch" not in steps.lower(), name


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_installs_its_own_requirements_file(dockerfile: str) -> None:
    image = Path(dockerfile).name.removesuffix(".Dockerfile")
    copies = [a for k, a in dockerfile_instructions(REPO / dockerfile) if k == "COPY"]
    assert f"Dockerfiles/requirements/{image}.txt /tmp/requirements.txt" in copies


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_copy_sources_exist_and_are_in_the_context(dockerfile: str) -> None:
    for keyword, args in dockerfile_instructions(REPO / dockerfile):
        if keyword not in {"COPY", "ADD"}:
            continue
        for source in copy_sources(args):
            assert (REPO / source).exists(), f"{dockerfile}: COPY {source} does not exist"
            assert not dockerignored(source), f"{dockerfile}: {source} is in .dockerignore"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_runs_as_non_root_with_a_healthcheck(dockerfile: str) -> None:
    instructions = dockerfile_instructions(REPO / dockerfile)
    final_stage = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    users = [args for keyword, args in final_stage if keyword == "USER"]
    assert users, f"{dockerfile} has no USER in its final stage"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert any(keyword == "HEALTHCHECK" for keyword, _ in final_stage)
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert all(f.split()[0] == "python:3.11-slim" for f in froms)
    runs = " ".join(args for keyword, args in instructions if keyword == "RUN")
    assert "pip install -r /tmp/requirements.txt" in runs


@pytest.mark.parametrize(
    ("dockerfile", "module"),
    [
        ("Dockerfiles/faiss_app.Dockerfile", "services.faiss_app.wsgi:app"),
        ("Dockerfiles/recommender_app.Dockerfile", "services.recommender_app.wsgi:app"),
        ("Dockerfiles/incremental_trainer.Dockerfile", "services.incremental_trainer"),
    ],
)
def test_dockerfile_starts_its_service(dockerfile: str, module: str) -> None:
    instructions = dockerfile_instructions(REPO / dockerfile)
    cmd = [args for keyword, args in instructions if keyword == "CMD"][-1]
    assert module in cmd
    package = module.split(":")[0].rsplit(".", 1)[0] if ":" in module else module
    copied = {s.rstrip("/") for k, a in instructions if k == "COPY" for s in copy_sources(a)}
    assert package.replace(".", "/") in copied
    assert {"shared", "services/__init__.py"} <= copied
    if "incremental_trainer" in dockerfile:
        assert "scripts" in copied  # model-init runs scripts.* from this image
    words = json.loads(cmd) if cmd.startswith("[") else shlex.split(cmd)
    if words[:2] == ["sh", "-c"]:
        words = shlex.split(words[2])
    if (
        "gunicorn" in words and "-c" in words
    ):  # a gunicorn config file: it must exist and be inside a copied folder
        config = words[words.index("-c") + 1]
        assert (REPO / config).is_file(), config
        assert any(config == c or config.startswith(c + "/") for c in copied), config


def test_faiss_app_uses_its_gunicorn_config_when_present() -> None:
    config = REPO / "services" / "faiss_app" / "gunicorn.conf.py"
    cmd = [a for k, a in dockerfile_instructions(REPO / APP_SERVICES["faiss-app"]) if k == "CMD"]
    assert ("services/faiss_app/gunicorn.conf.py" in cmd[-1]) == config.is_file()


def test_dockerignore_keeps_secrets_and_bulk_out() -> None:
    for path in (".git", ".venv", "models", "data", ".env", "tests", "x/__pycache__"):
        assert dockerignored(path), path
    for path in ("shared/config.py", "services/faiss_app", "scripts", "requirements.txt"):
        assert not dockerignored(path), path


# --------------------------------------------------------------------- healthcheck.py


@pytest.fixture
def healthcheck() -> ModuleType:
    return load_module(REPO / "Dockerfiles" / "healthcheck.py", "recsys_healthcheck")


def test_healthcheck_http(healthcheck: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("TEST_HC_PORT", str(server.server_address[1]))
        assert healthcheck.main(["http", "TEST_HC_PORT", "1", "/healthz"]) == 0
        assert healthcheck.main(["http", "TEST_HC_PORT", "1", "/readyz"]) == 1
    finally:
        server.shutdown()
        server.server_close()
    assert healthcheck.main(["http", "TEST_HC_PORT", "1", "/healthz"]) == 1  # nobody listening
    assert healthcheck.main(["http"]) == 2


def test_healthcheck_heartbeat(
    healthcheck: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    beat = tmp_path / "beat"
    monkeypatch.setenv("TEST_HC_FILE", str(beat))
    assert healthcheck.main(["heartbeat", "TEST_HC_FILE", "unused", "60"]) == 1
    beat.touch()
    assert healthcheck.main(["heartbeat", "TEST_HC_FILE", "unused", "60"]) == 0
    old = time.time() - 120
    os.utime(beat, (old, old))
    assert healthcheck.main(["heartbeat", "TEST_HC_FILE", "unused", "60"]) == 1


def test_healthchecks_in_compose_and_dockerfiles_agree() -> None:
    services = load_compose()["services"]
    for name, dockerfile in APP_SERVICES.items():
        compose_test = services[name]["healthcheck"]["test"]
        docker_check = [
            a for k, a in dockerfile_instructions(REPO / dockerfile) if k == "HEALTHCHECK"
        ][0]
        assert json.loads(docker_check.split("CMD", 1)[1]) == compose_test[1:], name


# ------------------------------------------------------------------------ Grafana


def test_grafana_provisioning_parses_and_points_at_graphite() -> None:
    datasources = yaml.safe_load(DATASOURCE_FILE.read_text())["datasources"]
    assert len(datasources) == 1
    graphite = datasources[0]
    assert graphite["type"] == "graphite"
    assert urlsplit(graphite["url"]).hostname in load_compose()["services"]
    providers = yaml.safe_load(DASHBOARD_PROVIDER_FILE.read_text())["providers"]
    grafana_mounts = load_compose()["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{providers[0]['options']['path']}:ro" in grafana_mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana_mounts


def test_dashboard_panels_use_the_provisioned_datasource() -> None:
    uid = yaml.safe_load(DATASOURCE_FILE.read_text())["datasources"][0]["uid"]
    dashboard = load_dashboard()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] in {"row", "alertlist"}:  # an alert list reads Grafana's own rules
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid
            assert graphite_paths(target["target"]), target["target"]


def test_statsd_config_keeps_the_namespace_the_dashboard_reads() -> None:
    config = statsd_config()
    assert config.get("graphite", {}).get("legacyNamespace", True) is True
    assert config.get("graphite", {}).get("globalPrefix", "stats") == "stats"
    assert {"90", "99"} <= percent_thresholds()
    assert config["port"] == int(
        service_env(load_compose()["services"]["faiss-app"])["RECSYS_STATSD_PORT"]
    )


def test_every_dashboard_metric_is_in_the_catalogue_with_its_kind() -> None:
    dashboard = load_dashboard()
    prefix = dashboard_prefix(dashboard)
    for title, target in dashboard_targets(dashboard):
        for path in graphite_paths(target):
            try:
                metric_for_path(path, prefix)
            except DashboardPathError as exc:
                pytest.fail(f"panel {title!r}: {exc}")


def test_dashboard_covers_the_platform() -> None:
    used = set(dashboard_metrics())
    wanted = {
        "trainer.events",
        "trainer.lag.{instance}",
        "trainer.heartbeat",
        "trainer.snapshot_age_s.{instance}",
        "trainer.freshness_ms",
        "faiss.update_lag_ms",
        "faiss.model_age_s.{instance}",
        "api.server_errors",
        "api.recommend.degraded",
        "trainer.prequential.recall_at_10.{instance}",
        "trainer.prequential.popularity_recall_at_10.{instance}",
        "trainer.growth.{table}",
        "trainer.dlq",
        "api.recommend.source_ms.{source}",
        "api.{endpoint}.requests",
        "api.errors.{code}",
        "api.degraded.{dependency}",
        "faiss.search_ms",
        "faiss.index_size.{instance}",
    }
    assert wanted <= used, wanted - used
    assert used <= set(CATALOGUE)


def test_every_catalogue_metric_has_a_panel() -> None:
    missing = sorted(set(CATALOGUE) - set(dashboard_metrics()))
    assert not missing, f"add a target for these to grafana/dashboards/recsys.json: {missing}"


@pytest.mark.parametrize(
    ("path", "name", "kind", "stat"),
    [
        ("stats.recsys.trainer.events", "trainer.events", "counter", None),
        ("stats_counts.$prefix.trainer.growth.*", "trainer.growth.{table}", "counter", None),
        ("stats.gauges.recsys.trainer.lag.*", "trainer.lag.{instance}", "gauge", None),
        ("stats.timers.${prefix}.api.*.ms.upper_99", "api.{endpoint}.ms", "timer", "upper_99"),
        ("stats.timers.recsys.faiss.search_ms.median", "faiss.search_ms", "timer", "median"),
    ],
)
def test_metric_path_parser_maps_paths(path: str, name: str, kind: str, stat: str | None) -> None:
    spec, got_kind, got_stat = metric_for_path(path, "recsys")
    assert (spec.name, got_kind, got_stat) == (name, kind, stat)


@pytest.mark.parametrize(
    "path",
    [
        "stats.timers.recsys.faiss.index_size.median",  # a gauge read as a timer
        "stats.gauges.recsys.trainer.events",  # a counter read as a gauge
        "stats.recsys.faiss.search_ms",  # a timer read as a counter
        "stats.timers.recsys.faiss.search_ms.upper_75",  # percentile statsd does not compute
        "stats.gauges.recsys.trainer.lag",  # a gauge without its instance segment
        "stats.timers.recsys.faiss.search_ms.p99",  # not a statsd statistic
        "stats.recsys.trainer.*",  # wildcard over a fixed segment
        "stats.recsys.nothing.here",  # not catalogued
        "stats.other.trainer.events",  # wrong prefix
        "carbon.agents.x",  # not statsd
    ],
)
def test_metric_path_parser_rejects_bad_paths(path: str) -> None:
    with pytest.raises(DashboardPathError):
        metric_for_path(path, "recsys")


def test_graphite_paths_are_found_inside_functions() -> None:
    target = "aliasSub(stats.timers.$prefix.api.*.ms.median, '^.*\\.api\\.([^.]+)$', '\\1 p50')"
    assert graphite_paths(target) == ["stats.timers.$prefix.api.*.ms.median"]
    assert graphite_paths("sumSeries(stats_counts.recsys.a, stats.gauges.recsys.b)") == [
        "stats_counts.recsys.a",
        "stats.gauges.recsys.b",
    ]


# ------------------------------------------------------------------ emitted by code


_STRING_LITERAL = re.compile(r"[\"']([A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)+)[\"']")


def _emitted(name: str, sources: dict[Path, str]) -> bool:
    """Whether some source emits ``name``.

    A gauge ``<name>.{instance}`` is emitted as ``<name>`` (``Metrics.gauge`` adds the instance).

    Accepted: a string literal that is the name or a filled-in instance of it
    (``"trainer.capacity.users"`` for ``trainer.capacity.{table}``), an f-string with
    expressions in the placeholders (``f"api.{endpoint}.ms"``), or the quoted fixed prefix
    before the first placeholder (``"trainer.growth." + table``).
    """
    suffix = "." + INSTANCE
    gauge = name.endswith(suffix) and CATALOGUE[name].kind == "gauge"
    for text in sources.values():
        for literal in _STRING_LITERAL.findall(text):
            try:
                if spec_for(literal + ".host-1" if gauge else literal).name == name:
                    return True
            except UnknownMetricError:
                pass
    if gauge:
        name = name[: -len(suffix)]
    if "{" not in name:
        return False
    parts = re.split(r"\{[a-z_]+\}", name)
    fstring = re.compile(r"\{[^{}]+\}".join(re.escape(p) for p in parts))
    quoted_head = re.compile(rf"[\"']{re.escape(parts[0])}[\"']")
    return any(fstring.search(text) or quoted_head.search(text) for text in sources.values())


def test_every_dashboard_metric_is_emitted_by_the_code() -> None:
    sources = {
        path: path.read_text()
        for folder in ("services", "shared")
        for path in (REPO / folder).rglob("*.py")
        if path != REPO / "shared" / "metrics.py"
    }
    missing = sorted(name for name in dashboard_metrics() if not _emitted(name, sources))
    assert not missing, f"on the dashboard but emitted nowhere: {missing}"


@pytest.mark.parametrize(
    ("source", "name", "emitted"),
    [
        ('m.incr("trainer.events")', "trainer.events", True),
        ('m.gauge("trainer.capacity.users", n)', "trainer.capacity.{table}.{instance}", True),
        ('m.gauge("trainer.lag", n)', "trainer.lag.{instance}", True),
        ('m.incr("trainer.lag")', "trainer.heartbeat", False),
        ('m.timing(f"api.{endpoint}.ms", ms)', "api.{endpoint}.ms", True),
        ('m.incr("trainer.growth." + table)', "trainer.growth.{table}", True),
        ('m.incr("trainer.events_total")', "trainer.events", False),
        ("# trainer.events in a comment", "trainer.events", False),
        ('m.timing(f"api.{endpoint}.ms", ms)', "api.dependency.{dependency}.ms", False),
    ],
)
def test_emitted_matcher(source: str, name: str, emitted: bool) -> None:
    assert _emitted(name, {Path("x.py"): source}) is emitted


# ------------------------------------------------------------------------ alert rules

ALERTS_FILE = REPO / "grafana" / "provisioning" / "alerting" / "recsys.yml"
# The alerts the on-call engineer relies on (issue 16), by rule uid.
REQUIRED_ALERTS = {
    "recsys-trainer-not-learning",
    "recsys-consumer-lag-growing",
    "recsys-freshness-p95",
    "recsys-error-ratio",
    "recsys-degraded-ratio",
    "recsys-faiss-update-lag",
}


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS_FILE.read_text())
    assert doc["apiVersion"] == 1
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_metric_paths(rule: dict[str, Any]) -> list[str]:
    return [
        path
        for query in rule["data"]
        if query["datasourceUid"] != "__expr__"
        for path in graphite_paths(query["model"]["target"])
    ]


def test_alert_rules_are_provisioned_for_every_required_condition() -> None:
    rules = alert_rules()
    uids = [rule["uid"] for rule in rules]
    assert len(uids) == len(set(uids))
    assert REQUIRED_ALERTS <= set(uids), REQUIRED_ALERTS - set(uids)
    graphite_uid = yaml.safe_load(DATASOURCE_FILE.read_text())["datasources"][0]["uid"]
    for rule in rules:
        refs = {query["refId"] for query in rule["data"]}
        assert rule["condition"] in refs, rule["uid"]
        for query in rule["data"]:
            assert query["datasourceUid"] in {graphite_uid, "__expr__"}, rule["uid"]
            model = query["model"]
            assert model["refId"] == query["refId"]
            if query["datasourceUid"] == "__expr__":
                # An expression reads only queries of the same rule.
                named = set(re.findall(r"\$([A-Z])\b", model["expression"]))
                named |= {model["expression"]} if model["type"] != "math" else set()
                assert named <= refs - {query["refId"]}, (rule["uid"], model["expression"])
        assert alert_metric_paths(rule), rule["uid"]
        assert rule["annotations"]["summary"] and rule["labels"]["severity"]


def test_alert_queries_name_catalogued_metrics_the_code_emits_and_the_dashboard_shows() -> None:
    prefix = service_env(load_compose()["services"]["recommender-app"])["RECSYS_STATSD_PREFIX"]
    sources = {
        path: path.read_text()
        for folder in ("services", "shared")
        for path in (REPO / folder).rglob("*.py")
        if path != REPO / "shared" / "metrics.py"
    }
    on_dashboard = dashboard_metrics()
    for rule in alert_rules():
        for path in alert_metric_paths(rule):
            try:
                spec, _kind, _stat = metric_for_path(path, prefix)
            except DashboardPathError as exc:
                pytest.fail(f"alert {rule['uid']}: {exc}")
            assert _emitted(spec.name, sources), f"alert {rule['uid']}: {spec.name} not emitted"
            assert spec.name in on_dashboard, f"alert {rule['uid']}: {spec.name} has no panel"


def test_grafana_mounts_the_alert_rules() -> None:
    assert ALERTS_FILE.is_file()
    mounts = load_compose()["services"]["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
