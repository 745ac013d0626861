"""docker-compose's model-init step, run as written (its shell script, outside Docker) against
the local stack: a MovieLens ratings.csv + movies.csv mounted as input; no data → a clear error;
synthetic data only when asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from shared.storage import mongo

REPO = Path(__file__).resolve().parents[1]


def model_init_script() -> str:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    command = compose["services"]["model-init"]["command"]
    assert command[:2] == ["sh", "-c"]
    return command[2].replace("$$", "$")  # compose's escape for a literal $


def run_init(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {**env, "PYTHONPATH": str(REPO), "TRAIN_FORMAT": "auto", "TRAIN_FRACTION": "1.0",
            "TRAIN_SYNTHETIC": "false", "TRAIN_COLUMNS": "", "TRAIN_EVENTS": "",
            "TRAIN_ITEMS": "", "TRAIN_DATA": "", **{k: v for k, v in env.items()
                                                     if k.startswith("TRAIN_")}}
    full["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full.get('PATH', '')}"
    return subprocess.run(["sh", "-c", model_init_script()], env=full, cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


def write_movielens(folder: Path) -> None:
    lines = ["userId,movieId,rating,timestamp"]
    for user in range(1, 41):
        for n in range(12):
            movie = (user * 7 + n * 3) % 30 + 1
            lines.append(f"{user},{movie},{1 + (user + n) % 4}.{5 if n % 2 else 0},"
                         f"{964982703 + user * 1000 + n}")
    (folder / "ratings.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    movies = ["movieId,title,genres"] + [
        f'{m},"Film {m}, The (199{m % 10})",{"Comedy|Drama" if m % 2 else "Action"}'
        for m in range(1, 31)]
    (folder / "movies.csv").write_text("\n".join(movies) + "\n")


def test_model_init_trains_from_a_mounted_movielens_file(
    stack_env: dict[str, str], settings, tmp_path: Path
) -> None:
    inputs = tmp_path / "input"
    inputs.mkdir()
    write_movielens(inputs)
    env = {**stack_env, "TRAIN_INPUT_DIR": str(inputs), "TRAIN_DATA": "ratings.csv",
           "TRAIN_ITEMS": "movies.csv", "TRAIN_EXTRA_ARGS": "--epochs 2 --dim 8 --no-eval"}
    done = run_init(env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "format ml-csv, 480 rows read, 480 loaded" in done.stderr
    assert "format ml-csv-items" in done.stderr
    models = Path(stack_env["RECSYS_MODELS_DIR"])
    assert (models / "LATEST").read_text().strip()
    db = mongo.connect(settings.mongo)
    assert db[mongo.USERS].count_documents({}) == 40
    assert db[mongo.ITEMS].find_one({"_id": "3"})["title"] == "Film 3, The (1993)"
    assert db[mongo.ITEMS].find_one({"_id": "3"})["category"] == "Comedy"
    again = run_init(env, tmp_path)
    assert again.returncode == 0 and "already present" in again.stdout


def test_model_init_without_data_says_what_to_do(stack_env: dict[str, str], tmp_path: Path
                                                 ) -> None:
    done = run_init({**stack_env, "TRAIN_INPUT_DIR": str(tmp_path)}, tmp_path)
    assert done.returncode == 2
    assert "TRAIN_DATA" in done.stderr and "TRAIN_SYNTHETIC=true" in done.stderr
    assert not (Path(stack_env["RECSYS_MODELS_DIR"]) / "LATEST").exists()
