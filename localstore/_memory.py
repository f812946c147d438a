"""The memory backend: stores kept in the process, for tests that want no files.

Every backend object opened on the same root and collection shares one
in-process collection, so a global and a dataset-scoped service see each
other's stores as they would on disk; everything is gone when the process ends.
A forked child starts with a copy of its parent's stores, and the two drift
apart from then on.

Values are held as the codec's JSON text, exactly as the file backends store
them: every write is checked and copied, every read decodes a fresh copy, and a
tuple reads back as a list. One lock per collection makes each call atomic for
all threads of the process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ._paths import encode_name
from ._state import StateBackend, StoreState

__all__ = ["MemoryBackend", "list_collections"]


class _MemoryState(StoreState):
    """A store's state with a version that counts its changes."""

    __slots__ = ("version", "writes")

    def __init__(self) -> None:
        super().__init__()
        self.version = 0
        self.writes = 0  # writes since expired keys were last dropped


class _Collection:
    """The stores of one root and collection, and the lock that guards them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stores: dict[tuple[str | None, str], _MemoryState] = {}


_registry_lock = threading.Lock()
_registry: dict[tuple[str, str], _Collection] = {}


def _reset_locks_in_child() -> None:
    """Give a forked child fresh locks: a thread of the parent may have held one."""
    global _registry_lock
    _registry_lock = threading.Lock()
    for shared in _registry.values():
        shared.lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_in_child)


def list_collections(root: str) -> list[str]:
    """Return the collections that hold stores in memory under ``root``, sorted."""
    with _registry_lock:
        return sorted(name for kept_root, name in _registry if kept_root == root)


class MemoryBackend(StateBackend):
    """Keeps stores in the process, shared by every backend of the same collection."""

    kind = "memory"

    def __init__(self, root: str, collection: str, *, timeout: float = 10.0) -> None:
        super().__init__(root, collection, timeout=timeout)
        with _registry_lock:
            self._shared = _registry.setdefault((root, collection), _Collection())

    @contextmanager
    def _reading(
        self, context: str | None, store: str
    ) -> Iterator[_MemoryState | None]:
        """Yield the store's state under the collection's lock."""
        with self._shared.lock:
            yield self._shared.stores.get((context, store))

    @contextmanager
    def _writing(
        self, context: str | None, store: str, now: int, *, create: bool
    ) -> Iterator[_MemoryState | None]:
        """Yield the store's state to change under the collection's lock."""
        stores = self._shared.stores
        with self._shared.lock:
            state = stores.get((context, store))
            if state is None and create:
                state = stores[(context, store)] = _MemoryState()
            yield state
            if state is None or not state.changed:
                return

            # Dropping expired keys costs O(keys), so it runs once per as many
            # writes as there are keys: memory stays bounded at O(1) a write.
            state.writes += 1
            if state.writes > len(state.keys):
                state.drop_expired(now)
                state.writes = 0
            state.changed = False
            state.version += 1

    def _store_names(self, context: str | None) -> list[str]:
        """Return every store of a context that was ever written, live or empty."""
        with self._shared.lock:
            return [name for kept, name in self._shared.stores if kept == context]

    def list_contexts(self) -> list[str | None]:
        """Return every context that was ever written, the global one first."""
        with self._shared.lock:
            contexts = {context for context, _ in self._shared.stores}
        names = sorted((c for c in contexts if c is not None), key=encode_name)
        return [None, *names] if None in contexts else [*names]

    def change_marker(self, context: str | None, store: str) -> object:
        """Return the store's change count, or ``None`` if it was never written."""
        with self._shared.lock:
            state = self._shared.stores.get((context, store))
            return None if state is None else state.version
