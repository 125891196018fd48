"""A call counter that several threads may bump while another reads it (bottom layer)."""

from __future__ import annotations

import threading
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView


class CallCounter(Mapping[str, int]):
    """Calls by `service:Operation`, safe to bump from several threads and to read from
    another (a plain Counter iterated while another thread adds a key raises "dictionary
    changed size during iteration"). Reading it iterates a copy taken under the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        """Count `n` more calls of `key`."""
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def snapshot(self) -> dict[str, int]:
        """A copy of the counts, taken under the lock."""
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        """Forget every count."""
        with self._lock:
            self._counts.clear()

    def total(self) -> int:
        """All calls counted."""
        with self._lock:
            return sum(self._counts.values())

    def __getitem__(self, key: str) -> int:
        """The count of `key`, 0 when never counted (as `collections.Counter`)."""
        with self._lock:
            return self._counts.get(key, 0)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._counts

    def get(self, key: str, default: int | None = None) -> int | None:  # type: ignore[override]
        """The count of `key`, `default` when never counted (as `dict.get`)."""
        with self._lock:
            return self._counts.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.snapshot())

    # one copy per read, not a lock round per key (which convoys behind busy writers)
    def items(self) -> ItemsView[str, int]:
        """The counts at one moment."""
        return self.snapshot().items()

    def values(self) -> ValuesView[int]:
        """The counts at one moment."""
        return self.snapshot().values()

    def keys(self) -> KeysView[str]:
        """The keys at one moment."""
        return self.snapshot().keys()

    def __len__(self) -> int:
        with self._lock:
            return len(self._counts)
