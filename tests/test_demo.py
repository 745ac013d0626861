"""`make demo` in its shortened mode on a MovieLens ratings.csv + movies.csv, end to end,
stopped with a real Ctrl-C (SIGINT); the API port choice."""

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts import demo
from scripts.demo import choose_api_port
from scripts.processes import ProcessGroup

REPO = Path(__file__).resolve().parent.parent


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # Servers name the work dir on their command line; services in their env.
                seen = b"".join((entry / f).read_bytes() for f in ("cmdline", "environ"))
            except OSError:
                continue
            if text.encode() in seen and int(entry.name) != os.getpid():
                found.append(int(entry.name))
    return found


def write_movielens(folder: Path) -> tuple[Path, Path]:
    """A small ml-latest-style ratings.csv (users with taste groups) and its movies.csv."""
    rng = random.Random(3)
    n_users, n_movies, groups = 300, 240, 6
    lines, t = ["userId,movieId,rating,timestamp"], 1_200_000_000
    for _ in range(12000):
        user = rng.randrange(1, n_users + 1)
        movie = (rng.randrange(n_movies // groups) * groups + user % groups + 1
                 if rng.random() < 0.85 else rng.randrange(1, n_movies + 1))
        t += rng.randrange(1, 120)
        lines.append(f"{user},{movie},{rng.choice(['3.0', '3.5', '4.0', '4.5', '5.0'])},{t}")
    ratings, movies = folder / "ratings.csv", folder / "movies.csv"
    ratings.write_text("\n".join(lines) + "\n")
    genres = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]
    movies.write_text("movieId,title,genres\n" + "".join(
        f'{m},"Film {m}, The (2001)",{genres[(m - 1) % groups]}|Drama\n'
        for m in range(1, n_movies + 1)))
    return ratings, movies


def test_api_port_is_the_usual_one_unless_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        port, note = choose_api_port(None, busy)
        assert port != busy and note == f"port {busy} is taken, so the API is on port {port} instead"
    assert choose_api_port(None, busy) == (busy, None)  # free again
    assert choose_api_port(1234, busy) == (1234, None)  # asked for


def test_api_retries_on_a_free_port_when_gunicorn_cannot_bind_the_usual_one(
    stack_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Another program takes the port after the check (the check is made to miss it): the
    demo's judge is gunicorn's own bind, and it moves to a free port and says so."""
    monkeypatch.setattr(demo, "port_is_free", lambda _port: True)
    with socket.socket() as taken, ProcessGroup(stack_env, tmp_path) as group:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        child, port = demo.start_api(group, None, busy)
        assert port != busy and child.running() and group.children == [child]
        assert f"port {busy} is taken, so the API is on port {port} instead" in \
            capsys.readouterr().out
        log = (tmp_path / "recommender_app.log").read_text(errors="replace")
        assert f"Listening at: http://127.0.0.1:{port}" in log
        assert f"Listening at: http://127.0.0.1:{busy}" not in log


@pytest.mark.timeout(420)
def test_demo_runs_the_platform_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    ratings, movies = write_movielens(tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "scripts.demo", "--quick", "--duration", "300",
         "--work-dir", str(work), "--dataset", str(ratings), "--items", str(movies)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 300
    assert demo.stdout is not None
    try:
        for line in demo.stdout:
            lines.append(line)
            learned = re.match(r"events\s+(\d+)", line)
            if learned and int(learned.group(1)) > 0 and "freshness -" not in line:
                break  # the trainer learns from the stream and a freshness probe came back
            if time.monotonic() > deadline:
                break
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=90)
    finally:
        if demo.poll() is None:
            demo.kill()
    output = "".join(lines) + rest
    assert demo.returncode == 0, output
    assert "ratings.csv: format ml-csv, 12000 rows read, 12000 loaded" in output
    assert "movies.csv: format ml-csv-items, 240 rows read, 240 loaded" in output
    port = re.search(r"recommender_app on :(\d+)", output).group(1)
    assert port == "8080" or f"port 8080 is taken, so the API is on port {port}" in output
    assert f"curl 'http://127.0.0.1:{port}/recommend?k=5'" in output
    assert "[6/6] sample recommendations:" in output, output
    assert re.search(r"\[personalized, model \d{8}T\d{6}Z-[0-9a-f]{6}, degraded=False\]", output)
    assert "[popular" in output
    assert "all stopped" in output
    if "running without metrics" not in output:  # node present: the dashboard PNG is drawn
        drawn = re.search(r"^dashboard: (\S+\.png)$", output, re.MULTILINE)
        assert drawn, output
        assert Path(drawn.group(1)).read_bytes()[:4] == b"\x89PNG"
    assert _processes_mentioning(str(work)) == [], "the demo left processes behind"
