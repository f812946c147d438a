"""The JSON backend: one readable JSON file per store.

Layout: ``<root>/<collection>/<context>/<store>.json``, names encoded by
:mod:`localstore._paths`, beside a ``<store>.json.lock`` lock file; the file
format is described in :mod:`localstore._jsonfile`.

Every write holds the store's ``filelock`` lock across the whole
read-modify-write, reads the file afresh, writes a temporary file in the same
directory, fsyncs it and renames it over the old one. Every call reads the whole
file; a parse is reused only for the very same bytes (see :class:`_KnownFiles`).
Readers do not lock on POSIX: the rename swaps whole files, so a reader
sees the old or the new one and never waits for a writer. A write that leaves a
store with no document and no live key deletes its file under the lock; the
lock file stays, and a writer waiting for it reads "no file" and starts anew.
Expired keys are never returned, and leave the file with the next write.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from . import _codec
from ._jsonfile import FileState, parse, read_names, read_revision, render
from ._layout import (
    FileLayout,
    list_directory,
    make_private_dirs,
    os_error,
    refuse_non_file,
)
from ._state import StateBackend
from .errors import (
    CorruptStoreError,
    InvalidValueError,
    LocalStoreError,
    LockTimeoutError,
)

__all__ = ["JSONBackend"]

logger = logging.getLogger(__name__)

SUFFIX = ".json"

# Windows cannot rename over a file that a reader holds open, so readers there
# take the lock too; POSIX renames never wait for readers.
_READS_TAKE_LOCK = os.name == "nt"

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

# What FileState.checked.get() returns for a key it does not hold.
_UNCHECKED = object()

#: How many bytes of store files the process keeps parsed, least recent dropped
#: first; parsed, a file takes about four times its size in memory.
_KNOWN_FILE_BYTES = 8 * 1024 * 1024

_thread_locks_guard = threading.Lock()
_thread_locks: dict[str, threading.Lock] = {}


def _thread_lock(path: str) -> threading.Lock:
    """Return the lock that the threads of this process take for a store file.

    One small lock per store file the process has written, kept while it runs.
    """
    with _thread_locks_guard:
        return _thread_locks.setdefault(path, threading.Lock())


def _forget_thread_locks() -> None:
    """In a forked child, drop locks that the parent's other threads may hold."""
    global _thread_locks_guard, _thread_locks, _known_files
    _thread_locks_guard = threading.Lock()
    _thread_locks = {}
    _known_files = _KnownFiles(_KNOWN_FILE_BYTES)


_FileName = tuple[str, str | None, str]  # path, context, store


class _KnownFiles:
    """The store files this process last read or wrote, parsed, by their bytes' hash.

    Bytes with the hash remembered for a file are the bytes that were parsed,
    so their state serves again, with the values a write already checked
    (:attr:`FileState.checked`). Any other bytes (another process's write, a
    hand edit that kept the file's size and time) are parsed and checked
    afresh. Threads share the states: readers never change them; writers copy
    them, and only a holder of the store's lock replaces their ``checked``.
    """

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._size = 0
        self._lock = threading.Lock()
        self._files: OrderedDict[_FileName, tuple[bytes, int, FileState]] = (
            OrderedDict()
        )

    def get(self, name: _FileName, digest: bytes) -> FileState | None:
        """Return the state of a file if it was known with these bytes."""
        with self._lock:
            known = self._files.get(name)
            if known is None or known[0] != digest:
                return None
            self._files.move_to_end(name)
            return known[2]

    def put(self, name: _FileName, digest: bytes, size: int, state: FileState) -> None:
        """Remember the state of a file of ``size`` bytes, which no one will change."""
        with self._lock:
            self._drop(name)
            if size > self._budget:
                return
            self._files[name] = (digest, size, state)
            self._size += size
            while self._size > self._budget:
                self._drop(next(iter(self._files)))

    def forget(self, name: _FileName) -> None:
        """Forget a file that was deleted."""
        with self._lock:
            self._drop(name)

    def _drop(self, name: _FileName) -> None:
        known = self._files.pop(name, None)
        if known is not None:
            self._size -= known[1]


_known_files = _KnownFiles(_KNOWN_FILE_BYTES)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_thread_locks)


def _timeout_error(timeout: float, lock_file: str) -> LockTimeoutError:
    """Return the error for a store lock not had within ``timeout`` seconds."""
    return LockTimeoutError(
        f"timed out after {timeout} s waiting for {lock_file}", lock_file
    )


class JSONBackend(StateBackend):
    """Keeps each store in one human-readable JSON file; writes cost O(store size)."""

    kind = "json"

    def __init__(self, root: str, collection: str, *, timeout: float = 10.0) -> None:
        super().__init__(root, collection, timeout=timeout)
        self._layout = FileLayout(root, collection, SUFFIX, _read_info)

    # Paths -----------------------------------------------------------------------

    def context_dir(self, context: str | None) -> str:
        """Return the directory that holds the stores of ``context``."""
        return self._layout.context_dir(context)

    def store_path(self, context: str | None, store: str) -> str:
        """Return the file that holds ``store`` of ``context``."""
        return self._layout.store_path(context, store)

    # Reading and writing whole stores ------------------------------------------------

    @contextmanager
    def _reading(self, context: str | None, store: str) -> Iterator[FileState | None]:
        """Yield the store as its file holds it now, or ``None`` without a file."""
        path = self.store_path(context, store)
        with _converting_errors(path):
            if not _READS_TAKE_LOCK:
                state = _load(path, context, store)
            elif os.path.lexists(path):
                with self._locked(path):
                    state = _load(path, context, store)
            else:
                state = None  # taking the lock would create the directories
            yield state

    @contextmanager
    def _writing(
        self, context: str | None, store: str, now: int, *, create: bool
    ) -> Iterator[FileState | None]:
        """Yield the store read under its lock; write it back if it changed."""
        path = self.store_path(context, store)
        with _converting_errors(path):
            if create:
                make_private_dirs(os.path.dirname(path))
            elif not os.path.lexists(path):
                yield None
                return

            with self._locked(path):
                state = _load(path, context, store)
                if state is not None:
                    _refuse_damaged_values(path, state)
                    state = state.copy()
                elif create:
                    state = FileState()
                yield state
                if state is not None and state.changed:
                    _save(path, context, store, state, now)

    @contextmanager
    def _locked(self, path: str) -> Iterator[None]:
        """Hold the store's lock; raise :class:`LockTimeoutError` after the timeout.

        Threads of this process queue on a thread lock first, which hands over
        at once, and only its holder polls the file lock: with every thread
        polling, a busy store starved some of them past their timeout.
        """
        from filelock import FileLock, Timeout  # imported late: it costs start-up time

        lock_file = path + ".lock"
        deadline = time.monotonic() + self.timeout
        thread_lock = _thread_lock(path)
        if not thread_lock.acquire(timeout=self.timeout):
            raise _timeout_error(self.timeout, lock_file)
        try:
            remaining = max(0.0, deadline - time.monotonic())
            lock = FileLock(lock_file, timeout=remaining, mode=0o600)
            try:
                lock.acquire()
            except Timeout as exc:
                raise _timeout_error(self.timeout, lock_file) from exc
            try:
                yield
            finally:
                lock.release()
        finally:
            thread_lock.release()

    # Listing ---------------------------------------------------------------------

    def _store_names(self, context: str | None) -> list[str]:
        """Return the names of every store file of a context."""
        return self._layout.store_names(context)

    def list_contexts(self) -> list[str | None]:
        """Return every context with a directory under the collection."""
        return self._layout.contexts()

    def change_marker(self, context: str | None, store: str) -> object:
        """Return the file's identity, time, size and revision; ``None`` without one.

        Reads the file's first bytes only: the revision sits near the top.
        """
        path = self.store_path(context, store)
        with _converting_errors(path):
            file = _open_store_file(path)
            if file is None:
                return None
            with file:
                stat = os.fstat(file.fileno())
                head = file.read(256)
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size, read_revision(head))


# The file format ------------------------------------------------------------------


def _load(path: str, context: str | None, store: str) -> FileState | None:
    """Read and check a store file; ``None`` if there is none.

    The state may be shared with other threads: copy it to change it.
    """
    file = _open_store_file(path)
    if file is None:
        return None
    with file:
        raw = file.read()

    name, digest = (path, context, store), hashlib.sha256(raw).digest()
    state = _known_files.get(name, digest)
    if state is None:
        state = parse(raw, path, context, store)
        _known_files.put(name, digest, len(raw), state)
    return state


def _open_store_file(path: str) -> BinaryIO | None:
    """Open a store file to read; ``None`` if there is none.

    :raises CorruptStoreError: for a symbolic link in its place, which
        localstore never creates and never follows, or a directory.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptStoreError(
                f"{path} is a symbolic link, which localstore never follows; it was "
                "left as it is",
                path,
            ) from exc
        if os.path.isdir(path):  # Windows refuses to open a directory
            refuse_non_file(path, os.lstat(path).st_mode)
        raise
    try:
        refuse_non_file(path, os.fstat(descriptor).st_mode)
    except BaseException:
        os.close(descriptor)
        raise
    return open(descriptor, "rb")


def _refuse_damaged_values(path: str, state: FileState) -> None:
    """Raise before a write if a value of the file could not have been stored.

    A hand-edited value (a malformed tag, an int beyond 64 bits, ...) raises
    only when read; a write would carry it into a new file, so writes check
    every value not yet checked in these bytes first. Reads stay as quick as
    parsing. The caller holds the store's lock.
    """
    checked = state.checked
    unchecked = [
        key
        for key, entry in state.keys.items()
        if checked.get(key, _UNCHECKED) is not entry.value
    ]
    for key in unchecked:
        try:
            _codec.encode(_codec.decode(FileState.value_to_text(state.keys[key].value)))
        except (CorruptStoreError, InvalidValueError) as exc:
            raise CorruptStoreError(
                f"{path} holds a damaged value under key {key!r} ({exc}); it was "
                "left as it is",
                path,
            ) from exc
    state.checked = {key: entry.value for key, entry in state.keys.items()}


def _save(
    path: str, context: str | None, store: str, state: FileState, now: int
) -> None:
    """Write a changed store back, dropping its expired keys; the caller holds the lock.

    A store left with no document and no key loses its file. The state is
    remembered as the file's, so no one may change it afterwards.
    """
    name = (path, context, store)
    state.drop_expired(now)
    if state.document is None and not state.keys:
        if state.revision:
            _known_files.forget(name)
            _remove_abandoned_temporaries(path)  # they would outlive the store
            os.unlink(path)
            logger.debug("deleted empty store file %s", path)
        return

    state.revision += 1
    data = render(state, context, store)
    _write_atomically(path, data)
    _known_files.put(name, hashlib.sha256(data).digest(), len(data), state)


def _write_atomically(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` through a temporary file and a rename.

    A crash before the rename leaves the old file whole (and a ``.tmp`` file
    beside it); after, the new one. The directory is not fsynced, so after a
    power cut the store may be one write behind, never half written.
    """
    _remove_abandoned_temporaries(path)
    temporary = f"{path}.{uuid.uuid4().hex}.tmp"
    descriptor = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600
    )
    try:
        with open(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise


def _remove_abandoned_temporaries(path: str) -> None:
    """Delete temporary files that killed writers of this store left behind.

    Only writers holding the store's lock make them, and the caller holds it,
    so every one found is abandoned. (A listing costs little beside the fsync.)
    """
    directory, name = os.path.split(path)
    pattern = re.compile(re.escape(name) + r"\.[0-9a-f]{32}\.tmp\Z")
    for entry in list_directory(directory):
        if pattern.match(entry):
            os.unlink(os.path.join(directory, entry))
            logger.debug("removed abandoned temporary file %s", entry)


def _read_info(path: str) -> tuple[str, str | None] | None:
    """Read the store name and dataset id recorded inside a store file."""
    try:
        file = _open_store_file(path)
        if file is None:
            return None
        with file:
            info = read_names(file.read())
    except (OSError, CorruptStoreError):
        info = None
    if info is None:
        logger.warning("skipping %s: not a readable store file", path)
    return info


@contextmanager
def _converting_errors(path: str) -> Iterator[None]:
    """Turn OS errors, and damage found in a value, into errors that name ``path``."""
    try:
        yield
    except CorruptStoreError as exc:
        if exc.path is not None:
            raise
        raise CorruptStoreError(
            f"{path} holds a damaged value ({exc}); it was left as it is", path
        ) from exc
    except LocalStoreError:
        raise
    except OSError as exc:
        raise os_error(exc, path) from exc
