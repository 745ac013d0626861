"""The trainer's status file: counters and prequential figures as JSON, replaced atomically.

Read by the demo's live status line and by anyone who wants to know what the trainer is doing
without a statsd collector; its modification time doubles as a liveness heartbeat.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.atomic import write_text_atomic


class StatusFile:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, status: dict[str, Any]) -> None:
        write_text_atomic(self.path, json.dumps(status, sort_keys=True) + "\n")

    def read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
