"""The one Python client of faiss_app's HTTP API (docs/CONTRACTS.md, "faiss_app HTTP API").

Every call has a timeout (the client's, or one given to the call: the recommender passes its
share of the request budget) and goes over a keep-alive connection of the calling thread
(:mod:`shared.http_keepalive`; no retries: a failure is reported at once and the caller
degrades). Bodies are encoded and decoded with orjson. Failures the caller should degrade on (timeouts, refused connections, 5xx,
an answer that is not JSON) raise :class:`FaissUnavailable`; an unknown item in
:meth:`FaissClient.similar` raises :class:`UnknownItem`; any other 4xx is a bug in the caller
and raises :class:`FaissRequestError`.

Each call addresses one vector space (docs/CONTRACTS.md, "Vector spaces"): the client's
``space`` (given at construction; None = the server's default ``gmf``) unless the call names
another; :meth:`FaissClient.for_space` gives a client of another space over the same pool. A
space the server does not serve raises :class:`UnknownSpace`; a served space with no snapshot
yet (503) raises :class:`SpaceNotReady`, a :class:`FaissUnavailable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self
from urllib.parse import urlencode

import numpy as np
import orjson

from shared.http_keepalive import HttpError, KeepAliveClient
from shared.spaces import DEFAULT_SPACE

Hit = tuple[str, float]
UNKNOWN_SPACE_TITLE = "Unknown space"  # faiss_app's title of the 404 for an unknown space


class FaissError(RuntimeError):
    """Base class of every error this client raises."""


class FaissUnavailable(FaissError):
    """faiss_app did not answer usefully: timeout, connection error, 5xx or a garbled body."""


class SpaceNotReady(FaissUnavailable):
    """The space is served but has no snapshot loaded yet (HTTP 503): try another source."""


class FaissRequestError(FaissError):
    """faiss_app rejected the request (4xx other than an unknown item): fix the caller."""

    def __init__(self, status: int, title: str, description: str):
        super().__init__(f"{status} {title}: {description}")
        self.status = status
        self.title = title
        self.description = description


class UnknownSpace(FaissRequestError):
    """faiss_app does not serve the vector space asked for (HTTP 404 "Unknown space")."""


class UnknownItem(FaissError, KeyError):
    """``similar`` was asked about an item the index does not hold (HTTP 404)."""

    def __init__(self, item_id: str):
        super().__init__(item_id)
        self.item_id = item_id


class FaissClient:
    """Client of one faiss_app base URL; thread-safe (one connection per calling thread).

    Parameters
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:8081`` (``FaissSettings.url``).
    timeout_s : float
        Default timeout of every call (connect and read), in seconds (``FaissSettings.timeout_s``);
        each call may pass its own ``timeout_s``.
    admin_token : str, optional
        Bearer token for :meth:`reload` (``FaissSettings.admin_token``).
    space : str, optional
        The vector space calls address unless they name one; None → the server's default
        space (``gmf``), and no ``space`` is sent at all.
    """

    def __init__(
        self,
        url: str,
        timeout_s: float,
        admin_token: str | None = None,
        space: str | None = None,
    ):
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.admin_token = admin_token
        self.space = space
        self._http = KeepAliveClient(self.url)

    def for_space(self, space: str | None) -> FaissClient:
        """A client of ``space`` with this one's URL, timeout and connections."""
        other = FaissClient(self.url, self.timeout_s, self.admin_token, space)
        other._http = self._http
        return other

    def _space(self, space: str | None) -> str | None:
        return space if space is not None else self.space

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- calls -------------------------------------------------------------------------------

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[Sequence[str]] | None = None,
        timeout_s: float | None = None,
        space: str | None = None,
    ) -> list[list[Hit]]:
        """Top-``k`` items by inner product for each query vector.

        Parameters
        ----------
        queries : np.ndarray
            float32 of shape (n, serving_dim); a single vector of shape (serving_dim,) is
            treated as n = 1.
        k : int
            Results per query (1..``FaissSettings.max_k``).
        exclude : list of list of str, optional
            Item ids to leave out, one list per query (length n).
        space : str, optional
            The vector space to search (default: the client's).

        Returns
        -------
        list of list of (item_id, score)
            One list per query, best first; shorter than ``k`` when the index holds fewer
            items than ``k`` after exclusions.
        """
        answer = self.search_full(queries, k, exclude, timeout_s, space)
        return [
            list(zip(result["ids"], map(float, result["scores"]), strict=True))
            for result in answer["results"]
        ]

    def search_full(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[Sequence[str]] | None = None,
        timeout_s: float | None = None,
        space: str | None = None,
    ) -> dict[str, Any]:
        """Like :meth:`search` but returns the whole answer (``results``, ``model_version``,
        ``index_type``, ``space``) as the contract states it."""
        matrix = np.asarray(queries, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix[None, :]
        if matrix.ndim != 2:
            raise ValueError(f"queries must be 2-D (n, dim), got shape {matrix.shape}")
        body: dict[str, Any] = {"queries": np.ascontiguousarray(matrix), "k": int(k)}
        if exclude is not None:
            if len(exclude) != matrix.shape[0]:
                raise ValueError(f"exclude has {len(exclude)} lists for {matrix.shape[0]} queries")
            body["exclude"] = [list(ids) for ids in exclude]
        chosen = self._space(space)
        if chosen is not None:
            body["space"] = chosen
        return self._call("POST", "/v1/search", body=body, timeout_s=timeout_s)

    def similar(
        self, item_id: str, k: int, timeout_s: float | None = None, space: str | None = None
    ) -> list[Hit]:
        """The ``k`` items most cosine-similar to ``item_id`` (itself excluded), best first,
        in ``space`` (default: the client's).

        Raises :class:`UnknownItem` when the space does not hold ``item_id``,
        :class:`UnknownSpace` when the server does not serve the space.
        """
        answer = self.similar_full(item_id, k, timeout_s, space)
        return list(zip(answer["ids"], map(float, answer["scores"]), strict=True))

    def similar_full(
        self, item_id: str, k: int, timeout_s: float | None = None, space: str | None = None
    ) -> dict[str, Any]:
        """Like :meth:`similar` but returns the whole answer (``ids``, ``scores``,
        ``model_version``, ``space``) as the contract states it."""
        query: dict[str, Any] = {"item_id": item_id, "k": int(k)}
        chosen = self._space(space)
        if chosen is not None:
            query["space"] = chosen
        try:
            return self._call(
                "GET",
                "/v1/similar",
                query=query,
                timeout_s=timeout_s,
            )
        except UnknownSpace:
            raise
        except FaissRequestError as exc:
            if exc.status == 404:
                raise UnknownItem(item_id) from None
            raise

    def stats(self, space: str | None = None) -> dict[str, Any]:
        """Model version, item count, dimension, index type and parameters, last update of
        ``space`` (default: the client's), and a summary of every space under ``spaces``."""
        chosen = self._space(space)
        return self._call("GET", "/v1/stats", query={"space": chosen} if chosen else None)

    def healthz(self, timeout_s: float | None = None) -> dict[str, Any]:
        """The liveness answer; raises FaissUnavailable if the process does not answer."""
        return self._call("GET", "/healthz", timeout_s=timeout_s)

    def readyz(self, timeout_s: float | None = None) -> dict[str, Any]:
        """The readiness answer; raises FaissUnavailable until an index is loaded."""
        return self._call("GET", "/readyz", timeout_s=timeout_s)

    def reload(self, version: str | None = None, space: str | None = None) -> dict[str, Any]:
        """Ask faiss_app to load the LATEST snapshot (or ``version``) of ``space`` (default:
        the client's); needs ``admin_token``."""
        headers = {"Authorization": f"Bearer {self.admin_token or ''}"}
        body: dict[str, Any] = {"version": version} if version else {}
        chosen = self._space(space)
        if chosen is not None:
            body["space"] = chosen
        return self._call("POST", "/v1/reload", body=body, headers=headers)

    # -- transport ---------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        target = path + ("?" + urlencode(query) if query else "")
        sent_headers = dict(headers or {})
        payload = b""
        if body is not None:
            payload = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
            sent_headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(
                method, target, timeout_s or self.timeout_s, payload, sent_headers
            )
        except HttpError as exc:
            raise FaissUnavailable(f"{method} {path}: {exc}") from exc
        asked = (body or {}).get("space") if isinstance(body, dict) else None
        asked = asked or (query or {}).get("space")
        if response.status == 503 and asked not in (None, DEFAULT_SPACE):
            raise SpaceNotReady(f"{method} {path}: HTTP 503 (space {asked!r} not loaded)")
        if response.status >= 500:
            raise FaissUnavailable(f"{method} {path}: HTTP {response.status}")
        try:
            answer = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            raise FaissUnavailable(f"{method} {path}: answer is not JSON") from None
        if response.status >= 400:
            answer = answer if isinstance(answer, dict) else {}
            title = str(answer.get("title", ""))
            error = UnknownSpace if title == UNKNOWN_SPACE_TITLE else FaissRequestError
            raise error(response.status, title, str(answer.get("description", "")))
        return answer
