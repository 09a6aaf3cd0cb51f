"""A bounded least-recently-used cache of loaded SAEs, keyed by release and id."""

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")

SaeKey = tuple[str, str]


class LruCache(Generic[V]):
    """Holds at most ``capacity`` values; loads a missing one with ``load`` and drops the stalest.

    A failed load caches nothing, so a typo in a release name costs one error, not a slot.
    """

    def __init__(self, capacity: int, load: Callable[[SaeKey], V]) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._load = load
        self._entries: OrderedDict[SaeKey, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: SaeKey) -> V:
        """The cached value for ``key``, loading (and perhaps evicting) when absent."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            # Evict before loading, so two large SAEs never sit in memory beside a third.
            while len(self._entries) >= self.capacity:
                self._entries.popitem(last=False)
            value = self._load(key)
            self._entries[key] = value
            return value

    def keys(self) -> list[SaeKey]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._entries)
