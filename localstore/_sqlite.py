"""The SQLite backend: one SQLite file per store, in WAL mode.

Layout: ``<root>/<collection>/<context>/<store>.sqlite``, names encoded by
:mod:`localstore._paths`. Each file records its schema version
(``PRAGMA user_version``), an application id that marks it as a localstore
file, and the exact store name and dataset id.

Concurrency rests on SQLite's own locking: every write is one statement or one
``BEGIN IMMEDIATE`` transaction, and a busy timeout makes writers queue instead
of failing. A ``filelock`` lock is taken only to create a file, never per
operation. Files are created and opened by :mod:`localstore._sqlite_files`, their
connections pooled by :mod:`localstore._sqlite_pool`.

A store file is never unlinked while the library runs: other processes may hold
it open, and SQLite deletes a WAL file by name when its last connection closes,
so unlinking a live database can destroy the WAL of a new file created at the
same path. ``delete_store`` therefore empties the file in place.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from types import TracebackType

from . import _log
from ._backend import BUSY_STORE_NOT_SWEPT, Backend, KeyRecord, StoreRecord, catch_up
from ._sqlite_pool import StoreFiles
from ._sqlite_sql import (
    COUNT_LIVE_KEYS,
    DELETE_ALL_KEYS,
    DELETE_CACHE_KEYS,
    DELETE_EVICT_STORE_DOC,
    DELETE_EXPIRED,
    DELETE_LIVE_KEY,
    DELETE_STORE_DOC,
    HAS_KEY,
    INSERT_KEY_IF_ABSENT,
    INSERT_STORE_DOC,
    LOAD_KEY_IF_ABSENT,
    LOAD_KEY_REPLACING,
    LOAD_STORE_DOC_IF_ABSENT,
    LOAD_STORE_DOC_REPLACING,
    PUT_KEY,
    SELECT_ALL_KEYS,
    SELECT_EXPIRED_KEYS,
    SELECT_ITEMS,
    SELECT_ITEMS_FROM,
    SELECT_ITEMS_IN_RANGE,
    SELECT_KEY,
    SELECT_LIVE_RECORDS,
    SELECT_OLDEST_LIVE,
    SELECT_STORE_DOC,
    SELECT_VALUE,
    SET_KEY,
    STORE_EXISTS,
    UPDATE_EXPIRY,
    UPDATE_POLICY,
    UPSERT_KEY_AT,
)
from .errors import (
    CorruptStoreError,
    LocalStoreError,
    LockTimeoutError,
    StoreExistsError,
)

__all__ = ["SQLiteBackend"]


#: Free pages (of 4 KiB) an emptied store may keep before delete_store vacuums it.
_VACUUM_FREE_PAGES = 256


class SQLiteBackend(Backend):
    """Keeps each store in one SQLite file; the default backend."""

    kind = "sqlite"

    def __init__(self, root: str, collection: str, *, timeout: float = 10.0) -> None:
        if sqlite3.sqlite_version_info < (3, 35):
            raise LocalStoreError(
                f"the SQLite backend needs SQLite 3.35 or newer; this Python has "
                f"{sqlite3.sqlite_version} (use backend='json' or a newer Python)"
            )
        super().__init__(root, collection, timeout=timeout)
        self._files = StoreFiles(root, collection, timeout)
        self._layout = self._files.layout

    # Paths -----------------------------------------------------------------------

    def context_dir(self, context: str | None) -> str:
        """Return the directory that holds the stores of ``context``."""
        return self._layout.context_dir(context)

    def store_path(self, context: str | None, store: str) -> str:
        """Return the file that holds ``store`` of ``context``."""
        return self._layout.store_path(context, store)

    # Keys ------------------------------------------------------------------------

    def get_key(
        self, context: str | None, store: str, key: str, now: int
    ) -> KeyRecord | None:
        """Return the live key, or ``None``."""
        row = self._files.run(context, store, SELECT_KEY, (key, now), False, False)
        return None if row is None else KeyRecord(*row)

    def get_value(
        self, context: str | None, store: str, key: str, now: int
    ) -> str | None:
        """Return the live key's value text, or ``None``."""
        row = self._files.run(context, store, SELECT_VALUE, (key, now), False, False)
        return None if row is None else row[0]

    def has_key(self, context: str | None, store: str, key: str, now: int) -> bool:
        """Tell whether the key is live."""
        row = self._files.run(context, store, HAS_KEY, (key, now), False, False)
        return row is not None

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
        """Write a key (see :meth:`Backend.set_key`), in one statement."""
        statement = INSERT_KEY_IF_ABSENT if only_if_absent else SET_KEY
        ttl = None if expires_at is None else expires_at - now
        with self._files.connect(context, store, create=True, writes=True) as conn:
            assert conn is not None
            row = conn.execute(statement, (key, value, now, ttl, policy)).fetchone()
        if row is None:
            return None
        return KeyRecord(key, value, row[0], row[1], row[2], policy)

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
        """Write a key as :meth:`set_key` does, returning nothing: a little quicker."""
        params: tuple[object, ...]
        if expires_at is None:
            statement, params = PUT_KEY[policy, False], (key, value, now)
        else:
            statement = PUT_KEY[policy, True]
            params = (key, value, now, expires_at - now)
        self._files.run(context, store, statement, params, True, True)

    def set_keys(
        self,
        context: str | None,
        store: str,
        items: list[tuple[str, str]],
        expires_at: int | None,
        policy: str,
        now: int,
    ) -> None:
        """Write many keys in one transaction."""
        with self._files.connect(context, store, create=True, writes=True) as conn:
            assert conn is not None
            with _transaction(conn):
                now, expires_at = catch_up(now, expires_at)
                rows = ((key, value, now, expires_at, policy) for key, value in items)
                conn.executemany(UPSERT_KEY_AT, rows)

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
        """Write a live key if its value matches, atomically."""
        with self._files.connect(context, store, writes=True) as conn:
            if conn is None:
                return None
            with _transaction(conn):
                # Live or not is judged once the write lock is held: the key may
                # have expired while this call waited for another writer.
                now, expires_at = catch_up(now, expires_at)
                row = conn.execute(SELECT_KEY, (key, now)).fetchone()
                if row is None or not matches(row[1]):
                    return None
                conn.execute(UPSERT_KEY_AT, (key, value, now, expires_at, policy))
        return KeyRecord(key, value, row[2], now, expires_at, policy)

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
        with self._files.connect(context, store, writes=True) as conn:
            if conn is None:
                return None
            row = None
            with _transaction(conn):
                now, expires_at = catch_up(now, expires_at)
                if set_expiry:
                    row = conn.execute(
                        UPDATE_EXPIRY,
                        {"key": key, "now": now, "expires_at": expires_at},
                    ).fetchone()
                if policy is not None and (row is not None or not set_expiry):
                    row = conn.execute(
                        UPDATE_POLICY, {"key": key, "now": now, "policy": policy}
                    ).fetchone()
        return None if row is None else KeyRecord(*row)

    def delete_key(self, context: str | None, store: str, key: str, now: int) -> bool:
        """Delete a key; return whether a live key was deleted."""
        deleted = self._files.run(
            context, store, DELETE_LIVE_KEY, (key, now), False, True
        )
        return bool(deleted)

    def list_items(
        self, context: str | None, store: str, now: int, prefix: str | None
    ) -> list[tuple[str, str]]:
        """Return the live ``(key, value)`` pairs, by key, optionally by prefix."""
        with self._files.connect(context, store, writes=False) as conn:
            if conn is None:
                return []
            if not prefix:
                return conn.execute(SELECT_ITEMS, {"now": now}).fetchall()
            high = _prefix_end(prefix)
            if high is None:
                rows = conn.execute(SELECT_ITEMS_FROM, {"low": prefix, "now": now})
            else:
                rows = conn.execute(
                    SELECT_ITEMS_IN_RANGE, {"low": prefix, "high": high, "now": now}
                )
            return rows.fetchall()

    def list_keys(self, context: str | None, store: str, now: int) -> list[str]:
        """Return the live keys, sorted."""
        with self._files.connect(context, store, writes=False) as conn:
            if conn is None:
                return []
            # Scanning the key index alone is the fast path; expired keys, which
            # the expiry index finds cheaply, are taken out afterwards.
            expired = conn.execute(SELECT_EXPIRED_KEYS, {"now": now}).fetchall()
            keys = [row[0] for row in conn.execute(SELECT_ALL_KEYS)]
        if expired:
            gone = {row[0] for row in expired}
            keys = [key for key in keys if key not in gone]
        return keys

    def count_keys(self, context: str | None, store: str, now: int) -> int:
        """Return the number of live keys."""
        with self._files.connect(context, store, writes=False) as conn:
            if conn is None:
                return 0
            count: int = conn.execute(COUNT_LIVE_KEYS, (now,)).fetchone()[0]
        return count

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
        with self._files.connect(context, store, create=True, writes=True) as conn:
            assert conn is not None
            with _transaction(conn):
                try:
                    conn.execute(
                        INSERT_STORE_DOC,
                        {"metadata": metadata, "now": now, "policy": policy},
                    )
                except sqlite3.IntegrityError as exc:
                    raise StoreExistsError(
                        f"store {store!r} already exists in "
                        f"{_describe_context(context)}"
                    ) from exc
        return StoreRecord(metadata, now, None, policy, True)

    def get_store(
        self, context: str | None, store: str, now: int
    ) -> StoreRecord | None:
        """Return the store's document, a made-up one for a key-only store, or None."""
        with self._files.connect(context, store, writes=False) as conn:
            if conn is None:
                return None
            return self._read_store(conn, now)

    @staticmethod
    def _read_store(conn: sqlite3.Connection, now: int) -> StoreRecord | None:
        """Read the store document, or make one up from the live keys."""
        row = conn.execute(SELECT_STORE_DOC).fetchone()
        if row is not None:
            return StoreRecord(row[0], row[1], row[2], row[3], has_document=True)
        oldest = conn.execute(SELECT_OLDEST_LIVE, {"now": now}).fetchone()[0]
        if oldest is None:
            return None
        return StoreRecord(None, oldest, None, "persist", has_document=False)

    def delete_store(
        self, context: str | None, store: str, now: int
    ) -> StoreRecord | None:
        """Empty a store in place (see the module docstring); return what existed."""
        with self._files.connect(context, store, writes=True) as conn:
            if conn is None:
                return None
            with _transaction(conn):
                existing = self._read_store(conn, now)
                conn.execute(DELETE_ALL_KEYS)
                conn.execute(DELETE_STORE_DOC)
            _give_back_free_pages(conn)
        return existing

    def clear_cache(self, context: str | None, store: str | None, now: int) -> int:
        """Delete evict-policy and TTL keys, and evict-policy store documents."""
        stores = self.list_stores(context, now) if store is None else [store]
        deleted = 0
        for name in stores:
            with self._files.connect(context, name, writes=True) as conn:
                if conn is None:
                    continue
                with _transaction(conn):
                    deleted += conn.execute(DELETE_CACHE_KEYS).rowcount
                    deleted += conn.execute(DELETE_EVICT_STORE_DOC).rowcount
        return deleted

    def list_stores(self, context: str | None, now: int) -> list[str]:
        """Return the names of the stores that exist in ``context``, sorted.

        A damaged store file is left out, with a logged warning, so that one bad
        file does not hide the other stores; calls naming it still raise.
        """
        names = []
        for store in self._layout.store_names(context):
            try:
                exists = self.has_store(context, store, now)
            except CorruptStoreError as exc:
                _log.warning(__name__, "leaving out a damaged store: %s", exc)
                continue
            if exists:
                names.append(store)
        return sorted(names)

    def has_store(self, context: str | None, store: str, now: int) -> bool:
        """Tell whether a store has a document or a live key, in one statement."""
        with self._files.connect(context, store, writes=False) as conn:
            if conn is None:
                return False
            row = conn.execute(STORE_EXISTS, (now,)).fetchone()
        return bool(row[0])

    def list_contexts(self) -> list[str | None]:
        """Return every context with a directory under the collection."""
        return self._layout.contexts()

    def sweep(self, now: int) -> dict[tuple[str | None, str], int]:
        """Delete expired keys for good in every context of the collection."""
        counts: dict[tuple[str | None, str], int] = {}
        for context in self.list_contexts():
            for store in self._layout.store_names(context):
                try:
                    deleted = self._sweep_store(context, store, now)
                except CorruptStoreError as exc:
                    _log.warning(__name__, "not sweeping a damaged store: %s", exc)
                    continue
                except LockTimeoutError as exc:
                    _log.warning(__name__, BUSY_STORE_NOT_SWEPT, store, exc)
                    continue
                if deleted:
                    counts[(context, store)] = deleted
                    _log.debug(
                        __name__, "swept %d expired keys from %r", deleted, store
                    )
        return counts

    def _sweep_store(self, context: str | None, store: str, now: int) -> int:
        """Delete the expired keys of one store; return how many."""
        with self._files.connect(context, store, writes=True) as conn:
            if conn is None:
                return 0
            with _transaction(conn):
                deleted: int = conn.execute(DELETE_EXPIRED, {"now": now}).rowcount
        return deleted

    # Whole stores ----------------------------------------------------------------

    def dump_store(
        self, context: str | None, store: str, now: int
    ) -> tuple[StoreRecord | None, list[KeyRecord]]:
        """Return the store document and every live key, in one snapshot."""
        with self._files.connect(context, store, writes=False) as conn:
            if conn is None:
                return None, []
            conn.execute("BEGIN")  # a read transaction: one snapshot for both reads
            try:
                row = conn.execute(SELECT_STORE_DOC).fetchone()
                keys = [
                    KeyRecord(*r)
                    for r in conn.execute(SELECT_LIVE_RECORDS, {"now": now})
                ]
            finally:
                conn.execute("COMMIT")
        document = (
            None
            if row is None
            else StoreRecord(row[0], row[1], row[2], row[3], has_document=True)
        )
        return document, keys

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
        """Write a document and keys exactly as given, in one transaction."""
        written = 0
        statement = LOAD_KEY_REPLACING if replace else LOAD_KEY_IF_ABSENT
        with self._files.connect(context, store, create=True, writes=True) as conn:
            assert conn is not None
            with _transaction(conn):
                if document is not None:
                    conn.execute(
                        LOAD_STORE_DOC_REPLACING
                        if replace
                        else LOAD_STORE_DOC_IF_ABSENT,
                        {
                            "metadata": document.metadata,
                            "created_at": document.created_at,
                            "updated_at": document.updated_at,
                            "policy": document.policy,
                        },
                    )
                for record in keys:
                    params = {**record._asdict(), "now": now}
                    written += len(conn.execute(statement, params).fetchall())
        return written

    def change_marker(self, context: str | None, store: str) -> object:
        """Return the file's identity and SQLite's data version for this process."""
        with self._files.connect(context, store, writes=False) as conn:
            if conn is None:
                return None
            version = conn.execute("PRAGMA data_version").fetchone()[0]
        return (self._files.identity(context, store), version)

    def close(self) -> None:
        """Close the connections to this backend's files that no call is using."""
        self._files.close()


def _give_back_free_pages(conn: sqlite3.Connection) -> None:
    """Shrink a store file that ``delete_store`` emptied, if that frees much.

    SQLite keeps freed pages for reuse; a store emptied in place (see the
    module docstring) would keep its largest size for good. ``VACUUM`` of an
    empty store is cheap. It needs the write lock again: if another writer has
    it by now, the space stays for reuse, and the delete has happened anyway.
    """
    if conn.execute("PRAGMA freelist_count").fetchone()[0] < _VACUUM_FREE_PAGES:
        return
    try:
        conn.execute("VACUUM")
        # The vacuumed copy sits in the WAL until a checkpoint; make it now, so
        # the space comes back while the process runs.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.OperationalError as exc:
        _log.debug(__name__, "left free pages in place: %s", exc)


def _prefix_end(prefix: str) -> str | None:
    """Return the smallest string above every string that starts with ``prefix``."""
    for index in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[index])
        if code < 0x10FFFF:
            following = code + 1
            if 0xD800 <= following <= 0xDFFF:
                following = 0xE000  # surrogates cannot be stored in UTF-8
            return prefix[:index] + chr(following)
    return None


def _describe_context(context: str | None) -> str:
    """Name a context for an error message."""
    return "the global context" if context is None else f"dataset {context!r}"


def _transaction(conn: sqlite3.Connection) -> _Transaction:
    """Run the enclosed statements as one immediate (write-locked) transaction."""
    return _Transaction(conn)


class _Transaction:
    """The ``with`` block of :func:`_transaction` (a class: it is cheaper to enter)."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
