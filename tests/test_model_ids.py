"""Id maps: vocabulary rows are unique, hashed rows may be shared."""

from __future__ import annotations

import pytest

from shared.config import ModelSettings
from shared.model.ids import HashIdMap, VocabIdMap, id_map_from_settings, make_id_map


def test_vocab_rows_are_positions_and_never_shared() -> None:
    vocab = VocabIdMap(["a", "b"])
    assert vocab.row("a") == 0 and vocab.row("c") == 2 and vocab.row("b") == 1
    assert vocab.row("zzz", create=False) is None and "zzz" not in vocab
    rows = vocab.rows([f"x{i}" for i in range(500)])
    assert len(set(rows.tolist())) == 500 and len(vocab) == 503
    assert vocab.ids[rows[7]] == "x7"
    assert vocab.required_rows == 503
    assert vocab.rows(["a", "nope"], create=False).tolist() == [0, -1]
    again = VocabIdMap.from_json(vocab.to_json())
    assert again.ids == vocab.ids
    with pytest.raises(ValueError):
        VocabIdMap(["a", "a"])


def test_hash_rows_are_stable_bounded_and_can_be_shared() -> None:
    hashed = HashIdMap(hash_buckets=8)
    rows = hashed.rows([f"user-{i}" for i in range(100)])
    assert rows.min() >= 0 and rows.max() < 8
    assert len(set(rows.tolist())) < 100  # 100 ids into 8 buckets must share rows
    assert len(hashed) == 100 and hashed.required_rows == rows.max() + 1
    assert hashed.row("never-seen", create=False) is None
    again = HashIdMap.from_json(hashed.to_json(), 8)
    assert again.rows(again.ids, create=False).tolist() == rows.tolist()
    assert HashIdMap(1 << 20).row("user-1") == HashIdMap(1 << 20).row("user-1")


def test_factory_follows_settings() -> None:
    assert isinstance(id_map_from_settings(ModelSettings(id_mode="vocab")), VocabIdMap)
    hashed = id_map_from_settings(ModelSettings(id_mode="hash", hash_buckets=64), ["a"])
    assert isinstance(hashed, HashIdMap) and hashed.hash_buckets == 64 and len(hashed) == 1
    with pytest.raises(ValueError):
        make_id_map("bogus")
