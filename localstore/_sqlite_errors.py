"""Turning sqlite3 and OS errors into localstore errors that name the store file."""

from __future__ import annotations

import errno
import sqlite3

from ._layout import os_error
from .errors import (
    CorruptStoreError,
    LocalStoreError,
    LockTimeoutError,
    StoreIOError,
    StorePermissionError,
)

__all__ = ["is_shm_error", "raise_converted"]

# SQLite result codes, for converting errors (sqlite3.Error.sqlite_errorcode & 0xFF).
_BUSY = 5
_LOCKED = 6
_READONLY = 8
_IOERR = 10
_CORRUPT = 11
_FULL = 13
_CANTOPEN = 14
_NOTADB = 26

# Extended codes for a -shm file that cannot be made or grown: READONLY_CANTINIT,
# READONLY_DIRECTORY, IOERR_SHMOPEN, IOERR_SHMSIZE, IOERR_SHMMAP.
_SHM_ERRORS = frozenset({1288, 1544, 4618, 4874, 5386})


def is_shm_error(exc: sqlite3.Error) -> bool:
    """Tell whether ``exc`` says the -shm file of a WAL store cannot be made."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # Python 3.10: only the message tells
        return _guess_code(str(exc)) in (_READONLY, _IOERR)
    return code in _SHM_ERRORS


def raise_converted(
    exc: BaseException, path: str, read_only_cause: sqlite3.Error | None = None
) -> None:
    """Raise the localstore error, naming ``path``, for a sqlite3 or OS error.

    ``read_only_cause`` is the error that made the store file open read-only
    (see :func:`localstore._sqlite_files.open_store_file`), if it did.
    Returns for any other exception, and for a localstore error, which the
    caller re-raises as it is.
    """
    if isinstance(exc, LocalStoreError):
        return
    if isinstance(exc, sqlite3.Error):
        if read_only_cause is not None and _primary_code(exc) == _READONLY:
            raise _read_only_error(read_only_cause, exc, path) from exc
        raise _convert_sqlite_error(exc, path) from exc
    if isinstance(exc, OSError):
        raise os_error(exc, path) from exc


def _read_only_error(
    cause: sqlite3.Error, exc: sqlite3.Error, path: str
) -> LocalStoreError:
    """Choose the error for a write refused because the file was opened read-only.

    A file is opened read-only when its -shm file cannot be made: an I/O error
    there means a full disk (SQLite could not grow the -shm file); any other
    error, a directory that may not be written, which SQLite's error says.
    """
    if _primary_code(cause) == _IOERR:
        return StoreIOError(
            errno.ENOSPC,
            f"no space left writing {path}: the disk is full, so SQLite "
            f"could not make its -shm file ({cause})",
        )
    return _convert_sqlite_error(exc, path)


def _convert_sqlite_error(exc: sqlite3.Error, path: str) -> LocalStoreError:
    """Choose the localstore error for a sqlite3 error."""
    message = str(exc)
    primary = _primary_code(exc)
    if primary in (_BUSY, _LOCKED):
        return LockTimeoutError(
            f"{path} stayed locked by another writer: {message}", path
        )
    if primary == _READONLY:
        return StorePermissionError(f"cannot write {path}: {message}")
    if primary in (_CORRUPT, _NOTADB):
        return CorruptStoreError(
            f"{path} is damaged ({message}); it was left as it is", path
        )
    if primary == _FULL:
        return StoreIOError(28, f"no space left writing {path}: {message}")
    if primary == _CANTOPEN:
        return StorePermissionError(f"cannot open {path}: {message}")
    if primary == _IOERR:
        return StoreIOError(5, f"I/O error on {path}: {message}")
    if "no such table" in message or "no such column" in message:
        return CorruptStoreError(
            f"{path} is not a localstore store file ({message})", path
        )
    return StoreIOError(0, f"SQLite failed on {path}: {message}")


def _primary_code(exc: sqlite3.Error) -> int | None:
    """Return the primary SQLite result code of an error, if it can be told."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if code is not None else _guess_code(str(exc))


def _guess_code(message: str) -> int | None:
    """Read the error class from a message (Python 3.10 has no error codes)."""
    for fragment, code in (
        ("locked", _BUSY),
        ("readonly", _READONLY),
        ("read-only", _READONLY),
        ("malformed", _CORRUPT),
        ("not a database", _NOTADB),
        ("disk is full", _FULL),
        ("unable to open", _CANTOPEN),
        ("disk I/O", _IOERR),
    ):
        if fragment in message:
            return code
    return None
