import re

import falcon
import falcon.testing

from shared.logs import request_id_var
from shared.request_ids import RequestIdMiddleware


class _Echo:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"seen": request_id_var.get()}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPBadRequest(title="no")


def _client() -> falcon.testing.TestClient:
    app = falcon.App(middleware=[RequestIdMiddleware()])
    app.add_route("/echo", _Echo())
    return falcon.testing.TestClient(app)


def test_a_well_formed_id_is_used_on_log_lines_and_echoed() -> None:
    result = _client().simulate_get("/echo", headers={"X-Request-ID": "abc-1"})
    assert result.json == {"seen": "abc-1"}
    assert result.headers["X-Request-ID"] == "abc-1"


def test_a_forged_id_is_replaced() -> None:
    result = _client().simulate_get("/echo", headers={"X-Request-ID": "x\nlevel=ERROR"})
    assert re.fullmatch(r"[0-9a-f]{32}", result.json["seen"])
    assert result.headers["X-Request-ID"] == result.json["seen"]


def test_the_id_does_not_leak_into_the_thread_after_the_request() -> None:
    # Regression: faiss_app set the context variable and never reset it, so later log lines
    # of the same thread (and the recommender's request-id test) carried a stale id.
    before = request_id_var.get()
    client = _client()
    client.simulate_get("/echo", headers={"X-Request-ID": "r-1"})
    client.simulate_post("/echo", headers={"X-Request-ID": "r-2"})
    assert request_id_var.get() == before
