"""Exceptions raised by localstore.

Every exception derives from :class:`LocalStoreError`, and each subclass also derives
from the built-in exception a caller would catch without knowing localstore, so
``except ValueError`` keeps working for code written against FiftyOne.
"""

from __future__ import annotations

__all__ = [
    "ArgumentTypeError",
    "CorruptStoreError",
    "InvalidArgumentError",
    "InvalidValueError",
    "LocalStoreError",
    "LockTimeoutError",
    "StoreExistsError",
    "StoreIOError",
    "StorePermissionError",
]


class LocalStoreError(Exception):
    """Base class of every error localstore raises on purpose."""


class InvalidArgumentError(LocalStoreError, ValueError):
    """An argument has the right type but a value that is not allowed.

    Raised for empty or reserved names, unknown policies and TTLs that are not
    positive. Nothing is written when it is raised.
    """


class ArgumentTypeError(LocalStoreError, TypeError):
    """An argument has a type that is not allowed (a TTL given as ``"10"``, say)."""


class InvalidValueError(LocalStoreError, TypeError, ValueError):
    """A value cannot be stored; the message says where in the value and why.

    It is both a :class:`TypeError` (for a set or an object) and a
    :class:`ValueError` (for an integer out of range or a cycle), so code that
    catches either keeps working. Nothing is written when it is raised.
    """


class StoreExistsError(LocalStoreError, ValueError):
    """``create_store`` was called for a store that already has a store document."""


class LockTimeoutError(LocalStoreError, TimeoutError):
    """A lock or a busy store was not released within the configured timeout."""

    def __init__(self, message: str, path: str | None = None) -> None:
        # path has a default so that unpickling (which passes the message alone,
        # then restores path) works: a process pool sends errors back pickled.
        super().__init__(message)
        self.path = path


class StorePermissionError(LocalStoreError, PermissionError):
    """The operating system refused access to a store file or directory."""


class StoreIOError(LocalStoreError, OSError):
    """Reading or writing a store failed in the operating system (a full disk, say)."""


class CorruptStoreError(LocalStoreError):
    """A store file exists but is not a store localstore can read.

    The file is left as it is, never reset; ``path`` names it, or is ``None``
    when the damage was found in a value after its file was read.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path
