"""The SQLite backend's files: creating, opening and checking them, and pooling.

A store file is created complete under a temporary name and renamed into place,
under the context directory's ``filelock`` lock: the only lock localstore takes
itself. Once open, a file's connection stays in the process's pool, shared by
threads under a lock, at most :data:`MAX_OPEN_FILES` at once.

A file deleted or replaced behind the pool's back (say, a test removed its
temporary root) must not be used: its connection would read data that is gone
and write where no one reads. Comparing the path's identity (device and inode,
one ``lstat``) with the open file's costs 1-3 µs, as much as a whole read of a
key, so reads do it on a service's first use of a file and then at most every
:data:`RECHECK_SECONDS`; every write does it.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from _thread import allocate_lock  # threading.Lock, without importing threading
from collections import OrderedDict
from stat import S_ISLNK
from time import monotonic
from types import TracebackType

from . import _log
from ._layout import FileLayout, list_directory, make_private_dirs
from ._sqlite_errors import is_shm_error, raise_converted
from ._sqlite_sql import (
    APPLICATION_ID,
    INSERT_STORE_INFO,
    MIGRATE_FROM_VERSION_1,
    NOW_FUNCTION,
    PURGE_EXPIRED,
    SCHEMA,
    SCHEMA_VERSION,
    SELECT_STORE_INFO,
)
from .errors import CorruptStoreError, LockTimeoutError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MAX_OPEN_FILES", "SUFFIX", "StoreFiles", "sqlite_uri"]


SUFFIX = ".sqlite"

#: How many store files one process keeps open at most (each holds 3 descriptors).
MAX_OPEN_FILES = 64

#: How long a read may trust a check that the path still names the open file:
#: one ``lstat`` per millisecond is nothing to a busy reader, and a store file
#: deleted between two tests is noticed by the next test's first read.
RECHECK_SECONDS = 0.001

#: Every how many writes through one connection expired keys are purged.
PURGE_EVERY = 32


class _Handle:
    """An open connection to one store file, and the lock its users take turns on."""

    __slots__ = (
        "checked_at",
        "closed",
        "conn",
        "identity",
        "lock",
        "pooled",
        "timeout",
        "writes",
    )

    def __init__(self, conn: sqlite3.Connection, identity: tuple[int, int]) -> None:
        self.conn = conn
        self.identity = identity
        self.lock = allocate_lock()
        self.closed = False
        self.pooled = True
        self.timeout = -1.0
        self.checked_at = monotonic()  # when the path last named this file
        self.writes = 0  # counts writes, to purge expired keys every so many


class _Pool:
    """The process's open store files, least recently used first."""

    def __init__(self) -> None:
        self.lock = allocate_lock()
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


class Connection:
    """One call's hold on a store's connection (see :meth:`StoreFiles.connect`).

    A class rather than a generator-based context manager, because every call
    enters one: it costs a few microseconds less.
    """

    __slots__ = ("context", "create", "files", "handle", "path", "store", "writes")

    def __init__(
        self,
        files: StoreFiles,
        path: str,
        context: str | None,
        store: str,
        create: bool,
        writes: bool,
    ) -> None:
        self.files = files
        self.path = path
        self.context = context
        self.store = store
        self.create = create
        self.writes = writes or create
        self.handle: _Handle | None = None

    def __enter__(self) -> sqlite3.Connection | None:
        try:
            self.handle = self.files.take(
                self.path, self.context, self.store, self.create, self.writes
            )
        except BaseException as exc:
            raise_converted(exc, self.path)
            raise
        return None if self.handle is None else self.handle.conn

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        handle, self.handle = self.handle, None
        try:
            if handle is not None:
                _give_back(handle, self.path, self.writes and exc is None)
        except BaseException as error:  # closing the connection failed
            raise_converted(error, self.path)
            raise
        if exc is not None:
            raise_converted(exc, self.path)


class StoreFiles:
    """The store files of one root and collection, and their pooled connections.

    :param timeout: seconds to wait for SQLite's locks and the creation lock.
    """

    def __init__(self, root: str, collection: str, timeout: float) -> None:
        self.layout = FileLayout(root, collection, SUFFIX, self.read_info)
        self.timeout = timeout
        # Files checked before this object existed are checked again on first
        # use: a new service sees at once what was deleted before it was made.
        self.opened_at = monotonic()

    def connect(
        self, context: str | None, store: str, *, create: bool = False, writes: bool
    ) -> Connection:
        """Return a ``with`` context that gives the store's open connection.

        It gives ``None`` if the store has no file; with ``create`` the file is
        made first when missing. Say whether the call ``writes``: a write always
        checks that the path still names the open file. SQLite and OS errors
        raised inside are converted to
        :class:`~localstore.errors.LocalStoreError` subclasses.
        """
        path = self.layout.store_path(context, store)
        return Connection(self, path, context, store, create, writes)

    def fetch_one(
        self,
        context: str | None,
        store: str,
        statement: str,
        params: tuple[object, ...],
    ) -> tuple[Any, ...] | None:
        """Run one read statement; return its first row, or ``None`` (no file too).

        What :meth:`connect` does for a read, with less Python around it: the
        reads of single keys, run most often, use it.
        """
        path = self.layout.store_path(context, store)
        try:
            handle = self.take(path, context, store, False, False)
            if handle is None:
                return None
            try:
                row: tuple[Any, ...] | None = handle.conn.execute(
                    statement, params
                ).fetchone()
            except BaseException:
                handle.lock.release()
                raise
            _give_back(handle, path, False)
        except BaseException as exc:
            raise_converted(exc, path)
            raise
        return row

    def execute(
        self,
        context: str | None,
        store: str,
        statement: str,
        params: tuple[object, ...],
        *,
        create: bool,
    ) -> int | None:
        """Run one write statement; return its row count, or ``None`` if no file.

        With ``create`` a missing file is made first. What :meth:`connect` does
        for a write of one statement, with less Python around it.
        """
        path = self.layout.store_path(context, store)
        try:
            handle = self.take(path, context, store, create, True)
            if handle is None:
                return None
            try:
                count: int = handle.conn.execute(statement, params).rowcount
            except BaseException:
                handle.lock.release()
                raise
            _give_back(handle, path, True)
        except BaseException as exc:
            raise_converted(exc, path)
            raise
        return count

    def take(
        self, path: str, context: str | None, store: str, create: bool, writes: bool
    ) -> _Handle | None:
        """Return the store's handle with its lock held, or ``None`` if no file.

        A write, and a read that cannot trust the last check, check the file.
        """
        handle = _pool.handles.get(path)  # a dict read needs no pool lock
        while True:
            if (
                handle is None
                or writes
                or handle.checked_at < self.opened_at
                or monotonic() - handle.checked_at > RECHECK_SECONDS
            ):
                handle = self.handle(path, context, store, create)
                if handle is None:
                    return None
            handle.lock.acquire()
            if not handle.closed:
                break
            handle.lock.release()  # evicted between lookup and lock: look again
            handle = None
        if handle.timeout != self.timeout:
            try:
                milliseconds = int(self.timeout * 1000)
                handle.conn.execute(f"PRAGMA busy_timeout = {milliseconds}")
            except BaseException:
                handle.lock.release()
                raise
            handle.timeout = self.timeout
        return handle

    def identity(self, context: str | None, store: str) -> tuple[int, int] | None:
        """Return the device and inode of the store's pooled file, if it is open."""
        handle = _pool.handles.get(self.layout.store_path(context, store))
        return None if handle is None else handle.identity

    def handle(
        self, path: str, context: str | None, store: str, create: bool
    ) -> _Handle | None:
        """Return the pooled handle of ``path``, opening (or creating) it if needed."""
        # The filesystem check (see the module docstring): it notices a file that
        # was deleted or replaced behind our back. lstat, so that a symbolic
        # link planted in place of the file is seen.
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
        handle = pool.handles.get(path)
        if handle is not None and handle.identity == identity:
            now = monotonic()
            if now - handle.checked_at > RECHECK_SECONDS:  # keep the order roughly LRU
                with pool.lock:
                    if path in pool.handles:
                        pool.handles.move_to_end(path)
            handle.checked_at = now
            return handle
        with pool.lock:
            handle = pool.handles.get(path)
            if handle is not None and handle.identity != identity:
                del pool.handles[path]
                pool.abandoned.append(handle)  # see _forget_inherited_connections

        conn, read_only = self._open(path, stat, context, store)
        handle = _Handle(conn, identity)
        handle.timeout = self.timeout  # connect() set SQLite's busy timeout
        if read_only:
            handle.pooled = False  # read afresh each call: the owner may write
            return handle
        with pool.lock:
            existing = pool.handles.get(path)
            if existing is not None and existing.identity == identity:
                handle.conn.close()  # another thread won the race
                return existing
            pool.handles[path] = handle
            evicted = _evict_over_limit(pool)
        for old in evicted:
            with old.lock:
                old.closed = True
                old.conn.close()
        return handle

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
        """Open an existing store file, check that it is this store's, upgrade it.

        Returns the connection and whether it only reads the file as it stands
        (see :func:`_is_readable_as_it_stands`).
        """
        _refuse_links(path, stat)
        conn, read_only = self._connect_file(sqlite_uri(path, "rw")), False
        try:
            try:
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA application_id").fetchone()
            except sqlite3.OperationalError as exc:
                if not _is_readable_as_it_stands(path, exc):
                    raise
                conn.close()
                conn = self._connect_file(sqlite_uri(path, "ro") + "&immutable=1")
                read_only = True
            version = _check_store_file(conn, path, context, store)
            if version < SCHEMA_VERSION and not read_only:
                _upgrade(conn, path)
        except BaseException:
            conn.close()
            raise
        _log.debug(__name__, "opened store file %s%s", path, " (read-only)" * read_only)
        return conn, read_only

    def _connect_file(self, uri: str) -> sqlite3.Connection:
        """Open a SQLite connection for the pool (autocommit, shared by threads)."""
        conn = sqlite3.connect(
            uri,
            uri=True,
            timeout=self.timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.create_function(NOW_FUNCTION, 0, _now_micros)
        return conn

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
                _initialize(temporary, context, store)
                _flush_to_disk(temporary)
                os.rename(temporary, path)
            finally:
                for leftover in (temporary, temporary + "-wal", temporary + "-shm"):
                    if os.path.lexists(leftover):
                        os.unlink(leftover)
            _log.debug(__name__, "created store file %s", path)
        finally:
            lock.release()

    def read_info(self, path: str) -> tuple[str, str | None] | None:
        """Read the store name and dataset id recorded inside a store file."""
        try:
            conn = sqlite3.connect(
                sqlite_uri(path, "ro"), uri=True, timeout=self.timeout
            )
            try:
                row = conn.execute(SELECT_STORE_INFO).fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            _log.warning(__name__, "skipping %s: not a readable store file", path)
            return None
        return None if row is None else (str(row[0]), row[1])

    def close(self) -> None:
        """Close the connections to this collection's files that no call is using."""
        prefix = self.layout.collection_dir + os.sep
        with _pool.lock:
            mine = [path for path in _pool.handles if path.startswith(prefix)]
            handles = [_pool.handles.pop(path) for path in mine]
        for handle in handles:
            with handle.lock:
                handle.closed = True
                handle.conn.close()


def _give_back(handle: _Handle, path: str, wrote: bool) -> None:
    """Release a handle that :meth:`StoreFiles.take` gave, after a call is done."""
    try:
        if wrote:
            _purge_now_and_then(handle, path)
        if not handle.pooled:
            handle.conn.close()
    finally:
        handle.lock.release()


def _purge_now_and_then(handle: _Handle, path: str) -> None:
    """Every :data:`PURGE_EVERY` writes through a handle, delete some expired keys.

    Expired keys read as absent already; this keeps a store written with TTLs
    from growing until the next sweep. The write has happened: a purge that
    fails (another writer holds the lock too long) is left for the next one.
    """
    handle.writes += 1
    if handle.writes % PURGE_EVERY:
        return
    try:
        handle.conn.execute(PURGE_EXPIRED, (_now_micros(),))
    except sqlite3.OperationalError as exc:
        _log.debug(__name__, "left expired keys of %s for later: %s", path, exc)


def _now_micros() -> int:
    """Return the time now in microseconds since the Unix epoch (``NOW_FUNCTION``)."""
    return time.time_ns() // 1000


def _check_store_file(
    conn: sqlite3.Connection, path: str, context: str | None, store: str
) -> int:
    """Raise unless the file is a localstore file of this store; return its version."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id != APPLICATION_ID or version < 1:
        raise CorruptStoreError(
            f"{path} is not a localstore store file (application id "
            f"{app_id:#x}, schema version {version}); it was left as it is",
            path,
        )
    if version > SCHEMA_VERSION:
        raise CorruptStoreError(
            f"{path} has schema version {version}, newer than this localstore "
            f"understands ({SCHEMA_VERSION}); upgrade localstore",
            path,
        )
    recorded = conn.execute(SELECT_STORE_INFO).fetchone()
    if recorded != (store, context):  # a file copied or renamed by hand
        raise CorruptStoreError(
            f"{path} records store {recorded and recorded[0]!r} of dataset_id "
            f"{recorded and recorded[1]!r}, not store {store!r} of {context!r}; "
            "it was left as it is",
            path,
        )
    return version


def _upgrade(conn: sqlite3.Connection, path: str) -> None:
    """Bring a store file of an older schema version to this one, atomically."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have upgraded it while this one waited for the lock.
        if conn.execute("PRAGMA user_version").fetchone()[0] == 1:
            for statement in MIGRATE_FROM_VERSION_1:
                conn.execute(statement)
            _log.debug(__name__, "upgraded store file %s to schema version 2", path)
        conn.execute("COMMIT")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def _evict_over_limit(pool: _Pool) -> list[_Handle]:
    """Take the least recently used handles out of a pool that is too full."""
    evicted = []
    while len(pool.handles) > MAX_OPEN_FILES:
        _, old = pool.handles.popitem(last=False)
        evicted.append(old)
    return evicted


def _initialize(path: str, context: str | None, store: str) -> None:
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
            {"store_name": store, "dataset_id": context, "now": time.time_ns() // 1000},
        )
        conn.execute("COMMIT")
        # WAL last: until here every page went straight into the file, so a
        # full disk raised instead of leaving pages in a WAL file that the
        # caller deletes (closing ignores a checkpoint that fails).
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


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


_TEMPORARY = re.compile(r"\.sqlite\.[0-9a-f]{32}\.tmp(-wal|-shm|-journal)?\Z")


def _remove_abandoned_temporaries(directory: str) -> None:
    """Delete half-made store files that a killed process left in ``directory``.

    Only called under the context's creation lock, and only creators under that
    lock make such files, so every one found is abandoned.
    """
    for entry in list_directory(directory):
        if _TEMPORARY.search(entry):
            os.unlink(os.path.join(directory, entry))  # a planted link: only it goes
            _log.debug(
                __name__, "removed abandoned temporary file %s in %s", entry, directory
            )


def sqlite_uri(path: str, mode: str) -> str:
    """Return the SQLite URI of a file path, escaping what a URI would misread."""
    escaped = path.replace("%", "%25").replace("?", "%3F").replace("#", "%23")
    if os.sep == "\\":
        escaped = "/" + escaped.replace("\\", "/")
    return f"file:{escaped}?mode={mode}"
