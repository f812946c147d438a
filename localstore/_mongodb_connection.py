"""The MongoDB backend's way to its collection: clients, indexes, transactions, errors.

pymongo is imported only when the backend is used, and one ``MongoClient`` per
URI is shared by every backend of the process. The indexes are FiftyOne's, under
FiftyOne's names, so either side may create them first.
"""

from __future__ import annotations

import atexit
import errno
import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .errors import (
    InvalidArgumentError,
    InvalidValueError,
    LocalStoreError,
    StoreIOError,
    StorePermissionError,
)

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.collection import Collection

__all__ = [
    "DATABASE_ENV_VAR",
    "DEFAULT_DATABASE",
    "URI_ENV_VAR",
    "Connection",
    "converted_error",
    "converting_errors",
]

logger = logging.getLogger(__name__)

#: FiftyOne's database name, used when ``database`` is not given.
DEFAULT_DATABASE = "fiftyone"

#: The environment variable read when ``uri`` is not given.
URI_ENV_VAR = "LOCALSTORE_MONGODB_URI"

#: The environment variable read when ``database`` is not given.
DATABASE_ENV_VAR = "LOCALSTORE_MONGODB_DATABASE"

_DEFAULT_URI = "mongodb://localhost:27017"

#: FiftyOne's indexes: name -> (keys, options).
INDEXES: dict[str, tuple[list[tuple[str, int]], dict[str, Any]]] = {
    "expires_at": ([("expires_at", 1)], {"expireAfterSeconds": 0}),
    "unique_store_index": (
        [("store_name", 1), ("key", 1), ("dataset_id", 1)],
        {"unique": True},
    ),
    "store_name": ([("store_name", 1)], {}),
    "key": ([("key", 1)], {}),
    "dataset_id": ([("dataset_id", 1)], {}),
    "policy": ([("policy", 1)], {}),
    "updated_at": ([("updated_at", -1)], {}),
}

# Server error codes: unauthorized, authentication failed, document too large.
_DENIED = frozenset({13, 18})
_TOO_LARGE = frozenset({10334, 17419, 17420})
_DUPLICATE_KEY = 11000


class _Clients:
    """The process's MongoClients, one per URI and timeout, closed at exit."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[tuple[str, int], MongoClient[dict[str, Any]]] = {}
        self.indexed: set[tuple[str, int, str, str]] = set()
        self.transactions: dict[tuple[str, int], bool] = {}
        self.inherited: list[MongoClient[dict[str, Any]]] = []


_clients = _Clients()


def _forget_inherited_clients() -> None:
    """In a forked child, set the parent's clients aside without using them.

    pymongo warns when a client opened before ``fork`` is used after it; the
    child opens its own. The old ones stay referenced so that their finalizer
    does not warn about them either.
    """
    global _clients
    inherited = _clients
    _clients = _Clients()
    _clients.inherited = [*inherited.inherited, *inherited.open.values()]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited_clients)


@atexit.register
def _close_clients() -> None:
    """Close every client this process opened."""
    with _clients.lock:
        opened = list(_clients.open.values())
        _clients.open.clear()
    for client in opened:
        client.close()


class Connection:
    """One collection on a MongoDB server, reached through the process's client.

    Nothing is opened here: the client opens on first use, and is shared with
    every connection to the same URI with the same timeout.

    :param collection: the MongoDB collection.
    :param timeout: seconds to wait for a server.
    :param uri: a ``mongodb://`` or ``mongodb+srv://`` URI; default
        ``$LOCALSTORE_MONGODB_URI``, else ``mongodb://localhost:27017``.
    :param database: the database; default ``$LOCALSTORE_MONGODB_DATABASE``, else
        ``"fiftyone"``.
    :raises InvalidArgumentError: for a URI, database or collection name that
        MongoDB cannot use, or when pymongo is not installed.
    """

    def __init__(
        self, collection: str, *, timeout: float, uri: str | None, database: str | None
    ) -> None:
        try:
            import pymongo  # noqa: F401 (checked here so the error names the cause)
        except ImportError as exc:
            raise InvalidArgumentError(
                "backend 'mongodb' needs pymongo, which is not installed: "
                "pip install 'localstore[mongodb]'"
            ) from exc
        if uri is None:
            uri = os.environ.get(URI_ENV_VAR) or _DEFAULT_URI
        self.uri = _check_uri(uri)
        if database is None:
            database = os.environ.get(DATABASE_ENV_VAR) or DEFAULT_DATABASE
        self.database = _check_database(database)
        _check_collection(collection)
        self.collection_name = collection
        self._hosts = _hosts(self.uri)
        self._key = (self.uri, max(1, round(timeout * 1000)))

    @property
    def location(self) -> str:
        """Where the collection is, for messages: hosts, database and collection.

        Never holds the URI's credentials.
        """
        return f"{self._hosts}/{self.database}.{self.collection_name}"

    def client(self) -> MongoClient[dict[str, Any]]:
        """Return the process's client for this URI, opening it on first use."""
        clients = _clients
        with clients.lock:
            client = clients.open.get(self._key)
            if client is None:
                from pymongo import MongoClient

                client = MongoClient(
                    self.uri,
                    serverSelectionTimeoutMS=self._key[1],
                    tz_aware=False,
                    appname="localstore",
                )
                clients.open[self._key] = client
                logger.debug("opened a MongoDB client for %s", self._hosts)
        return client

    def collection(self) -> Collection[dict[str, Any]]:
        """Return the collection, creating FiftyOne's indexes on first use."""
        client = self.client()
        collection = client[self.database][self.collection_name]
        marker = (*self._key, self.database, self.collection_name)
        if marker not in _clients.indexed:
            existing = {index["name"] for index in collection.list_indexes()}
            for name, (keys, options) in INDEXES.items():
                if name not in existing:
                    collection.create_index(keys, name=name, **options)
            _clients.indexed.add(marker)
            logger.debug("checked the indexes of %s", self.location)
        return collection

    def has_transactions(self) -> bool:
        """Tell whether the deployment runs multi-document transactions."""
        known = _clients.transactions.get(self._key)
        if known is None:
            hello = self.client().admin.command("hello")
            known = "setName" in hello or hello.get("msg") == "isdbgrid"
            _clients.transactions[self._key] = known
        return known

    def write_many(self, operations: list[Any]) -> list[int]:
        """Run writes all or none; return the indexes of those that hit a duplicate key.

        Without transactions (a standalone server) they run unordered, and a
        failure other than a duplicate key can leave some of them done.
        """
        from pymongo.errors import BulkWriteError

        if not operations:
            return []
        collection = self.collection()
        if self.has_transactions():
            with self.client().start_session() as session:
                session.with_transaction(
                    lambda s: collection.bulk_write(operations, ordered=True, session=s)
                )
            return []
        try:
            collection.bulk_write(operations, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error["code"] != _DUPLICATE_KEY for error in errors):
                raise
            return [error["index"] for error in errors]
        return []


_P = ParamSpec("_P")
_T = TypeVar("_T")


def converting_errors(method: Callable[_P, _T]) -> Callable[_P, _T]:
    """Turn pymongo's errors raised by a backend's ``method`` into localstore errors.

    The backend, the method's first argument, names its ``location`` and
    ``timeout`` for the message.
    """

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        from bson.errors import InvalidDocument
        from pymongo.errors import PyMongoError

        try:
            return method(*args, **kwargs)
        except (InvalidDocument, PyMongoError) as exc:
            backend: Any = args[0]
            raise converted_error(exc, backend.location, backend.timeout) from exc

    return wrapper


def converted_error(exc: Exception, where: str, timeout: float) -> LocalStoreError:
    """Return the localstore error for a pymongo or BSON error met on ``where``.

    :param timeout: the seconds the server was waited for, for the message.
    """
    from bson.errors import InvalidDocument
    from pymongo.errors import (
        ConnectionFailure,
        OperationFailure,
        ServerSelectionTimeoutError,
    )

    if isinstance(exc, InvalidDocument):
        return InvalidValueError(f"value cannot be stored in MongoDB: {exc}")
    if isinstance(exc, ServerSelectionTimeoutError):
        return StoreIOError(
            errno.ETIMEDOUT,
            f"no MongoDB server answered within {timeout} s ({where})",
        )
    if isinstance(exc, ConnectionFailure):
        return StoreIOError(
            errno.ECONNRESET, f"lost the connection to MongoDB ({where}): {exc}"
        )
    if isinstance(exc, OperationFailure) and exc.code in _DENIED:
        return StorePermissionError(f"MongoDB refused access to {where}: {exc}")
    if isinstance(exc, OperationFailure) and exc.code in _TOO_LARGE:
        return InvalidValueError(f"value is too large for one MongoDB document: {exc}")
    return StoreIOError(0, f"MongoDB failed on {where}: {exc}")


def _check_uri(uri: Any) -> str:
    """Return a MongoDB URI, or raise for one pymongo would not take."""
    if not isinstance(uri, str) or not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise InvalidArgumentError(
            f"uri must be a str starting with 'mongodb://' or 'mongodb+srv://', not "
            f"{_redact(uri)!r}"
        )
    return uri


def _check_database(name: Any) -> str:
    """Return a database name, or raise for one MongoDB rejects."""
    if not isinstance(name, str) or not name or len(name.encode()) >= 64:
        raise InvalidArgumentError(
            f"database must be a non-empty str under 64 bytes, not {name!r}"
        )
    if any(char in name for char in '/\\. "$\0'):
        raise InvalidArgumentError(
            f"database {name!r} holds a character MongoDB does not allow in database "
            'names (one of / \\ . space " $ NUL)'
        )
    return name


def _check_collection(name: str) -> None:
    """Raise for a collection name that MongoDB rejects."""
    if "$" in name or "\0" in name or name.startswith("system."):
        raise InvalidArgumentError(
            f"collection_name {name!r} cannot be a MongoDB collection: it must not "
            "hold '$' or NUL or start with 'system.'"
        )


def _hosts(uri: str) -> str:
    """Return the host part of a URI, without credentials, for messages."""
    rest = uri.split("://", 1)[1]
    hosts = rest.split("/", 1)[0].split("?", 1)[0]
    return hosts.rsplit("@", 1)[-1]


def _redact(uri: Any) -> Any:
    """Return a rejected URI with any password hidden, for an error message."""
    if isinstance(uri, str) and "@" in uri:
        scheme, _, rest = uri.partition("://")
        return f"{scheme}://***@{rest.rsplit('@', 1)[-1]}"
    return uri
