"""Container health checks for the recsys images (standard library only: the slim image has no curl).

    recsys-healthcheck http PORT_VARIABLE DEFAULT_PORT PATH
        healthy when GET http://127.0.0.1:<port><path> answers 2xx within 2 s; the port is read
        from the environment variable PORT_VARIABLE (the same RECSYS_* setting the service
        binds to), DEFAULT_PORT when unset.
    recsys-healthcheck heartbeat FILE_VARIABLE DEFAULT_FILE MAX_AGE_S
        healthy when the file named by FILE_VARIABLE (DEFAULT_FILE when unset) was modified
        less than MAX_AGE_S seconds ago: the incremental trainer touches it from its poll loop.

Exit status 0 = healthy, 1 = unhealthy (what Docker's HEALTHCHECK expects).
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request


def check_http(port_variable: str, default_port: str, path: str) -> str | None:
    port = os.environ.get(port_variable) or default_port
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=2.0) as resp:  # noqa: S310 (loopback only)
            if 200 <= resp.status < 300:
                return None
            return f"{url} answered {resp.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} failed: {exc}"


def check_heartbeat(file_variable: str, default_file: str, max_age_s: str) -> str | None:
    path = os.environ.get(file_variable) or default_file
    try:
        age = time.time() - os.stat(path).st_mtime
    except OSError as exc:
        return f"no heartbeat at {path}: {exc}"
    if age > float(max_age_s):
        return f"heartbeat {path} is {age:.0f}s old (limit {max_age_s}s)"
    return None


def main(argv: list[str]) -> int:
    checks = {"http": (check_http, 3), "heartbeat": (check_heartbeat, 3)}
    if len(argv) < 1 or argv[0] not in checks or len(argv) - 1 != checks[argv[0]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    check, _ = checks[argv[0]]
    problem = check(*argv[1:])
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
