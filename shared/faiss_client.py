"""The one Python client of faiss_app's HTTP API (docs/CONTRACTS.md, "faiss_app HTTP API").

Every call has a timeout and goes through one pooled :class:`requests.Session`. Failures the
caller should degrade on (timeouts, refused connections, 5xx, an answer that is not JSON) raise
:class:`FaissUnavailable`; an unknown item in :meth:`FaissClient.similar` raises
:class:`UnknownItem`; any other 4xx is a bug in the caller and raises :class:`FaissRequestError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import requests
from requests.adapters import HTTPAdapter

Hit = tuple[str, float]


class FaissError(RuntimeError):
    """Base class of every error this client raises."""


class FaissUnavailable(FaissError):
    """faiss_app did not answer usefully: timeout, connection error, 5xx or a garbled body."""


class FaissRequestError(FaissError):
    """faiss_app rejected the request (4xx other than an unknown item): fix the caller."""

    def __init__(self, status: int, title: str, description: str):
        super().__init__(f"{status} {title}: {description}")
        self.status = status
        self.title = title
        self.description = description


class UnknownItem(FaissError, KeyError):
    """``similar`` was asked about an item the index does not hold (HTTP 404)."""

    def __init__(self, item_id: str):
        super().__init__(item_id)
        self.item_id = item_id


class FaissClient:
    """Client of one faiss_app base URL.

    Parameters
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:8081`` (``FaissSettings.url``).
    timeout_s : float
        Timeout of every call (connect and read), in seconds (``FaissSettings.timeout_s``).
    session : requests.Session, optional
        A session to reuse; by default one with a connection pool of ``pool_size``.
    admin_token : str, optional
        Bearer token for :meth:`reload` (``FaissSettings.admin_token``).
    """

    def __init__(
        self,
        url: str,
        timeout_s: float,
        session: requests.Session | None = None,
        admin_token: str | None = None,
        pool_size: int = 16,
    ):
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.admin_token = admin_token
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self.session = session

    def close(self) -> None:
        self.session.close()

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

        Returns
        -------
        list of list of (item_id, score)
            One list per query, best first; shorter than ``k`` when the index holds fewer
            items than ``k`` after exclusions.
        """
        answer = self.search_full(queries, k, exclude)
        return [
            list(zip(result["ids"], map(float, result["scores"]), strict=True))
            for result in answer["results"]
        ]

    def search_full(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[Sequence[str]] | None = None,
    ) -> dict[str, Any]:
        """Like :meth:`search` but returns the whole answer (``results``, ``model_version``,
        ``index_type``) as the contract states it."""
        matrix = np.asarray(queries, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix[None, :]
        if matrix.ndim != 2:
            raise ValueError(f"queries must be 2-D (n, dim), got shape {matrix.shape}")
        body: dict[str, Any] = {"queries": matrix.tolist(), "k": int(k)}
        if exclude is not None:
            if len(exclude) != matrix.shape[0]:
                raise ValueError(f"exclude has {len(exclude)} lists for {matrix.shape[0]} queries")
            body["exclude"] = [list(ids) for ids in exclude]
        return self._call("POST", "/v1/search", json=body)

    def similar(self, item_id: str, k: int) -> list[Hit]:
        """The ``k`` items most cosine-similar to ``item_id`` (itself excluded), best first.

        Raises :class:`UnknownItem` when the index does not hold ``item_id``.
        """
        answer = self.similar_full(item_id, k)
        return list(zip(answer["ids"], map(float, answer["scores"]), strict=True))

    def similar_full(self, item_id: str, k: int) -> dict[str, Any]:
        """Like :meth:`similar` but returns the whole answer (``ids``, ``scores``,
        ``model_version``) as the contract states it."""
        try:
            return self._call("GET", "/v1/similar", params={"item_id": item_id, "k": int(k)})
        except FaissRequestError as exc:
            if exc.status == 404:
                raise UnknownItem(item_id) from None
            raise

    def stats(self) -> dict[str, Any]:
        """Model version, item count, dimension, index type and parameters, last update."""
        return self._call("GET", "/v1/stats")

    def healthz(self) -> dict[str, Any]:
        """The health answer; raises FaissUnavailable if the service is not healthy."""
        return self._call("GET", "/healthz")

    def reload(self, version: str | None = None) -> dict[str, Any]:
        """Ask faiss_app to load ``models/LATEST`` (or ``version``); needs ``admin_token``."""
        headers = {"Authorization": f"Bearer {self.admin_token or ''}"}
        body = {"version": version} if version else {}
        return self._call("POST", "/v1/reload", json=body, headers=headers)

    # -- transport ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.session.request(
                method, self.url + path, timeout=self.timeout_s, **kwargs
            )
        except requests.RequestException as exc:
            raise FaissUnavailable(f"{method} {path}: {exc}") from exc
        if response.status_code >= 500:
            raise FaissUnavailable(f"{method} {path}: HTTP {response.status_code}")
        try:
            payload = response.json()
        except ValueError:
            raise FaissUnavailable(f"{method} {path}: answer is not JSON") from None
        if response.status_code >= 400:
            payload = payload if isinstance(payload, dict) else {}
            raise FaissRequestError(
                response.status_code,
                str(payload.get("title", "")),
                str(payload.get("description", "")),
            )
        return payload
