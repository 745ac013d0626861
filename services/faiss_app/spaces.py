"""The vector spaces one faiss_app serves: an :class:`IndexService` per configured space.

``FaissSettings.spaces`` names them (the default space ``gmf`` is always there); every space
loads its own snapshots, follows its own topic and builds its own index type. Handlers pick a
space by name with :meth:`SpaceRegistry.get`, which raises :class:`UnknownSpace` (HTTP 404)
for a name not configured here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from services.faiss_app.errors import BadQuery
from services.faiss_app.service import IndexService
from shared.config import Settings
from shared.metrics import Metrics
from shared.spaces import DEFAULT_SPACE, UnknownSpace, parse_spaces


class SpaceRegistry:
    """Name → :class:`IndexService`, in configuration order (the default space first)."""

    def __init__(self, settings: Settings, metrics: Metrics):
        self._services = {
            spec.name: IndexService(settings, metrics, spec)
            for spec in parse_spaces(settings.faiss.spaces)
        }

    @property
    def default(self) -> IndexService:
        return self._services[DEFAULT_SPACE]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._services)

    def __iter__(self) -> Iterator[IndexService]:
        return iter(self._services.values())

    def get(self, name: Any) -> IndexService:
        """The service of space ``name`` (None → the default space)."""
        if name is None:
            return self.default
        if not isinstance(name, str):
            raise BadQuery("space must be a string")
        service = self._services.get(name)
        if service is None:
            raise UnknownSpace(name, self.names)
        return service

    def summary(self) -> dict[str, Any]:
        return {name: service.summary() for name, service in self._services.items()}
