"""The MongoDB backend: stores kept in one MongoDB collection, as FiftyOne keeps them.

Every key is one document ``{store_name, key, value, dataset_id, created_at,
updated_at, expires_at, policy}``; a store's metadata is the document whose key
is ``"__store__"``. ``dataset_id`` is an ``ObjectId`` for a context whose id is 24
lowercase hex digits (so FiftyOne finds the dataset's stores), the string itself
for any other id, and ``null`` for the global context. The indexes are
FiftyOne's, under FiftyOne's names, so either side may create them first.

Values are stored as native BSON, not as JSON text, so FiftyOne reads them as it
reads its own. BSON dates hold milliseconds: every timestamp, and every
``datetime`` inside a value, is cut to the millisecond on the way in.

MongoDB's TTL monitor deletes expired documents only once a minute, so every
query here filters on ``expires_at`` itself. A write to one document is atomic
on the server; writes to many (``set_keys``, ``load_store``) run in a
transaction where the deployment has them (a replica set or a sharded cluster).

pymongo is imported only when this backend is used, and one ``MongoClient`` per
URI is shared by every backend of the process.
"""

from __future__ import annotations

import atexit
import datetime as dt
import errno
import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from . import _codec
from ._backend import Backend, KeyRecord, StoreRecord
from ._documents import STORE_KEY, to_datetime, to_micros
from .errors import (
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
    from pymongo import MongoClient
    from pymongo.collection import Collection

__all__ = ["DATABASE_ENV_VAR", "DEFAULT_DATABASE", "URI_ENV_VAR", "MongoBackend"]

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")

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

_OBJECT_ID_HEX = re.compile(r"[0-9a-f]{24}")
_FAR_FUTURE = dt.datetime(9999, 12, 31, 23, 59, 59)
_NOT_STORE_DOC = {"$ne": STORE_KEY}

# A BSON value larger than this cannot fit in a document with the other fields.
_MAX_VALUE_BSON = 16 * 1024 * 1024 - 16 * 1024

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


def _converting_errors(method: Callable[_P, _T]) -> Callable[_P, _T]:
    """Turn pymongo's errors raised by ``method`` into localstore errors."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        from bson.errors import InvalidDocument
        from pymongo.errors import (
            ConnectionFailure,
            OperationFailure,
            PyMongoError,
            ServerSelectionTimeoutError,
        )

        backend = args[0]
        assert isinstance(backend, MongoBackend)
        where = backend.location
        try:
            return method(*args, **kwargs)
        except LocalStoreError:
            raise
        except InvalidDocument as exc:
            raise InvalidValueError(
                f"value cannot be stored in MongoDB: {exc}"
            ) from exc
        except ServerSelectionTimeoutError as exc:
            raise StoreIOError(
                errno.ETIMEDOUT,
                f"no MongoDB server answered within {backend.timeout} s ({where})",
            ) from exc
        except ConnectionFailure as exc:
            raise StoreIOError(
                errno.ECONNRESET, f"lost the connection to MongoDB ({where}): {exc}"
            ) from exc
        except OperationFailure as exc:
            if exc.code in _DENIED:
                raise StorePermissionError(
                    f"MongoDB refused access to {where}: {exc}"
                ) from exc
            if exc.code in _TOO_LARGE:
                raise InvalidValueError(
                    f"value is too large for one MongoDB document: {exc}"
                ) from exc
            raise StoreIOError(0, f"MongoDB failed on {where}: {exc}") from exc
        except PyMongoError as exc:
            raise StoreIOError(0, f"MongoDB failed on {where}: {exc}") from exc

    return wrapper


class MongoBackend(Backend):
    """Keeps every store of a collection in one MongoDB collection.

    :param root: kept for the service's ``root``; nothing is written there.
    :param collection: the MongoDB collection; FiftyOne's is ``"execution_store"``.
    :param timeout: seconds to wait for a server before raising
        :class:`~localstore.errors.StoreIOError`.
    :param uri: a ``mongodb://`` or ``mongodb+srv://`` URI; default
        ``$LOCALSTORE_MONGODB_URI``, else ``mongodb://localhost:27017``.
    :param database: the database; default ``$LOCALSTORE_MONGODB_DATABASE``, else
        ``"fiftyone"``, FiftyOne's own.
    :raises InvalidArgumentError: for a URI, database or collection name that
        MongoDB cannot use, or when pymongo is not installed.
    """

    kind = "mongodb"

    def __init__(
        self,
        root: str,
        collection: str,
        *,
        timeout: float = 10.0,
        uri: str | None = None,
        database: str | None = None,
    ) -> None:
        super().__init__(root, collection, timeout=timeout)
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
        self._hosts = _hosts(self.uri)
        self._key = (self.uri, max(1, round(timeout * 1000)))

    def __repr__(self) -> str:
        return f"MongoBackend({self.location!r})"

    @property
    def location(self) -> str:
        """Where the stores are, for messages: hosts, database and collection.

        Never holds the URI's credentials.
        """
        return f"{self._hosts}/{self.database}.{self.collection}"

    # Connection ------------------------------------------------------------------

    def _client(self) -> MongoClient[dict[str, Any]]:
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

    def _coll(self) -> Collection[dict[str, Any]]:
        """Return the collection, creating FiftyOne's indexes on first use."""
        client = self._client()
        collection = client[self.database][self.collection]
        marker = (*self._key, self.database, self.collection)
        if marker not in _clients.indexed:
            existing = {index["name"] for index in collection.list_indexes()}
            for name, (keys, options) in INDEXES.items():
                if name not in existing:
                    collection.create_index(keys, name=name, **options)
            _clients.indexed.add(marker)
            logger.debug("checked the indexes of %s", self.location)
        return collection

    def _has_transactions(self) -> bool:
        """Tell whether the deployment runs multi-document transactions."""
        known = _clients.transactions.get(self._key)
        if known is None:
            hello = self._client().admin.command("hello")
            known = "setName" in hello or hello.get("msg") == "isdbgrid"
            _clients.transactions[self._key] = known
        return known

    def _write_many(self, operations: list[Any]) -> list[int]:
        """Run writes all or none; return the indexes of those that hit a duplicate key.

        Without transactions (a standalone server) they run unordered, and a
        failure other than a duplicate key can leave some of them done.
        """
        from pymongo.errors import BulkWriteError

        if not operations:
            return []
        collection = self._coll()
        if self._has_transactions():
            with self._client().start_session() as session:
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

    # Filters -------------------------------------------------------------------------

    def _where(
        self, context: str | None, store: str, key: str | None = None
    ) -> dict[str, Any]:
        """Return the filter of a store's documents, or of one of them."""
        where: dict[str, Any] = {
            "store_name": store,
            "dataset_id": _dataset_id(context),
        }
        if key is not None:
            where["key"] = key
        return where

    # Keys of one store -----------------------------------------------------------

    @_converting_errors
    def get_key(
        self, context: str | None, store: str, key: str, now: int
    ) -> KeyRecord | None:
        """Return the live key, or ``None``."""
        doc = self._coll().find_one({**self._where(context, store, key), **_live(now)})
        return None if doc is None else self._key_record(doc)

    @_converting_errors
    def has_key(self, context: str | None, store: str, key: str, now: int) -> bool:
        """Tell whether the key is live."""
        where = {**self._where(context, store, key), **_live(now)}
        return self._coll().find_one(where, {"_id": 1}) is not None

    @_converting_errors
    def set_key(
        self,
        context: str | None,
        store: str,
        key: str,
        value: str,
        expires_at: int | None,
        policy: str,
        now: int,
        *,
        only_if_absent: bool = False,
    ) -> KeyRecord | None:
        """Write a key in one atomic upsert and return it as stored."""
        from pymongo import ReturnDocument
        from pymongo.errors import DuplicateKeyError

        update = _key_update(_to_bson_value(value), expires_at, policy, now)
        where = self._where(context, store, key)
        if only_if_absent:
            # Matches only an expired document; when a live one exists the upsert
            # collides with it on the unique index, which means another writer won.
            where["expires_at"] = {"$lte": _date(now)}
        for _ in range(3):
            try:
                doc = self._coll().find_one_and_update(
                    where, update, upsert=True, return_document=ReturnDocument.AFTER
                )
            except DuplicateKeyError:
                if only_if_absent:
                    return None
                continue  # two first writes raced; the retry updates the winner's
            return self._key_record(doc)
        raise LockTimeoutError(
            f"key {key!r} of store {store!r} kept changing while it was written",
            self.location,
        )

    @_converting_errors
    def set_keys(
        self,
        context: str | None,
        store: str,
        items: list[tuple[str, str]],
        expires_at: int | None,
        policy: str,
        now: int,
    ) -> None:
        """Write many keys: in one transaction where the server has them."""
        from pymongo import UpdateOne

        operations = [
            UpdateOne(
                self._where(context, store, key),
                _key_update(_to_bson_value(value), expires_at, policy, now),
                upsert=True,
            )
            for key, value in items
        ]
        for _ in range(3):
            if not self._write_many(operations):
                return
        raise LockTimeoutError(
            f"keys of store {store!r} kept changing while they were written",
            self.location,
        )

    @_converting_errors
    def compare_and_set_key(
        self,
        context: str | None,
        store: str,
        key: str,
        matches: Callable[[str], bool],
        value: str,
        expires_at: int | None,
        policy: str,
        now: int,
    ) -> KeyRecord | None:
        """Write a live key only if ``matches(current_value)``.

        The write's filter requires the value that was read, so a change by
        another client in between makes it match nothing; then the key is read
        and compared again.
        """
        from pymongo import ReturnDocument

        collection = self._coll()
        where = {**self._where(context, store, key), **_live(now)}
        update = _key_update(_to_bson_value(value), expires_at, policy, now)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() <= deadline:
            current = collection.find_one(where)
            if current is None or not matches(self._value_text(current)):
                return None
            unchanged = {
                "_id": current["_id"],
                "$expr": {
                    "$eq": [
                        {"$ifNull": ["$value", None]},
                        {"$literal": current.get("value")},
                    ]
                },
            }
            doc = collection.find_one_and_update(
                {**where, **unchanged}, update, return_document=ReturnDocument.AFTER
            )
            if doc is not None:
                return self._key_record(doc)
        raise LockTimeoutError(
            f"key {key!r} of store {store!r} kept changing for {self.timeout} s",
            self.location,
        )

    @_converting_errors
    def update_key(
        self,
        context: str | None,
        store: str,
        key: str,
        now: int,
        *,
        expires_at: int | None,
        policy: str | None,
        set_expiry: bool,
    ) -> KeyRecord | None:
        """Change a live key's expiry and/or policy."""
        from pymongo import ReturnDocument

        changes: dict[str, Any] = {}
        if set_expiry:
            changes["expires_at"] = _date(expires_at)
        if policy is not None:
            changes["policy"] = policy
        if not changes:
            return self.get_key(context, store, key, now)
        doc = self._coll().find_one_and_update(
            {**self._where(context, store, key), **_live(now)},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else self._key_record(doc)

    @_converting_errors
    def delete_key(self, context: str | None, store: str, key: str, now: int) -> bool:
        """Delete a key (an expired one too); return whether it was live."""
        doc = self._coll().find_one_and_delete(
            self._where(context, store, key), projection={"expires_at": 1}
        )
        return doc is not None and _is_live(doc, now)

    @_converting_errors
    def list_items(
        self, context: str | None, store: str, now: int, prefix: str | None
    ) -> list[tuple[str, str]]:
        """Return the live ``(key, value)`` pairs by key, optionally by prefix."""
        where = {**self._where(context, store), "key": _key_range(prefix), **_live(now)}
        cursor = self._coll().find(where, {"key": 1, "value": 1}).sort("key", 1)
        return [(doc["key"], self._value_text(doc)) for doc in cursor]

    @_converting_errors
    def list_keys(self, context: str | None, store: str, now: int) -> list[str]:
        """Return the live keys, sorted."""
        where = {**self._where(context, store), "key": _NOT_STORE_DOC, **_live(now)}
        cursor = self._coll().find(where, {"key": 1, "_id": 0}).sort("key", 1)
        return [doc["key"] for doc in cursor]

    @_converting_errors
    def count_keys(self, context: str | None, store: str, now: int) -> int:
        """Return the number of live keys."""
        where = {**self._where(context, store), "key": _NOT_STORE_DOC, **_live(now)}
        return self._coll().count_documents(where)

    # Stores ----------------------------------------------------------------------

    @_converting_errors
    def create_store(
        self,
        context: str | None,
        store: str,
        metadata: str | None,
        policy: str,
        now: int,
    ) -> StoreRecord:
        """Insert the store document; raise :class:`StoreExistsError` if it has one."""
        from pymongo.errors import DuplicateKeyError

        doc = {
            **self._where(context, store, STORE_KEY),
            "value": None if metadata is None else _to_bson_value(metadata),
            "created_at": _date(now),
            "updated_at": None,
            "expires_at": None,
            "policy": policy,
        }
        try:
            self._coll().insert_one(doc)
        except DuplicateKeyError as exc:
            where = "the global context" if context is None else f"dataset {context!r}"
            raise StoreExistsError(
                f"store {store!r} already exists in {where}"
            ) from exc
        return self._store_record(doc)

    @_converting_errors
    def get_store(
        self, context: str | None, store: str, now: int
    ) -> StoreRecord | None:
        """Return the store's document, one made up for a key-only store, or None."""
        collection = self._coll()
        doc = collection.find_one(
            {**self._where(context, store, STORE_KEY), **_live(now)}
        )
        if doc is not None:
            return self._store_record(doc)
        where = {**self._where(context, store), "key": _NOT_STORE_DOC, **_live(now)}
        oldest = collection.find_one(where, {"created_at": 1}, sort=[("created_at", 1)])
        if oldest is None:
            return None
        created_at = self._micros(oldest, "created_at")
        return StoreRecord(None, created_at, None, "persist", has_document=False)

    @_converting_errors
    def delete_store(
        self, context: str | None, store: str, now: int
    ) -> StoreRecord | None:
        """Delete every document of the store; return what existed."""
        existing = self.get_store(context, store, now)
        self._coll().delete_many(self._where(context, store))
        return existing

    @_converting_errors
    def clear_cache(self, context: str | None, store: str | None, now: int) -> int:
        """Delete evict-policy and TTL keys, and evict-policy store documents."""
        where: dict[str, Any] = {
            "dataset_id": _dataset_id(context),
            "$or": [{"policy": "evict"}, {"expires_at": {"$type": "date"}}],
        }
        if store is not None:
            where["store_name"] = store
        return self._coll().delete_many(where).deleted_count

    @_converting_errors
    def list_stores(self, context: str | None, now: int) -> list[str]:
        """Return the names of the stores with a live document in ``context``."""
        where = {"dataset_id": _dataset_id(context), **_live(now)}
        names = self._coll().distinct("store_name", where)
        return sorted(name for name in names if isinstance(name, str))

    @_converting_errors
    def list_contexts(self) -> list[str | None]:
        """Return every context with a document in the collection."""
        from bson import ObjectId

        # Answered from the dataset_id index, which also lists as null the
        # documents without the field that FiftyOne's versions of 2024 wrote.
        ids = self._coll().distinct("dataset_id")
        contexts = sorted(
            {str(value) for value in ids if isinstance(value, (str, ObjectId))}
        )
        return [None, *contexts] if None in ids else list(contexts)

    @_converting_errors
    def sweep(self, now: int) -> dict[tuple[str | None, str], int]:
        """Delete expired documents now, rather than at the TTL monitor's next pass."""
        collection = self._coll()
        expired = {"expires_at": {"$lte": _date(now)}}
        groups = collection.aggregate(
            [
                {"$match": expired},
                {
                    "$group": {
                        "_id": {"dataset_id": "$dataset_id", "store": "$store_name"}
                    }
                },
            ]
        )
        counts: dict[tuple[str | None, str], int] = {}
        for group in groups:
            dataset_id, store = group["_id"].get("dataset_id"), group["_id"]["store"]
            where = {"store_name": store, "dataset_id": dataset_id, **expired}
            deleted = collection.delete_many(where).deleted_count
            if deleted:
                context = None if dataset_id is None else str(dataset_id)
                counts[(context, store)] = deleted
                logger.debug("swept %d expired keys from %r", deleted, store)
        return counts

    # Whole stores ----------------------------------------------------------------

    @_converting_errors
    def dump_store(
        self, context: str | None, store: str, now: int
    ) -> tuple[StoreRecord | None, list[KeyRecord]]:
        """Return the store document and every live key, read by one query."""
        where = {**self._where(context, store), **_live(now)}
        document, keys = None, []
        for doc in self._coll().find(where).sort("key", 1):
            if doc["key"] == STORE_KEY:
                document = self._store_record(doc)
            else:
                keys.append(self._key_record(doc))
        return document, keys

    @_converting_errors
    def load_store(
        self,
        context: str | None,
        store: str,
        document: StoreRecord | None,
        keys: list[KeyRecord],
        now: int,
        *,
        replace: bool,
    ) -> int:
        """Write a document and keys exactly as given."""
        from pymongo import UpdateOne

        operations = []
        if not replace and keys:
            where = {**self._where(context, store), **_live(now)}
            where["key"] = {"$in": [record.key for record in keys]}
            live = {doc["key"] for doc in self._coll().find(where, {"key": 1})}
            keys = [record for record in keys if record.key not in live]
        for record in keys:
            where = self._where(context, store, record.key)
            if not replace:
                where["expires_at"] = {"$lte": _date(now)}  # or missing: upsert
            operations.append(UpdateOne(where, _exact_update(record), upsert=True))
        if document is not None:
            fields = _store_fields(document)
            update = [{"$set": fields}] if replace else {"$setOnInsert": fields}
            where = self._where(context, store, STORE_KEY)
            operations.append(UpdateOne(where, update, upsert=True))
        skipped = self._write_many(operations)
        return len(keys) - sum(1 for index in skipped if index < len(keys))

    @_converting_errors
    def change_marker(self, context: str | None, store: str) -> object:
        """Return the count, sizes and newest ``updated_at`` of the store's documents.

        Timestamps hold milliseconds, so a rewrite that keeps the count, the sizes
        and the millisecond of the previous change goes unnoticed until the next.
        """
        summary = self._coll().aggregate(
            [
                {"$match": self._where(context, store)},
                {
                    "$group": {
                        "_id": None,
                        "count": {"$sum": 1},
                        "size": {"$sum": {"$bsonSize": "$$ROOT"}},
                        "latest": {"$max": "$updated_at"},
                        "times": {"$sum": {"$toLong": "$updated_at"}},
                    }
                },
            ]
        )
        for row in summary:
            return (row["count"], row["size"], row["latest"], row["times"])
        return None

    # Records ---------------------------------------------------------------------

    def _key_record(self, doc: dict[str, Any] | None) -> KeyRecord:
        """Turn a key document into a record."""
        assert doc is not None
        created_at = self._micros(doc, "created_at")
        updated = doc.get("updated_at")
        expires = doc.get("expires_at")
        return KeyRecord(
            doc["key"],
            self._value_text(doc),
            created_at,
            created_at if updated is None else self._micros(doc, "updated_at"),
            None if expires is None else self._micros(doc, "expires_at"),
            _policy(doc),
        )

    def _store_record(self, doc: dict[str, Any]) -> StoreRecord:
        """Turn a store document into a record."""
        metadata = None if doc.get("value") is None else self._value_text(doc)
        updated = doc.get("updated_at")
        return StoreRecord(
            metadata,
            self._micros(doc, "created_at"),
            None if updated is None else self._micros(doc, "updated_at"),
            _policy(doc),
            has_document=True,
        )

    def _value_text(self, doc: dict[str, Any]) -> str:
        """Return a document's value as codec text; raise for a type it cannot hold."""
        try:
            return _codec.encode(doc.get("value"))
        except InvalidValueError as exc:
            raise CorruptStoreError(
                f"key {doc.get('key')!r} of store {doc.get('store_name')!r} holds a "
                f"value localstore cannot read ({exc}); it was left as it is",
                self.location,
            ) from exc

    def _micros(self, doc: dict[str, Any], field: str) -> int:
        """Return a date field of a document in epoch microseconds."""
        moment = doc.get(field)
        if not isinstance(moment, dt.datetime):
            raise CorruptStoreError(
                f"key {doc.get('key')!r} of store {doc.get('store_name')!r} has "
                f"{field} {moment!r}, not a date; it was left as it is",
                self.location,
            )
        return to_micros(moment)


def _dataset_id(context: str | None) -> Any:
    """Return the ``dataset_id`` a context is stored under: ObjectId, str or None."""
    if context is not None and _OBJECT_ID_HEX.fullmatch(context):
        from bson import ObjectId

        return ObjectId(context)
    return context


def _date(micros: int | None) -> dt.datetime | None:
    """Return epoch microseconds as the naive UTC date BSON keeps (milliseconds)."""
    return None if micros is None else to_datetime(micros - micros % 1000)


def _live(now: int) -> dict[str, Any]:
    """Return the filter of documents that have not expired at ``now``."""
    return {"$or": [{"expires_at": None}, {"expires_at": {"$gt": _date(now)}}]}


def _is_live(doc: dict[str, Any], now: int) -> bool:
    """Tell whether a document read back has not expired at ``now``."""
    expires = doc.get("expires_at")
    moment = _date(now)
    assert moment is not None
    return not isinstance(expires, dt.datetime) or expires > moment


def _policy(doc: dict[str, Any]) -> str:
    """Return a document's policy; FiftyOne reads a missing one from ``expires_at``."""
    policy = doc.get("policy")
    if policy in ("persist", "evict"):
        return str(policy)
    return "evict" if doc.get("expires_at") else "persist"


def _to_bson_value(text: str) -> Any:
    """Return codec text as the Python value pymongo stores natively.

    :raises InvalidValueError: when its BSON would not fit in one document (BSON
        can be several times larger than JSON for long arrays).
    """
    value = _codec.decode(text)
    if len(text) > _MAX_VALUE_BSON // 16:
        import bson

        size = len(bson.encode({"value": value}))
        if size > _MAX_VALUE_BSON:
            raise InvalidValueError(
                f"value is {size} bytes as BSON; at most {_MAX_VALUE_BSON} bytes fit "
                "in one MongoDB document"
            )
    return value


def _key_update(
    value: Any, expires_at: int | None, policy: str, now: int
) -> list[dict[str, Any]]:
    """Return the update that defines a key anew, keeping ``created_at`` while live.

    It is a pipeline so that ``created_at`` can depend on the stored expiry; the
    value goes through ``$literal`` so that strings and keys starting with
    ``$`` stay data.
    """
    moment = _date(now)
    stays_live = {"$gt": [{"$ifNull": ["$expires_at", _FAR_FUTURE]}, moment]}
    return [
        {
            "$set": {
                "value": {"$literal": value},
                "created_at": {
                    "$cond": [stays_live, {"$ifNull": ["$created_at", moment]}, moment]
                },
                "updated_at": moment,
                "expires_at": {"$literal": _date(expires_at)},
                "policy": policy,
            }
        }
    ]


def _exact_update(record: KeyRecord) -> list[dict[str, Any]]:
    """Return the update that writes a key record with its own timestamps."""
    return [
        {
            "$set": {
                "value": {"$literal": _to_bson_value(record.value)},
                "created_at": _date(record.created_at),
                "updated_at": _date(record.updated_at),
                "expires_at": {"$literal": _date(record.expires_at)},
                "policy": record.policy,
            }
        }
    ]


def _store_fields(record: StoreRecord) -> dict[str, Any]:
    """Return the fields of a store document, for an update."""
    metadata = None if record.metadata is None else _to_bson_value(record.metadata)
    return {
        "value": {"$literal": metadata},
        "created_at": _date(record.created_at),
        "updated_at": {"$literal": _date(record.updated_at)},
        "expires_at": None,
        "policy": record.policy,
    }


def _key_range(prefix: str | None) -> dict[str, Any]:
    """Return the condition on ``key`` for keys starting with ``prefix``.

    A range rather than a regular expression: it is literal, uses the index, and
    MongoDB compares strings as UTF-8 bytes, which orders them as Python does.
    """
    if not prefix:
        return _NOT_STORE_DOC
    condition: dict[str, Any] = {"$gte": prefix, **_NOT_STORE_DOC}
    for index in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[index]) + 1
        if code <= 0x10FFFF:
            if 0xD800 <= code <= 0xDFFF:
                code = 0xE000  # surrogates cannot be encoded in UTF-8
            condition["$lt"] = prefix[:index] + chr(code)
            break
    return condition


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
