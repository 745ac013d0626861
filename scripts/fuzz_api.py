"""Schemathesis against running apps, each checked against the OpenAPI document it serves.

For every operation of the document, schemathesis generates requests (schema-valid ones, and
in its negative mode invalid ones) and each answer is checked: no 5xx, no status code the
operation does not list, content type, headers and body as documented. Failures are collected
(not shrunk) and counted per check, so a long run reports everything it met.

``tests/test_api_schema.py`` runs a bounded number of examples in the suite; this script runs
for minutes, the issue's target ("5 minutes against each service, 0 server errors, 0
undocumented status codes")::

    python -m scripts.fuzz_api --minutes 5            # its own stack, faiss_app, recommender
    python -m scripts.fuzz_api --url http://127.0.0.1:8080 --minutes 1   # an app already up

``--all-checks`` adds schemathesis' stricter checks (schema-valid data must be accepted,
invalid data rejected, ...): reported, for reading, beside the required ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    CheckFunction,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.core.result import Err
from schemathesis.generation import GenerationMode
from tqdm import tqdm

# What the issue asks of every answer. Server errors are counted from the statuses instead
# of schemathesis' not_a_server_error, which also fails the documented 503s (a space with no
# snapshot yet, a full spool); an undocumented 503 still fails status_code_conformance.
REQUIRED_CHECKS: list[CheckFunction] = [
    status_code_conformance, content_type_conformance, response_schema_conformance,
    response_headers_conformance,
]  # fmt: skip
STRICT_CHECKS: list[CheckFunction] = [
    positive_data_acceptance, negative_data_rejection, unsupported_method, ignored_auth,
    missing_required_header,
]  # fmt: skip
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
STRICT_PREFIX = "strict: "
SERVER_ERROR_SUFFIXES = tuple(f" {code}" for code in range(500, 600) if code != 503)
REPORTS = Path(__file__).resolve().parent.parent / "reports"


@dataclass
class FuzzReport:
    """What one app answered: requests and statuses per operation, failures per check."""

    app: str
    requests: int = 0
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)  # "GET /path 200" → count
    failures: Counter[str] = field(default_factory=Counter)  # check name → count
    examples: dict[str, str] = field(default_factory=dict)  # check name → one failing request

    @property
    def server_errors(self) -> int:
        """Answers 500-599 other than 503 (the documented "not now, retry")."""
        return sum(n for key, n in self.statuses.items()
                   if key.endswith(SERVER_ERROR_SUFFIXES))

    def failed(self) -> dict[str, int]:
        """Failures of the required checks, by schemathesis' title."""
        return {k: n for k, n in self.failures.items() if not k.startswith(STRICT_PREFIX)}

    def as_dict(self) -> dict[str, Any]:
        return {"app": self.app, "requests": self.requests, "seconds": round(self.seconds, 1),
                "server_errors": self.server_errors, "failures": dict(self.failures),
                "examples": self.examples, "statuses": dict(sorted(self.statuses.items()))}


def _check_failures(exc: BaseException) -> list[tuple[str, str]]:
    """(title, message) of each failed check in a schemathesis failure (a group, or one)."""
    inner = getattr(exc, "exceptions", None) or [exc]
    found = []
    for failure in inner:
        title = getattr(failure, "title", None) or type(failure).__name__
        found.append((str(title), str(getattr(failure, "message", "") or failure)[:300]))
    return found


def fuzz(url: str, headers: dict[str, str] | None = None, examples: int = 25,
         seconds: float | None = None, strict: bool = False,
         progress: bool = False) -> FuzzReport:
    """Run every operation of ``url``'s ``/openapi.json`` in both modes.

    ``examples`` per operation and mode; with ``seconds``, rounds repeat (with new seeds)
    until that much time has passed.
    """
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # a document schemathesis cannot read is a failure
            raise SystemExit(f"{url}/openapi.json: {result.err()}")
        operations.append(result.ok())
    report = FuzzReport(str(schema.raw_schema.get("info", {}).get("title", url)))
    started = time.monotonic()
    bar = tqdm(total=None, unit="req", disable=not progress, desc=report.app)
    round_no = 0
    while True:
        for operation in operations:
            for mode in MODES:
                _run_operation(operation, mode, url, headers or {}, examples, round_no,
                               STRICT_CHECKS if strict else [], report, bar)
        round_no += 1
        if seconds is None or time.monotonic() - started >= seconds:
            break
    bar.close()
    report.seconds = time.monotonic() - started
    return report


def _run_operation(operation: Any, mode: GenerationMode, url: str, headers: dict[str, str],
                   examples: int, round_no: int, strict: list[CheckFunction], report: FuzzReport,
                   bar: Any) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @seed(round_no)
    @settings(max_examples=examples, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=url, headers=headers, timeout=10)
        report.requests += 1
        report.statuses[f"{label} {response.status_code}"] += 1
        bar.update()
        for prefix, group in (("", REQUIRED_CHECKS), (STRICT_PREFIX, strict)):
            if not group:
                continue
            try:
                case.validate_response(response, checks=group, headers=headers)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - counted, not fatal
                for name, message in _check_failures(exc):
                    report.failures[prefix + name] += 1
                    report.examples.setdefault(
                        prefix + name, f"{message} | {case.as_curl_command(headers)} -> "
                        f"{response.status_code} {response.text[:200]}")

    try:
        run()
    except Unsatisfiable:
        pass  # nothing of that mode to generate (no parameters and no body to get wrong)


def _own_stack(folder: Path) -> Any:
    """A stack, faiss_app and recommender_app of its own, over the tests' small world."""
    import os
    from contextlib import ExitStack

    from scripts import localstack
    from tests.recommender_world import TEST_API_KEY, serve_recommender
    from tests.test_recommender_support import make_world, start_faiss

    stack = ExitStack()
    info = localstack.start(folder / "stack", metrics=False)
    stack.callback(localstack.stop, folder / "stack")
    env = {**os.environ, **info.env()}
    world = make_world(folder / "models")
    faiss_proc, faiss_url = start_faiss(world, env, folder)
    stack.callback(faiss_proc.stop)
    rec_proc, rec_url = serve_recommender(world, faiss_url, info, folder)
    stack.callback(rec_proc.stop)
    return stack, [(rec_url, {"Authorization": f"Bearer {TEST_API_KEY}"}),
                   (faiss_url, {"Authorization": "Bearer change-me"})]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0,
                        help="minutes of fuzzing per app (default: 1.0)")
    parser.add_argument("--url", action="append", default=[],
                        help="an app already running (repeatable); default: start a stack, "
                        "faiss_app and recommender_app of its own")
    parser.add_argument("--header", action="append", default=[],
                        help="'Name: value' sent with every request to --url apps")
    parser.add_argument("--only", choices=("recommender_app", "faiss_app"),
                        help="fuzz one of the apps started here (default: both, one after "
                        "the other)")
    parser.add_argument("--examples", type=int, default=50,
                        help="examples per operation and mode in one round (default: 50)")
    parser.add_argument("--all-checks", action="store_true",
                        help="also schemathesis' stricter checks (STRICT_CHECKS: valid data "
                        "accepted, invalid rejected, 405s, auth): reported, not required")
    parser.add_argument("--report", type=Path, default=REPORTS / "fuzz_api.json",
                        help="where the JSON report goes (default: reports/fuzz_api.json)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fuzz-api-") as tmp:
        if args.url:
            headers = dict(h.split(": ", 1) for h in args.header)
            targets, stack = [(url, headers) for url in args.url], None
        else:
            stack, targets = _own_stack(Path(tmp))
            if args.only:
                targets = [targets[0 if args.only == "recommender_app" else 1]]
        try:
            reports = [fuzz(url, headers, args.examples, args.minutes * 60, args.all_checks, True)
                       for url, headers in targets]
        finally:
            if stack is not None:
                stack.close()
    failed = False
    for report in reports:
        required = report.failed()
        failed |= bool(required) or report.server_errors > 0
        print(f"{report.app}: {report.requests} requests in {report.seconds:.0f} s, "
              f"{report.server_errors} server errors, required checks failed: {required or 0}, "
              f"all failures: {dict(report.failures) or 0}")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps([r.as_dict() for r in reports], indent=1) + "\n")
    print(f"report: {args.report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
