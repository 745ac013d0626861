"""`make demo` in its shortened mode, end to end, stopped with a real Ctrl-C (SIGINT)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


@pytest.mark.timeout(420)
def test_demo_runs_the_platform_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "scripts.demo", "--quick", "--duration", "300",
         "--work-dir", str(work)],
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
    assert "[6/6] sample recommendations:" in output, output
    assert re.search(r"\[personalized, model \d{8}T\d{6}Z-[0-9a-f]{6}, degraded=False\]", output)
    assert "[popular" in output
    assert "all stopped" in output
    if "running without metrics" not in output:  # node present: the dashboard PNG is drawn
        drawn = re.search(r"^dashboard: (\S+\.png)$", output, re.MULTILINE)
        assert drawn, output
        assert Path(drawn.group(1)).read_bytes()[:4] == b"\x89PNG"
    assert _processes_mentioning(str(work)) == [], "the demo left processes behind"
