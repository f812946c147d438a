"""The SQLite backend's open files: one pooled connection per file per process.

Once open, a store file's connection stays in the process's pool, shared by
threads under a lock, at most :data:`MAX_OPEN_FILES` at once; files are created,
opened and checked by :mod:`localstore._sqlite_files`.

A file deleted or replaced behind the pool's back (say, a test removed its
temporary root) must not be used: its connection would read data that is gone
and write where no one reads. Comparing the path's identity (device and inode,
one ``lstat``) with the open file's costs 2-4 µs here, as much as a whole read
of a key, so it is done on a service's first use of a file and then at most
every :data:`RECHECK_SECONDS`. In between, a write still asks whether the path
names a file at all (``access``, about half the cost: no stat to build), so a
write after a deletion always makes a new file; only a file deleted and made
anew by another process within that time can go unnoticed until the next check.
"""

from __future__ import annotations

import os
import sqlite3
import time
from _thread import allocate_lock  # threading.Lock, without importing threading
from collections import OrderedDict
from time import monotonic
from types import TracebackType

from . import _log
from ._layout import FileLayout
from ._sqlite_errors import raise_converted
from ._sqlite_files import (
    SUFFIX,
    create_store_file,
    open_store_file,
    read_store_info,
)
from ._sqlite_sql import ANY_EXPIRED, PURGE_EXPIRED

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MAX_OPEN_FILES", "StoreFiles"]


#: How many store files one process keeps open at most (each holds 3 descriptors).
MAX_OPEN_FILES = 64

#: How long a call may trust a check that the path still names the open file:
#: one ``lstat`` per millisecond is nothing to a busy caller, and a store file
#: deleted between two tests is noticed by the next test's first call.
RECHECK_SECONDS = 0.001

#: Every how many writes through one connection expired keys are purged.
PURGE_EVERY = 32


class _Handle:
    """An open connection to one store file, and the lock its users take turns on."""

    __slots__ = (
        "checked_at",
        "closed",
        "conn",
        "cursor",
        "identity",
        "lock",
        "pooled",
        "read_only_cause",
        "timeout",
        "writes",
    )

    def __init__(self, conn: sqlite3.Connection, identity: tuple[int, int]) -> None:
        self.conn = conn
        # One cursor, reused under the lock by single-statement calls: making one
        # per call costs a read a twentieth of its time.
        self.cursor = conn.cursor()
        self.identity = identity
        self.lock = allocate_lock()
        self.closed = False
        self.pooled = True
        # Why the file was opened read-only, if it was: a write's error says so.
        self.read_only_cause: sqlite3.OperationalError | None = None
        self.timeout = -1.0
        self.checked_at = monotonic()  # when the path last named this file
        self.writes = 0  # counts writes, to purge expired keys every so many


#: How long a fork waits for the calls under way to finish (see _hold_for_fork):
#: a write takes far less, but a call waiting for another process's lock holds
#: its handle all the while, and a fork should not wait on that.
FORK_WAIT_SECONDS = 1.0


class _Pool:
    """The process's open store files, least recently used first."""

    def __init__(self) -> None:
        self.lock = allocate_lock()
        self.handles: OrderedDict[str, _Handle] = OrderedDict()
        # A forked child's copies of its parent's connections, never used or
        # closed: closing would run SQLite's last-connection cleanup on files
        # the parent is still using.
        self.inherited: list[_Handle] = []
        self.held_for_fork: list[_Handle] = []


_pool = _Pool()


def _hold_for_fork() -> None:
    """Before a fork, wait until no call is using a pooled connection, and hold them.

    SQLite keeps each file's locks in process memory too; a child forked while
    another thread is in the middle of a write inherits a write lock that no
    thread of its own holds, and could never write that store. A thread that
    holds one handle while waiting for another must not be kept waiting on us,
    so the handles are tried without blocking, all let go while any is busy, and
    tried again; after :data:`FORK_WAIT_SECONDS` the fork goes ahead regardless.
    """
    pool = _pool
    deadline = monotonic() + FORK_WAIT_SECONDS
    while True:
        with pool.lock:
            handles = list(pool.handles.values())
        held = []
        for handle in handles:
            if not handle.lock.acquire(False):
                break
            held.append(handle)
        else:
            pool.held_for_fork = held
            return
        for handle in held:
            handle.lock.release()
        if monotonic() > deadline:
            _log.debug(__name__, "forking while a call uses a store file")
            return
        time.sleep(0.001)


def _release_after_fork() -> None:
    """After a fork, in the parent, let go of what :func:`_hold_for_fork` held."""
    held, _pool.held_for_fork = _pool.held_for_fork, []
    for handle in held:
        handle.lock.release()


def _forget_inherited_connections() -> None:
    """In a forked child, set the parent's connections aside (``_Pool.inherited``)."""
    global _pool
    _release_after_fork()
    inherited = _pool
    _pool = _Pool()
    _pool.inherited = [*inherited.inherited, *inherited.handles.values()]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_hold_for_fork,
        after_in_parent=_release_after_fork,
        after_in_child=_forget_inherited_connections,
    )


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
        cause = None if handle is None else handle.read_only_cause
        try:
            if handle is not None:
                _give_back(handle, self.path, self.writes and exc is None)
        except BaseException as error:  # closing the connection failed
            raise_converted(error, self.path, cause)
            raise
        if exc is not None:
            raise_converted(exc, self.path, cause)


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
        checks that the path still names a file. SQLite and OS errors
        raised inside are converted to
        :class:`~localstore.errors.LocalStoreError` subclasses.
        """
        path = self.layout.store_path(context, store)
        return Connection(self, path, context, store, create, writes)

    def run(
        self,
        context: str | None,
        store: str,
        statement: str,
        params: tuple[object, ...],
        create: bool,
        writes: bool,
    ) -> Any:
        """Run one statement: what :meth:`connect` does, with less Python around it.

        The reads and writes of single keys, run most often, use it. A read
        must give at most one row: the handle's cursor is reused, and a
        statement left part-read would hold a read transaction open until the
        next call. With ``create`` a missing file is made first.

        :returns: a write's row count, a read's first row (``None`` if none), or
            ``None`` if the store has no file.
        """
        # store_path()'s usual case, and take()'s, inline (a call costs a read a
        # twentieth of its time): a path known, a pooled handle checked lately,
        # free and open.
        path = self.layout.paths.get((context, store))
        if path is None:
            path = self.layout.store_path(context, store)
        handle = _pool.handles.get(path)
        try:
            if (
                handle is None
                or handle.checked_at < self.opened_at
                or monotonic() - handle.checked_at > RECHECK_SECONDS
                or (writes and not os.access(path, os.F_OK))
            ):
                handle = self.take(path, context, store, create, writes)
                if handle is None:
                    return None
            else:
                handle.lock.acquire()
                if handle.closed or handle.timeout != self.timeout:
                    handle.lock.release()
                    handle = self.take(path, context, store, create, writes)
                    if handle is None:
                        return None
            try:
                cursor = handle.cursor
                cursor.execute(statement, params)
                result = cursor.rowcount if writes else cursor.fetchone()
            except BaseException:
                _give_back(handle, path, False)
                raise
            # A pooled handle's read needs no more than the lock let go: no call.
            if writes or not handle.pooled:
                _give_back(handle, path, writes)
            else:
                handle.lock.release()
        except BaseException as exc:
            cause = None if handle is None else handle.read_only_cause
            raise_converted(exc, path, cause)
            raise
        return result

    def take(
        self, path: str, context: str | None, store: str, create: bool, writes: bool
    ) -> _Handle | None:
        """Return the store's handle with its lock held, or ``None`` if no file.

        A call that cannot trust the last check of the file checks it again; a
        write that can still makes sure the file exists.
        """
        handle = _pool.handles.get(path)  # a dict read needs no pool lock
        while True:
            if (
                handle is None
                or handle.checked_at < self.opened_at
                or monotonic() - handle.checked_at > RECHECK_SECONDS
                or (writes and not os.access(path, os.F_OK))
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
            create_store_file(path, context, store, self.timeout)
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
            replaced = pool.handles.get(path)
            if replaced is not None and replaced.identity != identity:
                del pool.handles[path]
            else:
                replaced = None
        if replaced is not None:
            _close(replaced)

        conn, cause = open_store_file(path, stat, context, store, self.timeout)
        handle = _Handle(conn, identity)
        handle.timeout = self.timeout  # connect() set SQLite's busy timeout
        if cause is not None:
            handle.read_only_cause = cause
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
            _close(old)
        return handle

    def _discard(self, path: str) -> None:
        """Close the handle of a file that no longer exists."""
        pool = _pool
        with pool.lock:
            handle = pool.handles.pop(path, None)
        if handle is not None:
            _close(handle)

    def read_info(self, path: str) -> tuple[str, str | None] | None:
        """Read the store name and dataset id recorded inside a store file."""
        return read_store_info(path, self.timeout)

    def close(self) -> None:
        """Close the connections to this collection's files that no call is using."""
        prefix = self.layout.collection_dir + os.sep
        with _pool.lock:
            mine = [path for path in _pool.handles if path.startswith(prefix)]
            handles = [_pool.handles.pop(path) for path in mine]
        for handle in handles:
            _close(handle)


def _close(handle: _Handle) -> None:
    """Close a handle taken out of the pool, once the call using it (if any) is done.

    A file deleted or replaced since it was opened is safe to close: SQLite
    checkpoints and removes the write-ahead log on close only if the path still
    names the file it has open, so a new file's log is left alone.
    """
    with handle.lock:
        handle.closed = True
        handle.conn.close()


def _give_back(handle: _Handle, path: str, wrote: bool) -> None:
    """Release a handle that :meth:`StoreFiles.take` gave, after a call is done."""
    try:
        if wrote:
            handle.writes += 1
            if not handle.writes % PURGE_EVERY:
                _purge_expired(handle, path)
        if not handle.pooled:
            handle.conn.close()
    finally:
        handle.lock.release()


def _purge_expired(handle: _Handle, path: str) -> None:
    """Delete some expired keys; writes call it every :data:`PURGE_EVERY` times.

    Expired keys read as absent already; this keeps a store written with TTLs
    from growing until the next sweep. The write has happened: a purge that
    fails (another writer holds the lock too long) is left for the next one.
    """
    now = (time.time_ns() // 1000,)
    try:
        if handle.conn.execute(ANY_EXPIRED, now).fetchone() is not None:
            handle.conn.execute(PURGE_EXPIRED, now)
    except sqlite3.OperationalError as exc:
        _log.debug(__name__, "left expired keys of %s for later: %s", path, exc)


def _evict_over_limit(pool: _Pool) -> list[_Handle]:
    """Take the least recently used handles out of a pool that is too full."""
    evicted = []
    while len(pool.handles) > MAX_OPEN_FILES:
        _, old = pool.handles.popitem(last=False)
        evicted.append(old)
    return evicted
