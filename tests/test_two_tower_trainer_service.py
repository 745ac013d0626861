"""docker-compose's two-tower-trainer, run as written (its shell script, outside Docker) against
the local stack: it trains the two-tower space from the mounted MovieLens file, follows the
interactions topic from its oldest event, re-trains on file + topic + MongoDB's catalogue and
swaps the space, publishes the vector of a new item an event brings at once, beats its
heartbeat, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from services.recommender_app.two_tower import update_topic
from shared.config import Settings
from shared.events import Interaction
from shared.item_vectors import decode
from shared.kafka import ensure_topics, flush_or_raise, make_producer, produce_blocking
from shared.model.two_tower_snapshot import KNOWN_IDS, SPACE, space_dir
from shared.snapshots import (
    list_versions,
    read_item_vectors,
    read_json,
    read_latest,
    read_manifest,
    resolve,
)
from shared.storage import mongo
from tests.polling import wait_for
from tests.test_model_init import write_movielens
from tests.test_two_tower_serving import read_topic

REPO = Path(__file__).resolve().parents[1]


def compose_service() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"][
        "two-tower-trainer"]


def service_script() -> str:
    command = compose_service()["command"]
    assert command[:2] == ["sh", "-c"]
    return command[2].replace("$$", "$")  # compose's escape for a literal $


def test_two_tower_trainer_service_trains_follows_retrains_and_stops(
    stack_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    inputs = tmp_path / "input"
    inputs.mkdir()
    write_movielens(inputs)  # 40 users × 12 ratings of 30 films, with titles and genres
    ensure_topics(settings.kafka, spaces=[SPACE])
    producer = make_producer(settings.kafka)
    now_ms = int(time.time() * 1000)
    # Events on the topic before the service starts: --from-start must still read them.
    early = [Interaction(str(u), "new-film", "click", now_ms - 60_000 + u) for u in (1, 2, 3)]
    for event in early:
        produce_blocking(producer, settings.kafka.interactions_topic, event.user_id,
                         event.to_bytes())  # fmt: skip
    flush_or_raise(producer, 10.0)
    # an item only the catalogue knows (PUT /items writes MongoDB): embedded from its fields
    db = mongo.connect(settings.mongo)
    mongo.upsert_items(db, [{"item_id": "put-film", "title": "Film Put", "category": "Drama"}])
    db.client.close()

    heartbeat = tmp_path / "two-tower.heartbeat"
    env = {**stack_env, "PYTHONPATH": str(REPO), "TRAIN_INPUT_DIR": str(inputs),
           "TRAIN_DATA": "ratings.csv", "TRAIN_ITEMS": "movies.csv", "TRAIN_FORMAT": "auto",
           "TRAIN_COLUMNS": "", "TRAIN_EVENTS": "", "TWO_TOWER_RETRAIN_EVERY_S": "2",
           "TWO_TOWER_HEARTBEAT_FILE": str(heartbeat),
           "TWO_TOWER_EXTRA_ARGS": "--tt-epochs 2 --tt-dim 8 --threads 1",
           # no faiss_app here: the reload fails, is logged, and the service carries on
           "RECSYS_FAISS_URL": "http://127.0.0.1:9", "RECSYS_FAISS_TIMEOUT_S": "0.5"}  # fmt: skip
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = tmp_path / "service.log"
    with log.open("w") as out:
        service = subprocess.Popen(["sh", "-c", service_script()], env=env, cwd=tmp_path,
                                   stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    folder = space_dir(Path(stack_env["RECSYS_MODELS_DIR"]))
    try:
        wait_for(lambda: folder.is_dir() and read_latest(folder), timeout_s=120,
                 what="the first snapshot")  # fmt: skip
        first = read_manifest(resolve(folder))["version"]
        # an event that brings a new item's metadata: its vector goes out at once
        carried = Interaction("4", "evt-film", "view", now_ms,
                              {"title": "Film Event", "category": "Comedy"})  # fmt: skip
        produce_blocking(producer, settings.kafka.interactions_topic, carried.user_id,
                         carried.to_bytes())  # fmt: skip
        flush_or_raise(producer, 10.0)
        topic = update_topic(settings.kafka.item_vectors_topic)
        messages = read_topic(settings, topic, timeout_s=30)
        assert [m.key() for m in messages] == [b"evt-film"]
        update = decode(messages[0].key(), messages[0].value())
        assert update.vector is not None and update.model_version in list_versions(folder)

        def retrained_with_the_streamed_items() -> bool:
            latest = resolve(folder)
            if read_manifest(latest)["version"] == first:
                return False
            ids, _ = read_item_vectors(latest)
            # new-film has an id row (3 events, read only --from-start); put-film is embedded
            return ("new-film" in read_json(latest / KNOWN_IDS)["items"]
                    and {"new-film", "put-film"} <= set(ids))

        wait_for(retrained_with_the_streamed_items, timeout_s=120,
                 what="a re-train that learned the streamed item from its events")  # fmt: skip
        assert time.time() - heartbeat.stat().st_mtime < 30
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=120) == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    text = log.read_text()
    assert "format ml-csv, 480 rows read, 480 loaded" in text
    assert "did not reload the two_tower space" in text  # logged, not fatal
    compose = compose_service()
    assert compose["healthcheck"]["test"][-3:] == [
        "TWO_TOWER_HEARTBEAT_FILE", compose["environment"]["TWO_TOWER_HEARTBEAT_FILE"], "60"]
