"""The rules of a store, kept once for the backends that hold a whole store at a time.

The JSON backend reads a store's file, changes it in memory and writes it back;
the memory backend keeps the same object between calls. Both hold a store as a
:class:`StoreState` and inherit every method of the backend interface from
:class:`StateBackend`, so the two agree with each other, and with the SQLite
backend's statements, on every detail: which timestamps a write keeps, what an
expired key hides, what ``clear_cache`` counts.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

from ._backend import BUSY_STORE_NOT_SWEPT, Backend, KeyRecord, StoreRecord, catch_up
from .errors import CorruptStoreError, LockTimeoutError, StoreExistsError

__all__ = ["Entry", "StateBackend", "StoreState", "describe_context"]

logger = logging.getLogger(__name__)


class Entry(NamedTuple):
    """One key as a state holds it; ``value`` is in the state's own form."""

    value: Any
    created_at: int
    updated_at: int
    expires_at: int | None
    policy: str

    def is_live(self, now: int) -> bool:
        """Tell whether the key has not expired at ``now``."""
        return self.expires_at is None or self.expires_at > now


class StoreState:
    """A store's document and keys, and every operation on them.

    Values arrive and leave as the codec's JSON text; a subclass may hold them
    in another form by overriding :meth:`value_from_text` and
    :meth:`value_to_text`. Every method that changes something sets
    :attr:`changed`, so the backend knows to keep the result.
    """

    __slots__ = ("changed", "document", "keys")

    def __init__(
        self, document: StoreRecord | None = None, keys: dict[str, Entry] | None = None
    ) -> None:
        self.document = document
        self.keys: dict[str, Entry] = {} if keys is None else keys
        self.changed = False

    @staticmethod
    def value_from_text(text: str) -> Any:
        """Turn a value's JSON text into the form this state holds."""
        return text

    @staticmethod
    def value_to_text(value: Any) -> str:
        """Turn a held value back into JSON text."""
        return str(value)

    # Reading -------------------------------------------------------------------

    def record(self, key: str, entry: Entry) -> KeyRecord:
        """Return an entry as the record a backend hands out."""
        return KeyRecord(
            key,
            self.value_to_text(entry.value),
            entry.created_at,
            entry.updated_at,
            entry.expires_at,
            entry.policy,
        )

    def live_entry(self, key: str, now: int) -> Entry | None:
        """Return the key's entry if it is live."""
        entry = self.keys.get(key)
        return entry if entry is not None and entry.is_live(now) else None

    def get(self, key: str, now: int) -> KeyRecord | None:
        """Return the live key, or ``None``."""
        entry = self.live_entry(key, now)
        return None if entry is None else self.record(key, entry)

    def live_keys(self, now: int) -> list[str]:
        """Return the live keys, sorted."""
        return sorted(key for key, entry in self.keys.items() if entry.is_live(now))

    def items(self, now: int, prefix: str | None) -> list[tuple[str, str]]:
        """Return ``(key, value text)`` of the live keys starting with ``prefix``."""
        return [
            (key, self.value_to_text(self.keys[key].value))
            for key in self.live_keys(now)
            if not prefix or key.startswith(prefix)
        ]

    def count(self, now: int) -> int:
        """Return the number of live keys."""
        return sum(1 for entry in self.keys.values() if entry.is_live(now))

    def describe(self, now: int) -> StoreRecord | None:
        """Return the document, one made up from the live keys, or ``None``."""
        if self.document is not None:
            return self.document
        created = [
            entry.created_at for entry in self.keys.values() if entry.is_live(now)
        ]
        if not created:
            return None
        return StoreRecord(None, min(created), None, "persist", has_document=False)

    def dump(self, now: int) -> tuple[StoreRecord | None, list[KeyRecord]]:
        """Return the document (if any) and every live key as stored, sorted."""
        keys = [self.record(key, self.keys[key]) for key in self.live_keys(now)]
        return self.document, keys

    # Writing -------------------------------------------------------------------

    def put(
        self,
        key: str,
        text: str,
        expires_at: int | None,
        policy: str,
        now: int,
        *,
        only_if_absent: bool = False,
    ) -> KeyRecord | None:
        """Write a key, keeping ``created_at`` of a live one it replaces.

        With ``only_if_absent`` a live key is left alone and ``None`` returned.
        """
        current = self.live_entry(key, now)
        if current is not None and only_if_absent:
            return None
        created_at = now if current is None else current.created_at
        self.keys[key] = Entry(
            self.value_from_text(text), created_at, now, expires_at, policy
        )
        self.changed = True
        return KeyRecord(key, text, created_at, now, expires_at, policy)

    def update(
        self,
        key: str,
        now: int,
        *,
        expires_at: int | None,
        policy: str | None,
        set_expiry: bool,
    ) -> KeyRecord | None:
        """Change a live key's expiry and/or policy, leaving ``updated_at`` alone."""
        current = self.live_entry(key, now)
        if current is None:
            return None
        if set_expiry:
            current = current._replace(expires_at=expires_at)
        if policy is not None:
            current = current._replace(policy=policy)
        self.keys[key] = current
        self.changed = True
        return self.record(key, current)

    def delete(self, key: str, now: int) -> bool:
        """Delete a key, expired or not; return whether it was live."""
        entry = self.keys.pop(key, None)
        if entry is None:
            return False
        self.changed = True
        return entry.is_live(now)

    def create_document(
        self, metadata: str | None, policy: str, now: int
    ) -> StoreRecord | None:
        """Give the store a document; ``None`` if it already has one."""
        if self.document is not None:
            return None
        self.document = StoreRecord(metadata, now, None, policy, has_document=True)
        self.changed = True
        return self.document

    def clear(self, now: int) -> StoreRecord | None:
        """Delete every key and the document; return what existed."""
        existing = self.describe(now)
        if self.keys or self.document is not None:
            self.keys.clear()
            self.document = None
            self.changed = True
        return existing

    def clear_cache(self) -> int:
        """Delete evict-policy and TTL keys (expired ones too) and an evict document.

        Returns how many were deleted, counted as the SQLite backend counts.
        """
        doomed = [
            key
            for key, entry in self.keys.items()
            if entry.policy == "evict" or entry.expires_at is not None
        ]
        for key in doomed:
            del self.keys[key]
        deleted = len(doomed)
        if self.document is not None and self.document.policy == "evict":
            self.document = None
            deleted += 1
        if deleted:
            self.changed = True
        return deleted

    def drop_expired(self, now: int) -> int:
        """Delete the expired keys for good; return how many there were."""
        expired = [key for key, entry in self.keys.items() if not entry.is_live(now)]
        for key in expired:
            del self.keys[key]
        if expired:
            self.changed = True
        return len(expired)

    def load(
        self,
        document: StoreRecord | None,
        records: list[KeyRecord],
        now: int,
        *,
        replace: bool,
    ) -> int:
        """Write a document and keys exactly as given; return the keys written.

        Without ``replace`` an existing document and live keys are kept.
        """
        if document is not None and (replace or self.document is None):
            self.document = document._replace(has_document=True)
            self.changed = True
        written = 0
        for record in records:
            if not replace and self.live_entry(record.key, now) is not None:
                continue
            self.keys[record.key] = Entry(
                self.value_from_text(record.value),
                record.created_at,
                record.updated_at,
                record.expires_at,
                record.policy,
            )
            written += 1
        if written:
            self.changed = True
        return written


class StateBackend(Backend):
    """A backend that works on one whole :class:`StoreState` per call.

    Subclasses say where states live: :meth:`_reading` and :meth:`_writing`
    yield a store's state (``None`` when it has none), and the state a
    ``_writing`` block changed is kept when the block ends without an error.
    A write of a key moves its times on with :func:`catch_up` once it holds the
    state, as the SQLite backend does once it holds its write lock.
    """

    @abc.abstractmethod
    def _reading(
        self, context: str | None, store: str
    ) -> AbstractContextManager[StoreState | None]:
        """Yield the store's state to read, or ``None`` when it has none."""

    @abc.abstractmethod
    def _writing(
        self, context: str | None, store: str, now: int, *, create: bool
    ) -> AbstractContextManager[StoreState | None]:
        """Yield the store's state to change, a new one if ``create``, else ``None``."""

    @abc.abstractmethod
    def _store_names(self, context: str | None) -> list[str]:
        """Return every store of a context that has a state, live or empty."""

    # Keys of one store ---------------------------------------------------------

    def get_key(
        self, context: str | None, store: str, key: str, now: int
    ) -> KeyRecord | None:
        """Return the live key, or ``None``."""
        with self._reading(context, store) as state:
            return None if state is None else state.get(key, now)

    def has_key(self, context: str | None, store: str, key: str, now: int) -> bool:
        """Tell whether the key is live."""
        with self._reading(context, store) as state:
            return state is not None and state.live_entry(key, now) is not None

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
        """Write a key (see :meth:`Backend.set_key`)."""
        with self._writing(context, store, now, create=True) as state:
            assert state is not None
            now, expires_at = catch_up(now, expires_at)
            return state.put(
                key, value, expires_at, policy, now, only_if_absent=only_if_absent
            )

    def set_keys(
        self,
        context: str | None,
        store: str,
        items: list[tuple[str, str]],
        expires_at: int | None,
        policy: str,
        now: int,
    ) -> None:
        """Write many keys in one step."""
        with self._writing(context, store, now, create=True) as state:
            assert state is not None
            now, expires_at = catch_up(now, expires_at)
            for key, value in items:
                state.put(key, value, expires_at, policy, now)

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
        """Write a live key if its value matches, in one step."""
        with self._writing(context, store, now, create=False) as state:
            # Live or not is judged once the lock is held: the key may have
            # expired while this call waited for another writer.
            now, expires_at = catch_up(now, expires_at)
            current = None if state is None else state.live_entry(key, now)
            if state is None or current is None:
                return None
            if not matches(state.value_to_text(current.value)):
                return None
            return state.put(key, value, expires_at, policy, now)

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
        """Change a live key's expiry and/or policy."""
        with self._writing(context, store, now, create=False) as state:
            if state is None:
                return None
            now, expires_at = catch_up(now, expires_at)
            return state.update(
                key, now, expires_at=expires_at, policy=policy, set_expiry=set_expiry
            )

    def delete_key(self, context: str | None, store: str, key: str, now: int) -> bool:
        """Delete a key; return whether a live key was deleted."""
        with self._writing(context, store, now, create=False) as state:
            now, _ = catch_up(now, None)
            return state is not None and state.delete(key, now)

    def list_items(
        self, context: str | None, store: str, now: int, prefix: str | None
    ) -> list[tuple[str, str]]:
        """Return the live ``(key, value)`` pairs, by key, optionally by prefix."""
        with self._reading(context, store) as state:
            return [] if state is None else state.items(now, prefix)

    def list_keys(self, context: str | None, store: str, now: int) -> list[str]:
        """Return the live keys, sorted."""
        with self._reading(context, store) as state:
            return [] if state is None else state.live_keys(now)

    def count_keys(self, context: str | None, store: str, now: int) -> int:
        """Return the number of live keys."""
        with self._reading(context, store) as state:
            return 0 if state is None else state.count(now)

    # Stores ----------------------------------------------------------------------

    def create_store(
        self,
        context: str | None,
        store: str,
        metadata: str | None,
        policy: str,
        now: int,
    ) -> StoreRecord:
        """Write a store's document; raise :class:`StoreExistsError` if it has one."""
        with self._writing(context, store, now, create=True) as state:
            assert state is not None
            document = state.create_document(metadata, policy, now)
        if document is None:
            raise StoreExistsError(
                f"store {store!r} already exists in {describe_context(context)}"
            )
        return document

    def get_store(
        self, context: str | None, store: str, now: int
    ) -> StoreRecord | None:
        """Return the store's document, a made-up one for a key-only store, or None."""
        with self._reading(context, store) as state:
            return None if state is None else state.describe(now)

    def delete_store(
        self, context: str | None, store: str, now: int
    ) -> StoreRecord | None:
        """Delete every key and the document of a store; return what existed."""
        with self._writing(context, store, now, create=False) as state:
            return None if state is None else state.clear(now)

    def clear_cache(self, context: str | None, store: str | None, now: int) -> int:
        """Delete evict-policy and TTL keys, and evict-policy store documents.

        Without ``store``, a store whose damage shows only now (a value a write
        refuses to carry) is left out with a logged warning, as listings leave
        out a damaged file; a named store raises.
        """
        if store is not None:
            return self._clear_cache_of(context, store, now)
        deleted = 0
        for name in self.list_stores(context, now):
            try:
                deleted += self._clear_cache_of(context, name, now)
            except CorruptStoreError as exc:
                logger.warning("not clearing the cache of a damaged store: %s", exc)
        return deleted

    def _clear_cache_of(self, context: str | None, store: str, now: int) -> int:
        """Delete one store's cache entries; return how many."""
        with self._writing(context, store, now, create=False) as state:
            return 0 if state is None else state.clear_cache()

    def list_stores(self, context: str | None, now: int) -> list[str]:
        """Return the names of the stores that exist in ``context``, sorted.

        A damaged store is left out with a logged warning, so that one bad
        store does not hide the others; calls naming it still raise.
        """
        names = []
        for name in self._store_names(context):
            try:
                exists = self.get_store(context, name, now) is not None
            except CorruptStoreError as exc:
                logger.warning("leaving out a damaged store: %s", exc)
                continue
            if exists:
                names.append(name)
        return sorted(names)

    def sweep(self, now: int) -> dict[tuple[str | None, str], int]:
        """Delete expired keys for good in every context; damaged stores are skipped."""
        counts: dict[tuple[str | None, str], int] = {}
        for context in self.list_contexts():
            for store in self._store_names(context):
                try:
                    with self._writing(context, store, now, create=False) as state:
                        deleted = 0 if state is None else state.drop_expired(now)
                except CorruptStoreError as exc:
                    logger.warning("not sweeping a damaged store: %s", exc)
                    continue
                except LockTimeoutError as exc:
                    logger.warning(BUSY_STORE_NOT_SWEPT, store, exc)
                    continue
                if deleted:
                    counts[(context, store)] = deleted
                    logger.debug("swept %d expired keys from %r", deleted, store)
        return counts

    # Whole stores ----------------------------------------------------------------

    def dump_store(
        self, context: str | None, store: str, now: int
    ) -> tuple[StoreRecord | None, list[KeyRecord]]:
        """Return the store document and every live key, in one snapshot."""
        with self._reading(context, store) as state:
            return (None, []) if state is None else state.dump(now)

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
        """Write a document and keys exactly as given, in one step."""
        with self._writing(context, store, now, create=True) as state:
            assert state is not None
            return state.load(document, keys, now, replace=replace)


def describe_context(context: str | None) -> str:
    """Name a context for an error message."""
    return "the global context" if context is None else f"dataset {context!r}"
