"""The interface every storage backend implements, and the records it returns.

The service validates every argument, encodes values to JSON text and reads the
clock before it calls a backend, so a backend only stores and finds: it never
sees a Python value, and all backends agree on what "now" is within one call.
Times are integers, microseconds since the Unix epoch in UTC.

A backend is bound to one root and one collection; ``context`` selects the
dataset (a ``str`` id) or the global context (``None``).
"""

from __future__ import annotations

import abc
import time
from collections import namedtuple
from collections.abc import Callable

__all__ = ["BUSY_STORE_NOT_SWEPT", "Backend", "KeyRecord", "StoreRecord", "catch_up"]

#: The warning of a sweep that leaves out a store whose lock it could not get
#: within the timeout (arguments: the store name and the error); the rest of
#: the collection is swept.
BUSY_STORE_NOT_SWEPT = "not sweeping store %r, busy beyond the timeout: %s"


def catch_up(now: int, expires_at: int | None) -> tuple[int, int | None]:
    """Return the time now and ``expires_at`` moved on by as much as the clock did.

    The service reads the clock when a call starts. A backend that then waited
    for another writer's lock, or created a file, calls this once it holds its
    write lock, so that ``updated_at`` is the moment of the write and a TTL
    counts from it: a lease taken after a long wait is not already expired.
    """
    current = time.time_ns() // 1000
    if current <= now:  # the clock stood still or was set back: keep the call's time
        return now, expires_at
    return current, None if expires_at is None else expires_at + current - now


# The records are NamedTuples to type checkers and plain namedtuples at run time,
# with the same fields: typing costs a short process milliseconds to import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple

    class KeyRecord(NamedTuple):
        """One live key as a backend returns it."""

        key: str
        value: str  # JSON text from the codec
        created_at: int
        updated_at: int
        expires_at: int | None
        policy: str

    class StoreRecord(NamedTuple):
        """A store's own document; ``has_document`` is false for a key-only store."""

        metadata: str | None  # JSON text, or None for no metadata
        created_at: int
        updated_at: int | None
        policy: str
        has_document: bool

else:
    KeyRecord = namedtuple(
        "KeyRecord", "key value created_at updated_at expires_at policy"
    )
    StoreRecord = namedtuple(
        "StoreRecord", "metadata created_at updated_at policy has_document"
    )


class Backend(abc.ABC):
    """Stores keys of named stores, per context, under one root and collection.

    Methods that write a TTL'd key call :func:`catch_up` once they hold their
    write lock (or do the same inside the statement that writes), and store and
    return the moved times.

    Every method is safe to call from several threads and processes at once; a
    method that writes either completes or changes nothing. Expired keys are
    never returned, counted or listed.
    """

    #: The name users pass as ``backend=`` to select this backend.
    kind: str = ""

    def __init__(self, root: str, collection: str, *, timeout: float) -> None:
        self.root = root
        self.collection = collection
        self.timeout = timeout

    # Keys of one store ---------------------------------------------------------

    @abc.abstractmethod
    def get_key(
        self, context: str | None, store: str, key: str, now: int
    ) -> KeyRecord | None:
        """Return the live key, or ``None``."""

    def get_value(
        self, context: str | None, store: str, key: str, now: int
    ) -> str | None:
        """Return the live key's value text, or ``None``; a backend may do it faster."""
        record = self.get_key(context, store, key, now)
        return None if record is None else record.value

    @abc.abstractmethod
    def has_key(self, context: str | None, store: str, key: str, now: int) -> bool:
        """Tell whether the key is live."""

    @abc.abstractmethod
    def set_key(
        self,
        context: str | None,
        store: str,
        key: str,
        value: str,
        expires_at: int | None,
        policy: str,
        now: int,
        *,
        only_if_absent: bool = False,
    ) -> KeyRecord | None:
        """Write a key and return it as stored.

        ``created_at`` is kept when a live key is overwritten. With
        ``only_if_absent`` nothing is written and ``None`` is returned when the
        key is live.
        """

    def put_key(
        self,
        context: str | None,
        store: str,
        key: str,
        value: str,
        expires_at: int | None,
        policy: str,
        now: int,
    ) -> None:
        """Write a key as :meth:`set_key` does, returning nothing.

        For ``ExecutionStore.set``, which returns nothing; a backend may do it
        faster.
        """
        self.set_key(context, store, key, value, expires_at, policy, now)

    @abc.abstractmethod
    def set_keys(
        self,
        context: str | None,
        store: str,
        items: list[tuple[str, str]],
        expires_at: int | None,
        policy: str,
        now: int,
    ) -> None:
        """Write many ``(key, value)`` pairs at once: all of them, or none."""

    @abc.abstractmethod
    def compare_and_set_key(
        self,
        context: str | None,
        store: str,
        key: str,
        matches: Callable[[str], bool],
        value: str,
        expires_at: int | None,
        policy: str,
        now: int,
    ) -> KeyRecord | None:
        """Write a live key only if ``matches(current_value)``; return it or ``None``.

        The check and the write are one atomic step for every thread and process.
        """

    @abc.abstractmethod
    def update_key(
        self,
        context: str | None,
        store: str,
        key: str,
        now: int,
        *,
        expires_at: int | None,
        policy: str | None,
        set_expiry: bool,
    ) -> KeyRecord | None:
        """Change a live key's expiry (if ``set_expiry``) and/or policy (if given).

        Returns the updated key, or ``None`` when there is no live key.
        """

    @abc.abstractmethod
    def delete_key(self, context: str | None, store: str, key: str, now: int) -> bool:
        """Delete a key; return whether a live key was deleted."""

    @abc.abstractmethod
    def list_items(
        self, context: str | None, store: str, now: int, prefix: str | None
    ) -> list[tuple[str, str]]:
        """Return ``(key, value)`` of the live keys starting with ``prefix``, by key."""

    @abc.abstractmethod
    def list_keys(self, context: str | None, store: str, now: int) -> list[str]:
        """Return the live keys of a store, sorted."""

    @abc.abstractmethod
    def count_keys(self, context: str | None, store: str, now: int) -> int:
        """Return the number of live keys of a store."""

    # Stores ----------------------------------------------------------------------

    @abc.abstractmethod
    def create_store(
        self,
        context: str | None,
        store: str,
        metadata: str | None,
        policy: str,
        now: int,
    ) -> StoreRecord:
        """Write a store's document.

        :raises StoreExistsError: when the store already has a document.
        """

    @abc.abstractmethod
    def get_store(
        self, context: str | None, store: str, now: int
    ) -> StoreRecord | None:
        """Return the store's document, one made up for a key-only store, or ``None``.

        A made-up document has ``has_document`` false, no metadata and the
        creation time of the oldest live key.
        """

    def has_store(self, context: str | None, store: str, now: int) -> bool:
        """Tell whether a store has a document or a live key."""
        return self.get_store(context, store, now) is not None

    @abc.abstractmethod
    def delete_store(
        self, context: str | None, store: str, now: int
    ) -> StoreRecord | None:
        """Delete every key and the document of a store; return what existed."""

    @abc.abstractmethod
    def clear_cache(self, context: str | None, store: str | None, now: int) -> int:
        """Delete keys with policy ``"evict"`` or a TTL, and evict-policy documents.

        ``store=None`` means every store of the context. Returns how many
        documents were deleted.
        """

    @abc.abstractmethod
    def list_stores(self, context: str | None, now: int) -> list[str]:
        """Return the names of the stores that exist in a context, sorted."""

    @abc.abstractmethod
    def list_contexts(self) -> list[str | None]:
        """Return every context that has stored something; ``None`` is global."""

    @abc.abstractmethod
    def sweep(self, now: int) -> dict[tuple[str | None, str], int]:
        """Delete expired keys for good in every context.

        Returns the number deleted per ``(context, store)``, omitting zeros.
        """

    # Whole stores, for copying, export and import -----------------------------------

    @abc.abstractmethod
    def dump_store(
        self, context: str | None, store: str, now: int
    ) -> tuple[StoreRecord | None, list[KeyRecord]]:
        """Return a store's own document (``None`` if it has none) and live keys.

        The keys come sorted, with every field as stored, read in one consistent
        snapshot.
        """

    @abc.abstractmethod
    def load_store(
        self,
        context: str | None,
        store: str,
        document: StoreRecord | None,
        keys: list[KeyRecord],
        now: int,
        *,
        replace: bool,
    ) -> int:
        """Write a document and keys exactly as given, timestamps included.

        With ``replace`` existing live keys (and the document) are overwritten;
        without, they are kept and the given ones skipped. All or nothing.
        Returns the number of keys written.
        """

    @abc.abstractmethod
    def change_marker(self, context: str | None, store: str) -> object:
        """Return a cheap value that differs after any process changes the store.

        Used by a watcher that polls for changes made by other processes; it may
        also change when nothing did. ``None`` when the store has never existed.
        """

    def close(self) -> None:  # noqa: B027 (optional hook: most backends hold nothing)
        """Release what this backend holds open; it stays usable."""
