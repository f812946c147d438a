"""The SQLite backend: one SQLite file per store, in WAL mode.

Layout: ``<root>/<collection>/<context>/<store>.sqlite``, names encoded by
:mod:`localstore._paths`. Each file records its schema version
(``PRAGMA user_version``), an application id that marks it as a localstore
file, and the exact store name and dataset id.

Concurrency rests on SQLite's own locking: every write is one statement or one
``BEGIN IMMEDIATE`` transaction, and a busy timeout makes writers queue instead
of failing. A ``filelock`` lock is taken only to create a file, never per
operation. Connections are kept open, one per file per process, shared by
threads under a lock, and at most :data:`MAX_OPEN_FILES` at once.

A store file is never unlinked while the library runs: other processes may hold
it open, and SQLite deletes a WAL file by name when its last connection closes,
so unlinking a live database can destroy the WAL of a new file created at the
same path. ``delete_store`` therefore empties the file in place.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from stat import S_ISLNK
from types import TracebackType
from typing import TypeVar

from ._backend import Backend, KeyRecord, StoreRecord, catch_up
from ._layout import FileLayout, list_directory, make_private_dirs
from ._sqlite_errors import is_shm_error, raise_converted
from ._sqlite_sql import (
    APPLICATION_ID,
    COUNT_LIVE_KEYS,
    DELETE_ALL_KEYS,
    DELETE_CACHE_KEYS,
    DELETE_EVICT_STORE_DOC,
    DELETE_EXPIRED,
    DELETE_KEY,
    DELETE_STORE_DOC,
    HAS_KEY,
    INSERT_KEY_IF_ABSENT,
    INSERT_STORE_DOC,
    INSERT_STORE_INFO,
    LOAD_KEY_IF_ABSENT,
    LOAD_KEY_REPLACING,
    LOAD_STORE_DOC_IF_ABSENT,
    LOAD_STORE_DOC_REPLACING,
    PURGE_EXPIRED,
    SCHEMA,
    SCHEMA_VERSION,
    SELECT_ALL_KEYS,
    SELECT_EXPIRED_KEYS,
    SELECT_ITEMS,
    SELECT_ITEMS_FROM,
    SELECT_ITEMS_IN_RANGE,
    SELECT_KEY,
    SELECT_LIVE_RECORDS,
    SELECT_OLDEST_LIVE,
    SELECT_STORE_DOC,
    SELECT_STORE_INFO,
    SELECT_VALUE,
    STORE_EXISTS,
    UPDATE_EXPIRY,
    UPDATE_POLICY,
    UPSERT_KEY,
    UPSERT_KEY_QUIETLY,
)
from .errors import (
    CorruptStoreError,
    LocalStoreError,
    LockTimeoutError,
    StoreExistsError,
)

__all__ = ["SQLiteBackend"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

SUFFIX = ".sqlite"

#: Free pages (of 4 KiB) an emptied store may keep before delete_store vacuums it.
_VACUUM_FREE_PAGES = 256

#: How many store files one process keeps open at most (each holds 3 descriptors).
MAX_OPEN_FILES = 64


class _Handle:
    """An open connection to one store file, and the lock its users take turns on."""

    __slots__ = ("closed", "conn", "identity", "lock", "pooled", "timeout")

    def __init__(self, conn: sqlite3.Connection, identity: tuple[int, int]) -> None:
        self.conn = conn
        self.identity = identity
        self.lock = threading.Lock()
        self.closed = False
        self.pooled = True
        self.timeout = -1.0


class _Connection:
    """One call's hold on a store's connection (see ``SQLiteBackend._connect``).

    A class rather than a generator-based context manager, because every call
    enters one: it costs a few microseconds less.
    """

    __slots__ = ("backend", "context", "create", "handle", "path", "store")

    def __init__(
        self,
        backend: SQLiteBackend,
        path: str,
        context: str | None,
        store: str,
        create: bool,
    ) -> None:
        self.backend = backend
        self.path = path
        self.context = context
        self.store = store
        self.create = create
        self.handle: _Handle | None = None

    def __enter__(self) -> sqlite3.Connection | None:
        try:
            return self._acquire()
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def _acquire(self) -> sqlite3.Connection | None:
        """Take the lock of the store's handle; return its connection, or None."""
        backend = self.backend
        while True:
            handle = backend._handle(
                self.path, self.context, self.store, create=self.create
            )
            if handle is None:
                return None
            handle.lock.acquire()
            if not handle.closed:
                break
            handle.lock.release()  # evicted between lookup and lock: look again
        self.handle = handle
        if handle.timeout != backend.timeout:
            milliseconds = int(backend.timeout * 1000)
            handle.conn.execute(f"PRAGMA busy_timeout = {milliseconds}")
            handle.timeout = backend.timeout
        return handle.conn

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        handle, self.handle = self.handle, None
        try:
            if handle is not None:
                try:
                    if exc is None and not handle.pooled:
                        handle.conn.close()
                finally:
                    handle.lock.release()
        except BaseException as error:  # closing the connection failed
            raise_converted(error, self.path)
            raise
        if exc is not None:
            raise_converted(exc, self.path)


class _Pool:
    """The process's open store files, least recently used first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handles: OrderedDict[str, _Handle] = OrderedDict()
        self.abandoned: list[_Handle] = []


_pool = _Pool()


def _forget_inherited_connections() -> None:
    """In a forked child, drop the parent's connections without closing them.

    Closing would run SQLite's last-connection cleanup on files the parent is
    still using; the parent's locks are not the child's to release.
    """
    global _pool
    inherited = _pool
    _pool = _Pool()
    _pool.abandoned = [*inherited.abandoned, *inherited.handles.values()]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited_connections)


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
        self._layout = FileLayout(root, collection, SUFFIX, self._read_info)

    # Paths -----------------------------------------------------------------------

    def context_dir(self, context: str | None) -> str:
        """Return the directory that holds the stores of ``context``."""
        return self._layout.context_dir(context)

    def store_path(self, context: str | None, store: str) -> str:
        """Return the file that holds ``store`` of ``context``."""
        return self._layout.store_path(context, store)

    # Connections -----------------------------------------------------------------

    def _connect(self, context: str | None, store: str, *, create: bool) -> _Connection:
        """Return a ``with`` context that gives the store's open connection.

        It gives ``None`` if the store has no file; with ``create`` the file is
        made first when missing. SQLite and OS errors raised inside are
        converted to :class:`LocalStoreError` subclasses.
        """
        path = self.store_path(context, store)
        return _Connection(self, path, context, store, create)

    def _handle(
        self, path: str, context: str | None, store: str, *, create: bool
    ) -> _Handle | None:
        """Return the pooled handle of ``path``, opening (or creating) it if needed."""
        # The one filesystem check per call: it notices a file that was deleted
        # or replaced behind our back (say, a test removed its temporary root).
        # lstat, so that a symbolic link planted in place of the file is seen.
        try:
            stat = os.lstat(path)
        except FileNotFoundError:
            if not create:
                self._discard(path)
                return None
            self._create(path, context, store)
            stat = os.lstat(path)
        identity = (stat.st_dev, stat.st_ino)

        pool = _pool
        with pool.lock:
            handle = pool.handles.get(path)
            if handle is not None:
                if handle.identity == identity:
                    pool.handles.move_to_end(path)
                    return handle
                del pool.handles[path]
                pool.abandoned.append(handle)  # see _forget_inherited_connections

        conn, read_only = self._open(path, stat, context, store)
        handle = _Handle(conn, identity)
        if read_only:
            handle.pooled = False  # read afresh each call: the owner may write
            return handle
        with pool.lock:
            existing = pool.handles.get(path)
            if existing is not None and existing.identity == identity:
                handle.conn.close()  # another thread won the race
                return existing
            pool.handles[path] = handle
            evicted = self._evict_over_limit(pool)
        for old in evicted:
            with old.lock:
                old.closed = True
                old.conn.close()
        return handle

    @staticmethod
    def _evict_over_limit(pool: _Pool) -> list[_Handle]:
        """Take the least recently used handles out of a pool that is too full."""
        evicted = []
        while len(pool.handles) > MAX_OPEN_FILES:
            _, old = pool.handles.popitem(last=False)
            evicted.append(old)
        return evicted

    def _discard(self, path: str) -> None:
        """Forget the handle of a file that no longer exists."""
        pool = _pool
        with pool.lock:
            handle = pool.handles.pop(path, None)
            if handle is not None:
                pool.abandoned.append(handle)

    def _open(
        self, path: str, stat: os.stat_result, context: str | None, store: str
    ) -> tuple[sqlite3.Connection, bool]:
        """Open an existing store file and check that it is this store's.

        Returns the connection and whether it only reads the file as it stands
        (see :func:`_is_readable_as_it_stands`).
        """
        _refuse_links(path, stat)
        conn, read_only = self._connect_file(_uri(path, "rw")), False
        try:
            try:
                conn.execute("PRAGMA synchronous = NORMAL")
                app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if not _is_readable_as_it_stands(path, exc):
                    raise
                conn.close()
                conn = self._connect_file(_uri(path, "ro") + "&immutable=1")
                read_only = True
                app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except BaseException:
            conn.close()
            raise
        if app_id != APPLICATION_ID or version < 1:
            conn.close()
            raise CorruptStoreError(
                f"{path} is not a localstore store file (application id "
                f"{app_id:#x}, schema version {version}); it was left as it is",
                path,
            )
        if version > SCHEMA_VERSION:
            conn.close()
            raise CorruptStoreError(
                f"{path} has schema version {version}, newer than this localstore "
                f"understands ({SCHEMA_VERSION}); upgrade localstore",
                path,
            )
        try:
            recorded = conn.execute(SELECT_STORE_INFO).fetchone()
        except BaseException:
            conn.close()
            raise
        if recorded != (store, context):  # a file copied or renamed by hand
            conn.close()
            raise CorruptStoreError(
                f"{path} records store {recorded and recorded[0]!r} of dataset_id "
                f"{recorded and recorded[1]!r}, not store {store!r} of {context!r}; "
                "it was left as it is",
                path,
            )
        logger.debug("opened store file %s%s", path, " (read-only)" * read_only)
        return conn, read_only

    def _connect_file(self, uri: str) -> sqlite3.Connection:
        """Open a SQLite connection for the pool (autocommit, shared by threads)."""
        return sqlite3.connect(
            uri,
            uri=True,
            timeout=self.timeout,
            isolation_level=None,
            check_same_thread=False,
        )

    def _create(self, path: str, context: str | None, store: str) -> None:
        """Create a store file, complete, under the context's creation lock.

        The file is built under a temporary name and renamed into place, so a
        crash leaves no half-made store: only a temporary file that ``doctor``
        reports.
        """
        directory = os.path.dirname(path)
        make_private_dirs(directory)
        import uuid  # imported late, as filelock: it imports platform (milliseconds)

        from filelock import FileLock  # imported late: only creation needs it

        lock = FileLock(
            os.path.join(directory, ".lock"), timeout=self.timeout, mode=0o600
        )
        try:
            lock.acquire()
        except TimeoutError as exc:
            raise LockTimeoutError(
                f"timed out after {self.timeout} s waiting for {lock.lock_file}",
                lock.lock_file,
            ) from exc
        try:
            if os.path.exists(path):
                return
            _remove_abandoned_temporaries(directory)
            temporary = f"{path}.{uuid.uuid4().hex}.tmp"
            try:
                self._initialize(temporary, context, store)
                _flush_to_disk(temporary)
                os.rename(temporary, path)
            finally:
                for leftover in (temporary, temporary + "-wal", temporary + "-shm"):
                    if os.path.lexists(leftover):
                        os.unlink(leftover)
            logger.debug("created store file %s", path)
        finally:
            lock.release()

    def _initialize(self, path: str, context: str | None, store: str) -> None:
        """Write a new, empty store file at ``path``."""
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _NOFOLLOW, 0o600))
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            # The file is not visible under its real name yet, so the statements
            # need no transaction around them, and no flush to disk of their own:
            # the caller flushes the finished file once, before renaming it.
            conn.execute("PRAGMA synchronous = OFF")
            conn.executescript(f"BEGIN;\n{SCHEMA}")  # one transaction: quicker
            conn.execute(
                INSERT_STORE_INFO,
                {
                    "store_name": store,
                    "dataset_id": context,
                    "now": time.time_ns() // 1000,
                },
            )
            conn.execute("COMMIT")
            # WAL last: until here every page went straight into the file, so a
            # full disk raised instead of leaving pages in a WAL file that the
            # caller deletes (closing ignores a checkpoint that fails).
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()

    # Keys ------------------------------------------------------------------------

    def get_key(
        self, context: str | None, store: str, key: str, now: int
    ) -> KeyRecord | None:
        """Return the live key, or ``None``."""
        with self._connect(context, store, create=False) as conn:
            if conn is None:
                return None
            row = conn.execute(SELECT_KEY, {"key": key, "now": now}).fetchone()
        return None if row is None else KeyRecord(*row)

    def get_value(
        self, context: str | None, store: str, key: str, now: int
    ) -> str | None:
        """Return the live key's value text, or ``None``."""
        with self._connect(context, store, create=False) as conn:
            if conn is None:
                return None
            row = conn.execute(SELECT_VALUE, (key, now)).fetchone()
        return None if row is None else row[0]

    def has_key(self, context: str | None, store: str, key: str, now: int) -> bool:
        """Tell whether the key is live."""
        with self._connect(context, store, create=False) as conn:
            if conn is None:
                return False
            row = conn.execute(HAS_KEY, (key, now)).fetchone()
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
        """Write a key (see :meth:`Backend.set_key`)."""
        statement = INSERT_KEY_IF_ABSENT if only_if_absent else UPSERT_KEY
        with self._connect(context, store, create=True) as conn:
            assert conn is not None
            with _transaction(conn):
                now, expires_at = catch_up(now, expires_at)
                params = {
                    "key": key,
                    "value": value,
                    "now": now,
                    "expires_at": expires_at,
                    "policy": policy,
                }
                row = conn.execute(statement, params).fetchone()
                conn.execute(PURGE_EXPIRED, {"now": now})
        if row is None:
            return None
        return KeyRecord(key, value, row[0], now, expires_at, policy)

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
        with self._connect(context, store, create=True) as conn:
            assert conn is not None
            with _transaction(conn):
                now, expires_at = catch_up(now, expires_at)
                rows = (
                    {
                        "key": key,
                        "value": value,
                        "now": now,
                        "expires_at": expires_at,
                        "policy": policy,
                    }
                    for key, value in items
                )
                conn.executemany(UPSERT_KEY_QUIETLY, rows)

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
        with self._connect(context, store, create=False) as conn:
            if conn is None:
                return None
            with _transaction(conn):
                row = conn.execute(SELECT_KEY, {"key": key, "now": now}).fetchone()
                if row is None or not matches(row[1]):
                    return None
                now, expires_at = catch_up(now, expires_at)
                conn.execute(
                    UPSERT_KEY,
                    {
                        "key": key,
                        "value": value,
                        "now": now,
                        "expires_at": expires_at,
                        "policy": policy,
                    },
                ).fetchall()
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
        with self._connect(context, store, create=False) as conn:
            if conn is None:
                return None
            row = None
            with _transaction(conn):
                if set_expiry:
                    now, expires_at = catch_up(now, expires_at)
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
        with self._connect(context, store, create=False) as conn:
            if conn is None:
                return False
            with _transaction(conn):
                row = conn.execute(DELETE_KEY, {"key": key}).fetchone()
        return row is not None and (row[0] is None or row[0] > now)

    def list_items(
        self, context: str | None, store: str, now: int, prefix: str | None
    ) -> list[tuple[str, str]]:
        """Return the live ``(key, value)`` pairs, by key, optionally by prefix."""
        with self._connect(context, store, create=False) as conn:
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
        with self._connect(context, store, create=False) as conn:
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
        with self._connect(context, store, create=False) as conn:
            if conn is None:
                return 0
            count: int = conn.execute(COUNT_LIVE_KEYS, {"now": now}).fetchone()[0]
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
        with self._connect(context, store, create=True) as conn:
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
        with self._connect(context, store, create=False) as conn:
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
        with self._connect(context, store, create=False) as conn:
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
            with self._connect(context, name, create=False) as conn:
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
                logger.warning("leaving out a damaged store: %s", exc)
                continue
            if exists:
                names.append(store)
        return sorted(names)

    def has_store(self, context: str | None, store: str, now: int) -> bool:
        """Tell whether a store has a document or a live key, in one statement."""
        with self._connect(context, store, create=False) as conn:
            if conn is None:
                return False
            row = conn.execute(STORE_EXISTS, {"now": now}).fetchone()
        return bool(row[0])

    def _read_info(self, path: str) -> tuple[str, str | None] | None:
        """Read the store name and dataset id recorded inside a store file."""
        try:
            conn = sqlite3.connect(_uri(path, "ro"), uri=True, timeout=self.timeout)
            try:
                row = conn.execute(
                    "SELECT store_name, dataset_id FROM store_info"
                ).fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            logger.warning("skipping %s: not a readable store file", path)
            return None
        return None if row is None else (str(row[0]), row[1])

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
                    logger.warning("not sweeping a damaged store: %s", exc)
                    continue
                if deleted:
                    counts[(context, store)] = deleted
                    logger.debug("swept %d expired keys from %r", deleted, store)
        return counts

    def _sweep_store(self, context: str | None, store: str, now: int) -> int:
        """Delete the expired keys of one store; return how many."""
        with self._connect(context, store, create=False) as conn:
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
        with self._connect(context, store, create=False) as conn:
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
        with self._connect(context, store, create=True) as conn:
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
        with self._connect(context, store, create=False) as conn:
            if conn is None:
                return None
            version = conn.execute("PRAGMA data_version").fetchone()[0]
        handle = _pool.handles.get(self.store_path(context, store))
        return (None if handle is None else handle.identity, version)

    def close(self) -> None:
        """Close the connections to this backend's files that no call is using."""
        prefix = self._layout.collection_dir + os.sep
        with _pool.lock:
            mine = [path for path in _pool.handles if path.startswith(prefix)]
            handles = [_pool.handles.pop(path) for path in mine]
        for handle in handles:
            with handle.lock:
                handle.closed = True
                handle.conn.close()


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _is_readable_as_it_stands(path: str, exc: sqlite3.OperationalError) -> bool:
    """Tell whether a file that failed to open may be read without its -shm file.

    A reader of a WAL file needs a -shm file, which cannot be made in a
    directory we may not write, nor on a full disk. With no -wal file (or an
    empty one) every write is in the file itself, which SQLite can then read as
    it stands (``immutable``).
    """
    if not is_shm_error(exc):
        return False
    try:
        return os.path.getsize(path + "-wal") == 0
    except FileNotFoundError:
        return True


def _refuse_links(path: str, stat: os.stat_result) -> None:
    """Raise if a store file or its WAL files are symbolic links.

    SQLite follows links, so writing through a planted link would change its
    target; localstore never creates one.
    """
    links = [path] if S_ISLNK(stat.st_mode) else []
    links += [name for name in (path + "-wal", path + "-shm") if os.path.islink(name)]
    if links:
        raise CorruptStoreError(
            f"{links[0]} is a symbolic link, which localstore never follows; "
            "it was left as it is",
            path,
        )


def _flush_to_disk(path: str) -> None:
    """Flush a finished file's bytes to disk before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        logger.debug("left free pages in place: %s", exc)


_TEMPORARY = re.compile(r"\.sqlite\.[0-9a-f]{32}\.tmp(-wal|-shm|-journal)?\Z")


def _remove_abandoned_temporaries(directory: str) -> None:
    """Delete half-made store files that a killed process left in ``directory``.

    Only called under the context's creation lock, and only creators under that
    lock make such files, so every one found is abandoned.
    """
    for entry in list_directory(directory):
        if _TEMPORARY.search(entry):
            os.unlink(os.path.join(directory, entry))  # a planted link: only it goes
            logger.debug("removed abandoned temporary file %s in %s", entry, directory)


def _uri(path: str, mode: str) -> str:
    """Return the SQLite URI of a file path, escaping what a URI would misread."""
    escaped = path.replace("%", "%25").replace("?", "%3F").replace("#", "%23")
    if os.sep == "\\":
        escaped = "/" + escaped.replace("\\", "/")
    return f"file:{escaped}?mode={mode}"


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
