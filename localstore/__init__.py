"""FiftyOne's execution store, kept in local SQLite or JSON files with no server.

``ExecutionStoreService``, ``ExecutionStore``, ``KeyDocument`` and
``StoreDocument`` have the names, arguments and return types of FiftyOne's, so
plugin code written against either runs on both.
"""

from ._backends import open_backend
from ._service import ExecutionStoreService
from ._store import ExecutionStore
from .errors import (
    ArgumentTypeError,
    CorruptStoreError,
    InvalidArgumentError,
    InvalidValueError,
    LocalStoreError,
    LockTimeoutError,
    StoreExistsError,
    StoreIOError,
    StorePermissionError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._backend import Backend
    from ._cache import CachedFunction, cached
    from ._context import OfflineContext
    from ._copy import copy_root
    from ._documents import KeyDocument, KeyPolicy, StoreDocument
    from ._notify import ChangeEvent

__version__ = "0.2.0"

__all__ = [
    "ArgumentTypeError",
    "Backend",
    "CachedFunction",
    "ChangeEvent",
    "CorruptStoreError",
    "ExecutionStore",
    "ExecutionStoreService",
    "InvalidArgumentError",
    "InvalidValueError",
    "KeyDocument",
    "KeyPolicy",
    "LocalStoreError",
    "LockTimeoutError",
    "OfflineContext",
    "StoreDocument",
    "StoreExistsError",
    "StoreIOError",
    "StorePermissionError",
    "__version__",
    "cached",
    "copy_root",
    "open_backend",
]

# Imported on first use: together they cost a short process that reads one key
# more than the rest of the package (dataclasses alone pulls in inspect and ast).
_LAZY = {
    "Backend": "._backend",
    "CachedFunction": "._cache",
    "cached": "._cache",
    "ChangeEvent": "._notify",
    "OfflineContext": "._context",
    "copy_root": "._copy",
    "KeyDocument": "._documents",
    "KeyPolicy": "._documents",
    "StoreDocument": "._documents",
}


def __getattr__(name: str) -> "Any":
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'localstore' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later lookups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__} - {"TYPE_CHECKING"})
