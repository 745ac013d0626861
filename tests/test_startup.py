"""Configuration errors and entry points: one line listing every bad variable, exit status 2,
no traceback; --help that needs no valid settings; production refuses default secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import SECRET_MIN_LENGTH, ConfigError, Settings
from shared.startup import SERVICE_SECRETS, load_settings

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("faiss_app", "recommender_app", "incremental_trainer")
GOOD_KEY = "k" * SECRET_MIN_LENGTH
GOOD_TOKEN = "t" * SECRET_MIN_LENGTH
BAD_ENV = {"RECSYS_EMBEDDING_DIM": "abc", "RECSYS_REDIS_URL": "bar", "RECSYS_MONGO_URI": "foo"}


def run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    return subprocess.run(
        args, cwd=REPO, env={**clean, **env}, capture_output=True, text=True, timeout=timeout
    )


def test_every_bad_variable_is_listed_with_what_it_expects() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(BAD_ENV)
    problems = caught.value.problems
    assert len(problems) == 3
    for variable in BAD_ENV:
        (line,) = [p for p in problems if p.startswith(variable + "=")]
        assert "expects" in line
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RECSYS_MONGO_URI", "foo"),
        ("RECSYS_MONGO_URI", "http://mongo:27017"),
        ("RECSYS_REDIS_URL", "bar"),
        ("RECSYS_REDIS_URL", "redis://host:notaport/0"),
        ("RECSYS_FAISS_URL", "faiss-app:8081"),
        ("RECSYS_KAFKA_BOOTSTRAP_SERVERS", "kafka"),
        ("RECSYS_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092,broken"),
        ("RECSYS_STATSD_HOST", "udp://graphite:8125"),
        ("RECSYS_ENV", "staging"),
        ("RECSYS_LOG_LEVEL", "loud"),
    ],
)
def test_addresses_are_validated_at_start(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RECSYS_MONGO_URI", "mongodb+srv://user:pw@cluster.example/db"),
        ("RECSYS_REDIS_URL", "rediss://redis:6380/1"),
        ("RECSYS_REDIS_URL", "unix:///run/redis.sock"),
        ("RECSYS_FAISS_URL", "https://faiss-app:8443"),
        ("RECSYS_KAFKA_BOOTSTRAP_SERVERS", "k1:9092, k2:9092"),
    ],
)
def test_valid_addresses_are_accepted(variable: str, value: str) -> None:
    Settings.from_env({variable: value})


def test_a_uri_with_credentials_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RECSYS_MONGO_URI": "mongo://user:s3cret@host"})
    assert "s3cret" not in str(caught.value)


def test_production_refuses_default_and_empty_secrets_naming_them() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RECSYS_ENV": "production"})
    message = str(caught.value)
    assert "RECSYS_FAISS_ADMIN_TOKEN" in message and "default" in message
    assert "RECSYS_API_KEYS" in message and "empty" in message
    with pytest.raises(ConfigError, match="RECSYS_API_KEYS"):
        Settings.from_env(
            {
                "RECSYS_ENV": "production",
                "RECSYS_API_KEYS": "short",
                "RECSYS_FAISS_ADMIN_TOKEN": GOOD_TOKEN,
            }
        )


def test_production_starts_with_real_secrets_and_development_with_defaults() -> None:
    settings = Settings.from_env(
        {
            "RECSYS_ENV": "production",
            "RECSYS_API_KEYS": f"{GOOD_KEY}, {GOOD_KEY}2",
            "RECSYS_FAISS_ADMIN_TOKEN": GOOD_TOKEN,
        }
    )
    assert settings.access.api_keys == (GOOD_KEY, GOOD_KEY + "2")
    assert Settings.from_env({}).access.production is False


def test_secrets_come_from_files_docker_secrets_style(tmp_path: Path) -> None:
    keys, token = tmp_path / "keys", tmp_path / "token"
    keys.write_text(GOOD_KEY + "\n")
    token.write_text(GOOD_TOKEN + "\n")
    settings = Settings.from_env(
        {
            "RECSYS_ENV": "production",
            "RECSYS_API_KEYS_FILE": str(keys),
            "RECSYS_FAISS_ADMIN_TOKEN_FILE": str(token),
        }
    )
    assert settings.access.api_keys == (GOOD_KEY,)
    assert settings.faiss.admin_token == GOOD_TOKEN
    with pytest.raises(ConfigError, match="RECSYS_API_KEYS_FILE"):
        Settings.from_env({"RECSYS_API_KEYS_FILE": str(tmp_path / "missing")})


def test_a_bad_secret_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RECSYS_FAISS_ADMIN_TOKEN": "   "})
    assert "<hidden>" in str(caught.value)


@pytest.mark.parametrize("service", SERVICES)
def test_entry_point_help_needs_no_valid_settings(service: str) -> None:
    done = run([sys.executable, "-m", f"services.{service}", "--help"], BAD_ENV)
    assert done.returncode == 0, done.stderr
    assert f"python -m services.{service}" in done.stdout


@pytest.mark.parametrize("script", ["initial_training", "evaluate_offline"])
def test_script_help_needs_no_valid_settings_but_a_run_does(script: str) -> None:
    # Regression: these scripts built their parser from the settings, so --help exited 2.
    done = run([sys.executable, "-m", f"scripts.{script}", "--help"], BAD_ENV)
    assert done.returncode == 0, done.stderr
    assert f"python -m scripts.{script}" in done.stdout
    refused = run([sys.executable, "-m", f"scripts.{script}", "--input", "x.csv"], BAD_ENV)
    assert refused.returncode == 2
    assert "RECSYS_EMBEDDING_DIM" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_entry_point_bad_settings_print_one_line_and_exit_2(service: str) -> None:
    done = run([sys.executable, "-m", f"services.{service}"], BAD_ENV)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert all(variable in lines[0] for variable in BAD_ENV)


@pytest.mark.parametrize(
    ("service", "secret"),
    [("faiss_app", "RECSYS_FAISS_ADMIN_TOKEN"), ("recommender_app", "RECSYS_API_KEYS")],
)
def test_gunicorn_refuses_a_default_secret_in_production_before_any_worker(
    service: str, secret: str
) -> None:
    done = run(
        [
            sys.executable, "-m", "gunicorn",
            "-c", f"services/{service}/gunicorn.conf.py",
            f"services.{service}.wsgi:app",
        ],
        {"RECSYS_ENV": "production"},
        timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert secret in line and "Traceback" not in done.stderr
    assert SERVICE_SECRETS[service] == (secret,)  # and no other service's secret is asked for


def test_each_service_checks_only_its_own_secrets_in_production() -> None:
    env = {"RECSYS_ENV": "production", "RECSYS_API_KEYS": GOOD_KEY}
    assert load_settings("recommender_app", env).access.api_keys == (GOOD_KEY,)
    with pytest.raises(SystemExit) as exited:
        load_settings("faiss_app", env)  # its admin token is still the default
    assert exited.value.code == 2
    assert load_settings("incremental_trainer", {"RECSYS_ENV": "production"}).access.production


def test_trainer_start_up_says_why_it_starts_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from services.incremental_trainer.learner import ModelState
    from shared.config import ModelSettings

    missing = tmp_path / "not-mounted"
    with caplog.at_level("INFO"):
        state = ModelState.load_or_create(ModelSettings(models_dir=missing))
    assert not state.loaded_from_snapshot
    (record,) = [r for r in caplog.records if "empty model" in r.getMessage()]
    assert record.levelname == "WARNING" and "RECSYS_MODELS_DIR" in record.getMessage()
    caplog.clear()
    empty = tmp_path / "models"
    empty.mkdir()
    with caplog.at_level("INFO"):
        ModelState.load_or_create(ModelSettings(models_dir=empty))
    (record,) = [r for r in caplog.records if "empty model" in r.getMessage()]
    assert record.levelname == "INFO" and "no snapshot" in record.getMessage()
