"""FiftyOne's execution store, kept in local SQLite or JSON files with no server.

``ExecutionStoreService``, ``ExecutionStore``, ``KeyDocument`` and
``StoreDocument`` have the names, arguments and return types of FiftyOne's, so
plugin code written against either runs on both.
"""

from ._backend import Backend
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

__version__ = "0.1.0"

__all__ = [
    "ArgumentTypeError",
    "Backend",
    "CorruptStoreError",
    "ExecutionStore",
    "ExecutionStoreService",
    "InvalidArgumentError",
    "InvalidValueError",
    "KeyDocument",
    "KeyPolicy",
    "LocalStoreError",
    "LockTimeoutError",
    "StoreDocument",
    "StoreExistsError",
    "StoreIOError",
    "StorePermissionError",
    "__version__",
    "open_backend",
]
