"""Where a file backend keeps its stores, and how it finds them again.

``<root>/<collection>/<context>/<store><suffix>``: one directory per context
(:data:`~localstore._paths.GLOBAL_CONTEXT_DIR` for the global one), one file per
store, every name encoded by :func:`~localstore._paths.encode_name`. A name too
long to encode whole is read back from inside its file, through the backend's
``read_info``.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

from . import _log
from ._paths import GLOBAL_CONTEXT_DIR, decode_name, encode_name
from .errors import (
    CorruptStoreError,
    LocalStoreError,
    StoreIOError,
    StorePermissionError,
)

__all__ = [
    "FileLayout",
    "list_directory",
    "make_private_dirs",
    "os_error",
    "refuse_non_file",
]


#: Reads the store name and dataset id recorded inside a store file, or ``None``.
ReadInfo = Callable[[str], "tuple[str, str | None] | None"]

# Paths are remembered per (context, store): every call needs one, and encoding
# names takes microseconds. Bounded, so that a process touching millions of
# stores does not grow without end.
_MAX_REMEMBERED_PATHS = 4096


class FileLayout:
    """Maps the contexts and stores of one collection to paths, and back."""

    def __init__(
        self, root: str, collection: str, suffix: str, read_info: ReadInfo
    ) -> None:
        self.collection_dir = os.path.join(root, encode_name(collection))
        self.suffix = suffix
        self._read_info = read_info
        #: The paths :meth:`store_path` has given, by (context, store): callers
        #: on a hot path may look here first.
        self.paths: dict[tuple[str | None, str], str] = {}

    def context_dir(self, context: str | None) -> str:
        """Return the directory that holds the stores of ``context``."""
        name = GLOBAL_CONTEXT_DIR if context is None else encode_name(context)
        return os.path.join(self.collection_dir, name)

    def store_path(self, context: str | None, store: str) -> str:
        """Return the file that holds ``store`` of ``context``."""
        path = self.paths.get((context, store))
        if path is None:
            path = os.path.join(
                self.context_dir(context), encode_name(store) + self.suffix
            )
            if len(self.paths) < _MAX_REMEMBERED_PATHS:
                self.paths[(context, store)] = path
        return path

    def store_names(self, context: str | None) -> list[str]:
        """Return the name of every store file of a context, live or not."""
        directory = self.context_dir(context)
        names = []
        for entry in list_directory(directory):
            if not entry.endswith(self.suffix):
                continue
            name = decode_name(entry[: -len(self.suffix)])
            if name is None:
                name = self._read_name(os.path.join(directory, entry))
            if name is not None:
                names.append(name)
        return names

    def contexts(self) -> list[str | None]:
        """Return every context with a directory; ``None`` (global) first."""
        contexts: list[str | None] = []
        for entry in sorted(list_directory(self.collection_dir)):
            if entry == GLOBAL_CONTEXT_DIR:
                contexts.insert(0, None)
                continue
            name = decode_name(entry)
            if name is None and "~" in entry:
                name = self._read_context(os.path.join(self.collection_dir, entry))
            if name is not None:
                contexts.append(name)
        return contexts

    def _read_name(self, path: str) -> str | None:
        """Read the exact store name recorded inside a file with a hashed name."""
        info = self._read_info(path)
        if info is None or encode_name(info[0]) + self.suffix != os.path.basename(path):
            _log.warning(
                __name__, "skipping %s: its recorded name does not match", path
            )
            return None
        return info[0]

    def _read_context(self, directory: str) -> str | None:
        """Read the exact dataset id of a context directory with a hashed name."""
        wanted = os.path.basename(directory)
        for entry in sorted(list_directory(directory)):
            if not entry.endswith(self.suffix):
                continue
            info = self._read_info(os.path.join(directory, entry))
            if (
                info is not None
                and info[1] is not None
                and encode_name(info[1]) == wanted
            ):
                return info[1]
        return None


def list_directory(path: str) -> list[str]:
    """Return the entries of a directory; ``[]`` when it does not exist.

    :raises StoreIOError: when ``path`` is a file (a root that names a file).
    :raises StorePermissionError: when the directory may not be read.
    """
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
    except NotADirectoryError as exc:
        raise StoreIOError(
            errno.ENOTDIR, f"{path} is not a directory (is the root a file?)"
        ) from exc
    except PermissionError as exc:
        raise StorePermissionError(f"permission denied listing {path}") from exc


def make_private_dirs(directory: str) -> None:
    """Create ``directory`` and any missing parents, each readable by us alone.

    ``os.makedirs`` gives only the last directory the mode; parents would get
    0o777 less the umask. The umask itself is never changed.
    """
    missing = []
    while not os.path.isdir(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for name in reversed(missing):
        try:
            os.mkdir(name, 0o700)
        except FileExistsError:
            # Another process made it between our check and our mkdir, or a file
            # stands in its place.
            if not os.path.isdir(name):
                raise NotADirectoryError(
                    errno.ENOTDIR, f"{name} is not a directory, where one belongs"
                ) from None


def os_error(exc: OSError, path: str) -> LocalStoreError:
    """Return the localstore error to raise for an OS error on ``path``."""
    if isinstance(exc, PermissionError):
        return StorePermissionError(f"permission denied for {path}: {exc}")
    return StoreIOError(exc.errno, f"{exc.strerror or exc} ({path})")


def refuse_non_file(path: str, mode: int) -> None:
    """Raise :class:`CorruptStoreError` unless ``mode`` is that of a regular file.

    Call it where a store file is opened, with the mode from its ``lstat`` or
    ``fstat``: localstore never makes a directory, pipe or device in a store
    file's place, and opening one fails with an error that does not say so.
    """
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a special file"
        raise CorruptStoreError(
            f"{path} is {kind}, not a store file; it was left as it is", path
        )
