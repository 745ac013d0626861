"""Request ids for the Falcon apps: taken from ``X-Request-ID`` when well formed, else made.

The id goes on every log line of the request (``shared.logs.request_id_var``) and back in the
response header, and the context variable is reset afterwards so that nothing leaks into the
next request served by the same thread.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, cast

import falcon

from shared.logs import request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
# Same alphabet as ids: a header value can never forge extra key=value pairs on a log line.
_WELL_FORMED = re.compile(r"^[A-Za-z0-9_.:@\-]{1,128}$")


class RequestIdMiddleware:
    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header(REQUEST_ID_HEADER)
        request_id = given if given and _WELL_FORMED.match(given) else uuid.uuid4().hex
        req.context.request_id = request_id
        req.context.request_id_token = request_id_var.set(request_id)
        resp.set_header(REQUEST_ID_HEADER, request_id)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        # Context.get is typed Any | None even when given a default; process_request sets a str.
        resp.set_header(REQUEST_ID_HEADER, cast(str, req.context.get("request_id", "-")))
        token = req.context.get("request_id_token")
        if token is not None:
            request_id_var.reset(token)
