"""FiftyOne's execution store, kept in local SQLite or JSON files with no server.

``ExecutionStoreService``, ``ExecutionStore``, ``KeyDocument`` and
``StoreDocument`` have the names, arguments and return types of FiftyOne's, so
plugin code written against either runs on both.
"""

from typing import TYPE_CHECKING, Any

from ._backend import Backend
from ._cache import CachedFunction, cached
from ._context import OfflineContext
from ._copy import copy_root
from ._documents import KeyDocument, KeyPolicy, StoreDocument
from ._service import ExecutionStoreService, open_backend
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

if TYPE_CHECKING:
    from ._notify import ChangeEvent

__version__ = "0.1.0"

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


def __getattr__(name: str) -> Any:
    # ChangeEvent's module starts threads and logs; import it only when asked.
    if name == "ChangeEvent":
        from ._notify import ChangeEvent

        return ChangeEvent
    raise AttributeError(f"module 'localstore' has no attribute {name!r}")
