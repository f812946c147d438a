"""The SQLite backend's store files: creating, opening, checking and upgrading them.

A store file is created complete under a temporary name and renamed into place,
under the context directory's ``filelock`` lock: the only lock localstore takes
itself. Opening one checks that it is a localstore file of the store asked for,
of a schema version this code knows, and upgrades an older one.
:mod:`localstore._sqlite_pool` keeps the open files' connections.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from stat import S_ISLNK

from . import _log
from ._layout import list_directory, make_private_dirs, refuse_non_file
from ._sqlite_errors import is_shm_error
from ._sqlite_sql import (
    APPLICATION_ID,
    INSERT_STORE_INFO,
    MIGRATE_FROM_VERSION_1,
    SCHEMA,
    SCHEMA_VERSION,
    SELECT_STORE_INFO,
)
from .errors import CorruptStoreError, LockTimeoutError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")

__all__ = [
    "SUFFIX",
    "create_store_file",
    "open_store_file",
    "read_file",
    "read_store_info",
    "sqlite_uri",
]

SUFFIX = ".sqlite"


def open_store_file(
    path: str, stat: os.stat_result, context: str | None, store: str, timeout: float
) -> tuple[sqlite3.Connection, sqlite3.OperationalError | None]:
    """Open an existing store file, check that it is this store's, upgrade it.

    Returns the connection and, if it only reads the file as it stands (see
    :func:`_is_readable_as_it_stands`), the error that kept the file from being
    opened for writing; the caller converts a write's error with it.

    :raises CorruptStoreError: for a symbolic link, a directory or another
        file that is not a regular file in the store file's place (``stat`` is
        its ``lstat``).
    """
    _refuse_links(path, stat)
    refuse_non_file(path, stat.st_mode)
    conn = _connect(sqlite_uri(path, "rw"), timeout)
    cause = None
    try:
        try:
            conn.execute("PRAGMA synchronous = NORMAL")
            version = _check_store_file(conn, path, context, store)
        except sqlite3.OperationalError as exc:
            if not _is_readable_as_it_stands(path, exc):
                raise
            conn.close()
            conn, cause = _connect(_read_as_it_stands_uri(path), timeout), exc
            version = _check_store_file(conn, path, context, store)
        if version < SCHEMA_VERSION and cause is None:
            _upgrade(conn, path)
    except BaseException:
        conn.close()
        raise
    read_only = " (read-only)" if cause is not None else ""
    _log.debug(__name__, "opened store file %s%s", path, read_only)
    return conn, cause


def create_store_file(
    path: str, context: str | None, store: str, timeout: float
) -> None:
    """Create a store file, complete, under the context's creation lock.

    The file is built under a temporary name and renamed into place, so a
    crash leaves no half-made store: only a temporary file that ``doctor``
    reports.
    """
    directory = os.path.dirname(path)
    make_private_dirs(directory)
    import uuid  # imported late, as filelock: it imports platform (milliseconds)

    from filelock import FileLock  # imported late: only creation needs it

    lock = FileLock(os.path.join(directory, ".lock"), timeout=timeout, mode=0o600)
    try:
        lock.acquire()
    except TimeoutError as exc:
        raise LockTimeoutError(
            f"timed out after {timeout} s waiting for {lock.lock_file}",
            lock.lock_file,
        ) from exc
    try:
        if os.path.exists(path):
            return
        _remove_abandoned_temporaries(directory)
        _remove_orphaned_wal(path)
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


def read_store_info(path: str, timeout: float) -> tuple[str, str | None] | None:
    """Read the store name and dataset id recorded inside a store file.

    On a read-only root or a full disk the file is read as it stands, as the
    API reads it (see :func:`read_file`).
    """
    try:
        row = read_file(path, lambda uri: _select_store_info(uri, timeout))
    except sqlite3.Error:
        _log.warning(__name__, "skipping %s: not a readable store file", path)
        return None
    return None if row is None else (str(row[0]), row[1])


def read_file(path: str, read: Callable[[str], T]) -> T:
    """Return ``read(uri)`` for a URI that opens the store file ``path`` read-only.

    Where the file's -shm file cannot be made (a read-only directory, a full
    disk), the URI reads the file as it stands, as the API then does (see
    :func:`_is_readable_as_it_stands`). sqlite3 errors are the caller's.
    """
    try:
        return read(sqlite_uri(path, "ro"))
    except sqlite3.OperationalError as exc:
        if not _is_readable_as_it_stands(path, exc):
            raise
        return read(_read_as_it_stands_uri(path))


def _select_store_info(uri: str, timeout: float) -> tuple[str, str | None] | None:
    """Return the store_info row of the file at ``uri`` (``None`` if it has none)."""
    conn = sqlite3.connect(uri, uri=True, timeout=timeout)
    try:
        row: tuple[str, str | None] | None = conn.execute(SELECT_STORE_INFO).fetchone()
    finally:
        conn.close()
    return row


def _connect(uri: str, timeout: float) -> sqlite3.Connection:
    """Open a SQLite connection for the pool (autocommit, shared by threads)."""
    conn = sqlite3.connect(
        uri,
        uri=True,
        timeout=timeout,
        isolation_level=None,
        check_same_thread=False,
    )
    return conn


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


def _read_as_it_stands_uri(path: str) -> str:
    """Return the URI that reads a store file without its -shm file."""
    return sqlite_uri(path, "ro") + "&immutable=1"


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


def _remove_orphaned_wal(path: str) -> None:
    """Delete a ``-wal`` and ``-shm`` file left where a store file is about to be.

    Only called under the creation lock while ``path`` does not exist: they
    belonged to a store file that was deleted on its own (by hand, or by a
    directory removal racing with a write). SQLite would apply such a WAL to the
    new file, whose pages it does not describe.
    """
    for leftover in (path + "-wal", path + "-shm"):
        if os.path.lexists(leftover):
            os.unlink(leftover)
            _log.debug(__name__, "removed orphaned %s", leftover)


def sqlite_uri(path: str, mode: str) -> str:
    """Return the SQLite URI of a file path, escaping what a URI would misread."""
    escaped = path.replace("%", "%25").replace("?", "%3F").replace("#", "%23")
    if os.sep == "\\":
        escaped = "/" + escaped.replace("\\", "/")
    return f"file:{escaped}?mode={mode}"
