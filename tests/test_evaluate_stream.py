"""scripts.evaluate_stream on small files in every supported format, and on a known answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scripts import evaluate_stream

RANKERS = {"popularity", "gmf", "co_engagement", "trending", "popular", "new_items", "pipeline"}


def chain_walks(n_users: int = 150, n_items: int = 40, steps: int = 6, seed: int = 3
                ) -> list[tuple[int, int, int, int]]:
    """Users walk a ring of items one step at a time from a random start: the next item is
    always the one after the last, which only co-engagement can know."""
    rng = np.random.default_rng(seed)
    rows = []
    ts = 1_000_000_000  # seconds
    starts = rng.integers(0, n_items, n_users)
    for step in range(steps):
        for user in rng.permutation(n_users):
            rows.append((int(user) + 1, int((starts[user] + step) % n_items) + 1,
                         int(rng.integers(1, 6)), ts))
            ts += 60
    return rows


def write(path: Path, fmt: str, rows: list[tuple[int, int, int, int]]) -> Path:
    if fmt == "ml-100k":
        text = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)
    elif fmt == "ml-1m":
        text = "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows)
    elif fmt == "ml-csv":  # current MovieLens ratings.csv
        text = "userId,movieId,rating,timestamp\n" + "".join(
            f"{u},{i},{r}.0,{t}\n" for u, i, r, t in rows)
    else:  # the project's own CSV
        text = "user_id,item_id,event,ts\n" + "".join(
            f"u{u},i{i},view,{t * 1000}\n" for u, i, _, t in rows)
    path.write_text(text)
    return path


NAMES = {"ml-100k": "u.data", "ml-1m": "ratings.dat", "ml-csv": "ratings.csv",
         "csv": "interactions.csv"}


@pytest.mark.parametrize("fmt", list(NAMES))
def test_every_format_is_replayed_with_one_entry_per_ranker_on_the_same_events(
        tmp_path, fmt, capsys):
    source = write(tmp_path / NAMES[fmt], fmt, chain_walks())
    report_path = tmp_path / "report.json"
    assert evaluate_stream.main(["--input", str(source), "--report", str(report_path),
                                 "--no-progress"]) == 0  # --format auto detects each
    report = json.loads(report_path.read_text())
    rankers = report["rankers"]
    assert set(rankers) == RANKERS
    tested = {figures["tested"] for figures in rankers.values()}
    assert len(tested) == 1 and tested.pop() > 300
    for figures in rankers.values():
        assert 0.0 <= figures["ndcg_at_10"] <= figures["recall_at_10"] <= 1.0
    # Known answer: the next item is always co-engaged with the last one.
    assert rankers["co_engagement"]["recall_at_10"] > 0.8
    assert rankers["popularity"]["recall_at_10"] < 0.5
    assert rankers["pipeline"]["recall_at_10"] > rankers["popularity"]["recall_at_10"] + 0.3
    assert "pipeline" in capsys.readouterr().out


def test_warm_fraction_sample_rate_and_plot(tmp_path):
    source = write(tmp_path / "u.data", "ml-100k", chain_walks())
    report_path, plot_path = tmp_path / "r.json", tmp_path / "curves.png"
    assert evaluate_stream.main([
        "--input", str(source), "--warm-fraction", "0.5", "--sample-rate", "0.5",
        "--window", "50", "--report", str(report_path), "--plot", str(plot_path),
        "--no-progress"]) == 0
    report = json.loads(report_path.read_text())
    assert report["warm_fraction"] == 0.5
    assert 0 < report["rankers"]["pipeline"]["tested"] < 450
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys):
    assert evaluate_stream.main(["--input", str(tmp_path / "missing.csv")]) == 2
    source = write(tmp_path / "u.data", "ml-100k", chain_walks(n_users=5, steps=2))
    assert evaluate_stream.main(["--input", str(source), "--warm-fraction", "1.5"]) == 2
    assert "warm-fraction" in capsys.readouterr().err


def test_two_tower_and_triplet_spaces_as_sources_and_cold_start_slices(tmp_path: Path) -> None:
    from shared.data import SyntheticConfig, generate
    from shared.data.movielens_writer import write_movielens_100k

    frame, items = generate(SyntheticConfig(n_users=150, n_items=80, n_events=3000, seed=5))
    write_movielens_100k(frame, items, tmp_path)  # u.item beside u.data: found by name
    out = tmp_path / "report.json"
    assert evaluate_stream.main(["--input", str(tmp_path / "u.data"), "--warm-fraction", "0.6",
                                 "--two-tower", "--triplet", "--two-tower-retrains", "2",
                                 "--no-progress", "--report", str(out)]) == 0
    report = json.loads(out.read_text())
    assert "two_tower" in report["rankers"] and report["two_tower"]["items_with_features"] == 80
    # trained on the prefix, then re-trained twice over the stream's event time
    assert len(report["two_tower"]["train_seconds"]) == 1 + 2
    assert report["triplet"]["n_pairs"] > 0 and report["triplet"]["features"]
    # each space is a source of the pipeline: measured alone, and a column of the ranker
    assert RANKERS | {"two_tower", "triplet"} == set(report["rankers"])
    assert {"rank:two_tower", "rank:triplet"} <= set(report["ranker"]["features"])
    assert report["rankers"]["triplet"]["recall_at_10"] > 0
    assert set(report["slices"]) == {"cold_items", "cold_users"}
    for part in report["slices"].values():
        assert {"two_tower", "triplet", "pipeline"} <= set(part)
    tested = report["rankers"]["two_tower"]["tested"]
    assert 0 < report["slices"]["cold_users"]["two_tower"]["tested"] <= tested
    assert report["rankers"]["two_tower"]["tested"] == report["rankers"]["pipeline"]["tested"]
    # without a warm prefix there is nothing to train the spaces on
    for flag in ("--two-tower", "--triplet"):
        assert evaluate_stream.main(["--input", str(tmp_path / "u.data"), flag,
                                     "--no-progress"]) == 2


@pytest.mark.parametrize("batch_size", [1, 8])
def test_each_tested_event_is_scored_on_the_state_before_its_micro_batch(batch_size):
    """The test-then-train rule of the micro-batch replay: when an event is tested, the learner
    and the ranking stores have learned exactly the events of the earlier batches."""
    import dataclasses

    from services.incremental_trainer.learner import Learner, ModelState
    from services.incremental_trainer.ranking_replay import RankingReplay
    from shared.config import Settings
    from shared.events import Interaction

    settings = Settings.from_env({})
    model = dataclasses.replace(settings.model, models_dir=Path("/nonexistent/models"))
    learner = Learner(ModelState.load_or_create(model),
                      dataclasses.replace(settings.trainer, eval_sample_rate=0.0), 3600.0)
    replay = RankingReplay(learner, settings.ranking, 3600.0, batch_size=batch_size)
    events = [Interaction(f"u{u}", f"i{i}", "view", 1_000_000 + 1000 * n)
              for n, (u, i, _, _) in enumerate(chain_walks(n_users=20, n_items=12, steps=4))]
    position = {id(e): n for n, e in enumerate(events)}
    learned = {"learner": 0, "store_ts": 0}
    seen_at_test: list[tuple[int, int, int]] = []
    learn, apply, test = learner.learn, replay.store.apply, replay._test

    def counting_learn(batch):
        learned["learner"] += len(batch)
        return learn(batch)

    def counting_apply(signals):
        learned["store_ts"] = signals.ts_ms  # the newest event the stores have learned
        return apply(signals)

    def recording_test(event):
        seen_at_test.append((position[id(event)], learned["learner"], learned["store_ts"]))
        return test(event)

    learner.learn, replay.store.apply, replay._test = counting_learn, counting_apply, recording_test
    replay.run(events)
    assert len(seen_at_test) > 20
    for n, by_learner, store_ts in seen_at_test:
        batch_start = n - n % batch_size
        assert by_learner == batch_start
        assert store_ts == events[batch_start - 1].ts
    assert replay.report()["batch_size"] == batch_size


def test_the_served_diversity_rule_is_measured_when_configured(tmp_path, monkeypatch):
    """RECSYS_RANKING_MMR_LAMBDA reaches the replay's rerank: more categories per served list
    (the ring's items come in category blocks, so a relevance-only list stays in few)."""
    source = write(tmp_path / "u.data", "ml-100k", chain_walks())
    items = tmp_path / "items.csv"
    items.write_text("item_id,title,category\n" + "".join(
        f"{i},Item {i},block{(i - 1) // 10}\n" for i in range(1, 41)))
    reports = {}
    for mmr in ("1", "0.2"):
        monkeypatch.setenv("RECSYS_RANKING_MMR_LAMBDA", mmr)
        out = tmp_path / f"mmr{mmr}.json"
        assert evaluate_stream.main(["--input", str(source), "--items", str(items),
                                     "--no-progress", "--report", str(out)]) == 0
        reports[mmr] = json.loads(out.read_text())
    off, on = reports["1"], reports["0.2"]
    assert on["mmr_lambda"] == 0.2 and off["mmr_lambda"] == 1.0
    assert (on["pipeline_distinct_categories_at_10"]
            > off["pipeline_distinct_categories_at_10"] + 0.5)
    assert on["rankers"]["co_engagement"] == off["rankers"]["co_engagement"]  # same events
