"""The machine's ceiling for ``scripts.bench_api``: a bare Falcon app with one route that returns
a fixed 10-item answer shaped like ``GET /recommend``'s, served by gunicorn with the same
settings as recommender_app. Every path's req/s is reported as a share of this app's.

    gunicorn -w 2 --threads 4 scripts.bare_falcon_app:app
"""

from __future__ import annotations

import falcon

ANSWER = {
    "user_id": "u1",
    "items": [
        {
            "item_id": f"i{j}",
            "score": 1.0 / (j + 1),
            "title": f"Item {j}",
            "category": f"cat-{j % 20}",
            "price": 9.99,
        }
        for j in range(10)
    ],
    "source": "personalized",
    "model_version": "v1",
    "degraded": False,
    "degraded_dependencies": [],
}


class FixedAnswer:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = ANSWER


app = falcon.App()
app.add_route("/recommend", FixedAnswer())
app.add_route("/healthz", FixedAnswer())
app.add_route("/readyz", FixedAnswer())  # scripts.processes waits for it
