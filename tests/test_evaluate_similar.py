"""scripts.evaluate_similar end to end on a small MovieLens-format file the test writes."""

from __future__ import annotations

import json
from pathlib import Path

from scripts import evaluate_similar
from tests.test_model_triplet import grouped_log


def write_movielens(path: Path) -> None:
    """The grouped log as ml-100k ``u.data``: user, item, rating, seconds (tab separated)."""
    log = grouped_log(n_users=240, events=10, seed=3)
    with path.open("w") as out:
        for row in log.itertuples():
            out.write(f"{row.user_id[1:]}\t{row.item_id[1:]}\t4\t{row.ts // 1000}\n")


def test_report_has_every_method_on_the_same_tested_pairs(tmp_path: Path, capsys) -> None:
    data = tmp_path / "u.data"
    write_movielens(data)
    report = tmp_path / "similar.json"
    code = evaluate_similar.main([
        "--input", str(data), "--report", str(report), "--train-fraction", "0.7",
        "--epochs", "6", "--hard-after", "2", "--dim", "8", "--gmf-epochs", "3",
        "--gmf-dim", "8", "--no-progress", "--threads", "1",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    body = json.loads(report.read_text())
    assert set(body["methods"]) == {"popularity", "cooccurrence", "gmf_cosine", "triplet"}
    assert body["tested"] > 100
    for figures in body["methods"].values():
        assert set(figures) == {"hr_at_10", "ndcg_at_10"}
        assert 0.0 <= figures["ndcg_at_10"] <= figures["hr_at_10"] <= 1.0
    # 40 items in 4 browsing groups: a top-10 within the right group hits far above chance
    assert body["methods"]["triplet"]["hr_at_10"] > body["methods"]["popularity"]["hr_at_10"]
    assert body["methods"]["cooccurrence"]["hr_at_10"] > 0.5
    assert "triplet" in capsys.readouterr().out


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys) -> None:
    code = evaluate_similar.main(["--input", str(tmp_path / "missing.csv"),
                                  "--report", str(tmp_path / "r.json")])  # fmt: skip
    assert code == 2 and "evaluate_similar:" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
