"""Both apps against their own OpenAPI documents, with schemathesis (issue 17).

Each app runs under real gunicorn and serves ``/openapi.json`` for its settings; schemathesis
loads that document, generates requests for every operation (schema-valid ones and, in its
negative mode, invalid ones) and each answer is checked: no 5xx, no status code the operation
does not list, content type, headers and body as documented (scripts/fuzz_api.py, which also
runs it for minutes). Bounded: a fixed number of examples per operation and mode.

(schemathesis' own pytest integration, ``from_fixture``, fails under pytest 9 with
"'Function' object has no attribute '_nodeid'", so the operations are run by the script's
loop instead.)
"""

from __future__ import annotations

from scripts.fuzz_api import fuzz
from tests.recommender_world import TEST_API_KEY

EXAMPLES = 15
FAISS_ADMIN_TOKEN = "change-me"  # faiss_app's built-in default, as tests/test_recommender_support


def test_recommender_answers_as_its_document_says(recommender_url: str):
    report = fuzz(recommender_url, {"Authorization": f"Bearer {TEST_API_KEY}"}, EXAMPLES)
    assert report.requests > 100
    assert report.server_errors == 0, report.as_dict()
    assert report.failed() == {}, report.as_dict()


def test_faiss_app_answers_as_its_document_says(faiss_url: str):
    report = fuzz(faiss_url, {"Authorization": f"Bearer {FAISS_ADMIN_TOKEN}"}, EXAMPLES)
    assert report.requests > 50
    assert report.server_errors == 0, report.as_dict()
    assert report.failed() == {}, report.as_dict()
