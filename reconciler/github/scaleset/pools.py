"""Which pools take their demand from a scale set, and each one's scale set on GitHub.

`ScaleSetPools` is shared by the listeners (demand) and the JIT provisioner (runners): one
`ScaleSetClient` per scope (one admin connection each), and per pool the scale set named after
it, with the pool's labels and runner group, adopted or created on first use, updated when
the spec changes, and created again when GitHub deleted it (`forget` after a 404).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ...spec.models import RunnerPool
from ..client import GitHubClient, Scope
from .client import ScaleSet, ScaleSetClient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScaleSetPool:
    """What a scale set and its listener need of a pool spec."""

    name: str
    scope: Scope
    runner_group: str
    labels: tuple[str, ...]
    minimum: int
    maximum: int

    @classmethod
    def of(cls, pool: RunnerPool) -> ScaleSetPool:
        """From a RunnerPool spec (any demand source)."""
        spec = pool.spec
        return cls(
            name=pool.metadata.name,
            scope=Scope(spec.scope.kind, spec.scope.target),  # type: ignore[arg-type]
            runner_group=spec.runner_group,
            labels=tuple(spec.labels),
            minimum=spec.scaling.min,
            maximum=spec.scaling.max,
        )


def scale_set_pools(pools: Iterable[RunnerPool]) -> dict[str, ScaleSetPool]:
    """The pools whose ``spec.demand.source`` is ``scaleSet``, by name."""
    return {
        pool.metadata.name: ScaleSetPool.of(pool)
        for pool in pools
        if pool.spec.demand.source == "scaleSet"
    }


class ScaleSetPools:
    """Scale-set pools and their scale sets; thread-safe."""

    def __init__(
        self,
        github: GitHubClient,
        *,
        client_factory: Callable[[GitHubClient, Scope], ScaleSetClient] | None = None,
        **client_options: Any,
    ) -> None:
        self.github = github
        self._factory = client_factory or (
            lambda rest, scope: ScaleSetClient(rest, scope, **client_options)
        )
        self._lock = threading.Lock()
        self._pools: dict[str, ScaleSetPool] = {}
        self._clients: dict[Scope, ScaleSetClient] = {}
        self._scale_sets: dict[str, tuple[ScaleSetPool, ScaleSet]] = {}
        self._ensuring: dict[str, threading.Lock] = {}

    def set_pools(self, pools: dict[str, ScaleSetPool]) -> None:
        """The scale-set pools of the current specs."""
        with self._lock:
            self._pools = dict(pools)

    def pools(self) -> dict[str, ScaleSetPool]:
        """The scale-set pools known now."""
        with self._lock:
            return dict(self._pools)

    def pool(self, name: str) -> ScaleSetPool | None:
        """A pool, if it takes its demand from a scale set."""
        with self._lock:
            return self._pools.get(name)

    def client(self, scope: Scope) -> ScaleSetClient:
        """The Actions service client of a scope (one admin connection per scope)."""
        with self._lock:
            if scope not in self._clients:
                self._clients[scope] = self._factory(self.github, scope)
            return self._clients[scope]

    def scale_set(self, pool: ScaleSetPool) -> ScaleSet:
        """The pool's scale set: cached while the pool's spec is unchanged, else adopted,
        updated or created on GitHub."""
        with self._lock:
            ensuring = self._ensuring.setdefault(pool.name, threading.Lock())
        with ensuring:  # the listener and the provisioner may ask at once: one ensure
            with self._lock:
                cached = self._scale_sets.get(pool.name)
            if cached is not None and cached[0] == pool:
                return cached[1]
            scale_set = self.client(pool.scope).ensure_scale_set(
                pool.name, pool.runner_group, list(pool.labels)
            )
            logger.info("pool %s: scale set %d (%s)", pool.name, scale_set.id, scale_set.name)
            with self._lock:
                self._scale_sets[pool.name] = (pool, scale_set)
            return scale_set

    def forget(self, pool: str) -> None:
        """Forget a pool's scale set (GitHub deleted it): the next use creates it again."""
        with self._lock:
            self._scale_sets.pop(pool, None)

    def close(self) -> None:
        """Close every client."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
