"""docker-compose's triplet-trainer, run as written (its shell script, outside Docker) against
the local stack: it trains the triplet space from the mounted MovieLens file, follows the
interactions topic from its oldest event, re-trains on file + topic and swaps the space, beats
its heartbeat, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from shared.config import Settings
from shared.events import Interaction
from shared.kafka import ensure_topics, flush_or_raise, make_producer, produce_blocking
from shared.model.triplet_space import TRIPLET_SPACE
from shared.snapshots import read_item_vectors, read_latest, read_manifest, resolve
from shared.spaces import space_models_dir
from tests.polling import wait_for
from tests.test_model_init import write_movielens

REPO = Path(__file__).resolve().parents[1]


def compose_service() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["triplet-trainer"]


def service_script() -> str:
    command = compose_service()["command"]
    assert command[:2] == ["sh", "-c"]
    return command[2].replace("$$", "$")  # compose's escape for a literal $


def test_triplet_trainer_service_trains_follows_retrains_and_stops(
    stack_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    inputs = tmp_path / "input"
    inputs.mkdir()
    write_movielens(inputs)  # 40 users × 12 ratings of 30 films, with titles and genres
    # An event on the topic before the service starts: --from-start must still read it.
    ensure_topics(settings.kafka, spaces=[TRIPLET_SPACE])
    producer = make_producer(settings.kafka)
    now_ms = int(time.time() * 1000)
    early = Interaction("1", "new-film", "click", now_ms - 60_000,
                        {"title": "Film Thirty One", "category": "Comedy"})  # fmt: skip
    produce_blocking(producer, settings.kafka.interactions_topic, early.user_id, early.to_bytes())
    flush_or_raise(producer, 10.0)

    heartbeat = tmp_path / "triplet.heartbeat"
    env = {**stack_env, "PYTHONPATH": str(REPO), "TRAIN_INPUT_DIR": str(inputs),
           "TRAIN_DATA": "ratings.csv", "TRAIN_ITEMS": "movies.csv", "TRAIN_FORMAT": "auto",
           "TRAIN_COLUMNS": "", "TRAIN_EVENTS": "", "TRIPLET_RETRAIN_EVERY_S": "2",
           "TRIPLET_HEARTBEAT_FILE": str(heartbeat),
           "TRIPLET_EXTRA_ARGS": "--epochs 2 --dim 8 --threads 1",
           # no faiss_app here: the reload fails, is logged, and the service carries on
           "RECSYS_FAISS_URL": "http://127.0.0.1:9", "RECSYS_FAISS_TIMEOUT_S": "0.5"}  # fmt: skip
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = tmp_path / "service.log"
    with log.open("w") as out:
        service = subprocess.Popen(["sh", "-c", service_script()], env=env, cwd=tmp_path,
                                   stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    folder = space_models_dir(Path(stack_env["RECSYS_MODELS_DIR"]), TRIPLET_SPACE)
    try:
        wait_for(lambda: folder.is_dir() and read_latest(folder), timeout_s=120,
                 what="the first snapshot")  # fmt: skip
        first = read_manifest(resolve(folder))["version"]
        # a later event, while the service runs, joins the next re-train too
        late = Interaction("2", "late-film", "view", now_ms)
        produce_blocking(producer, settings.kafka.interactions_topic, late.user_id,
                         late.to_bytes())  # fmt: skip
        flush_or_raise(producer, 10.0)

        def retrained_with_the_streamed_items() -> bool:
            latest = resolve(folder)
            if read_manifest(latest)["version"] == first:
                return False
            ids, _ = read_item_vectors(latest)
            trained = ids[: len(ids) - read_manifest(latest)["feature_only_items"]]
            # id rows of the model, not only features; new-film only --from-start could read
            return {"new-film", "late-film"} <= set(trained)

        wait_for(retrained_with_the_streamed_items, timeout_s=120,
                 what="a re-train that learned the streamed items from their events")  # fmt: skip
        assert time.time() - heartbeat.stat().st_mtime < 30
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=60) == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    text = log.read_text()
    assert "format ml-csv, 480 rows read, 480 loaded" in text
    assert "did not reload the triplet space" in text  # logged, not fatal
    compose = compose_service()
    assert compose["healthcheck"]["test"][-3:] == ["TRIPLET_HEARTBEAT_FILE",
                                                   compose["environment"]["TRIPLET_HEARTBEAT_FILE"],
                                                   "60"]  # fmt: skip
