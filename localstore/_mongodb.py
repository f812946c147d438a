"""The MongoDB backend: stores kept in one MongoDB collection, as FiftyOne keeps them.

The documents and the records read from them are in :mod:`._mongodb_documents`;
the client, FiftyOne's indexes and the conversion of pymongo's errors are in
:mod:`._mongodb_connection`.

MongoDB's TTL monitor deletes expired documents only once a minute, so every
query here filters on ``expires_at`` itself. A write to one document is atomic
on the server; writes to many (``set_keys``, ``load_store``) run in a
transaction where the deployment has them (a replica set or a sharded cluster).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ._backend import Backend, KeyRecord, StoreRecord
from ._documents import STORE_KEY
from ._mongodb_connection import (
    DATABASE_ENV_VAR,
    DEFAULT_DATABASE,
    URI_ENV_VAR,
    Connection,
    converting_errors,
)
from ._mongodb_documents import (
    NOT_STORE_DOC,
    date_micros,
    exact_update,
    is_live,
    key_range,
    key_record,
    key_update,
    live,
    store_fields,
    store_filter,
    store_record,
    to_bson_date,
    to_bson_value,
    to_dataset_id,
    too_large_to_compare,
    value_text,
)
from .errors import (
    CorruptStoreError,
    InvalidValueError,
    LockTimeoutError,
    StoreExistsError,
)

__all__ = ["DATABASE_ENV_VAR", "DEFAULT_DATABASE", "URI_ENV_VAR", "MongoBackend"]

logger = logging.getLogger(__name__)


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
        self._connection = Connection(
            collection, timeout=timeout, uri=uri, database=database
        )
        self.uri = self._connection.uri
        self.database = self._connection.database

    def __repr__(self) -> str:
        return f"MongoBackend({self.location!r})"

    @property
    def location(self) -> str:
        """Where the stores are, for messages: hosts, database and collection.

        Never holds the URI's credentials.
        """
        return self._connection.location

    # Keys of one store -----------------------------------------------------------

    @converting_errors
    def get_key(
        self, context: str | None, store: str, key: str, now: int
    ) -> KeyRecord | None:
        """Return the live key, or ``None``."""
        where = {**store_filter(context, store, key), **live(now)}
        doc = self._connection.collection().find_one(where)
        return None if doc is None else key_record(doc, self.location)

    @converting_errors
    def has_key(self, context: str | None, store: str, key: str, now: int) -> bool:
        """Tell whether the key is live."""
        where = {**store_filter(context, store, key), **live(now)}
        return self._connection.collection().find_one(where, {"_id": 1}) is not None

    @converting_errors
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

        update = key_update(to_bson_value(value), expires_at, policy, now)
        where = store_filter(context, store, key)
        if only_if_absent:
            # Matches only an expired document; when a live one exists the upsert
            # collides with it on the unique index, which means another writer won.
            where["expires_at"] = {"$lte": to_bson_date(now)}
        for _ in range(3):
            try:
                doc = self._connection.collection().find_one_and_update(
                    where, update, upsert=True, return_document=ReturnDocument.AFTER
                )
            except DuplicateKeyError:
                if only_if_absent:
                    return None
                continue  # two first writes raced; the retry updates the winner's
            return key_record(doc, self.location)
        raise LockTimeoutError(
            f"key {key!r} of store {store!r} kept changing while it was written",
            self.location,
        )

    @converting_errors
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
                store_filter(context, store, key),
                key_update(to_bson_value(value), expires_at, policy, now),
                upsert=True,
            )
            for key, value in items
        ]
        for _ in range(3):
            if not self._connection.write_many(operations):
                return
        raise LockTimeoutError(
            f"keys of store {store!r} kept changing while they were written",
            self.location,
        )

    @converting_errors
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
        from pymongo.errors import DocumentTooLarge

        collection = self._connection.collection()
        where = {**store_filter(context, store, key), **live(now)}
        update = key_update(to_bson_value(value), expires_at, policy, now)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() <= deadline:
            current = collection.find_one(where)
            if current is None or not matches(value_text(current, self.location)):
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
            try:
                doc = collection.find_one_and_update(
                    {**where, **unchanged}, update, return_document=ReturnDocument.AFTER
                )
            except DocumentTooLarge as exc:
                raise too_large_to_compare(current, update, store, key) from exc
            if doc is not None:
                return key_record(doc, self.location)
        raise LockTimeoutError(
            f"key {key!r} of store {store!r} kept changing for {self.timeout} s",
            self.location,
        )

    @converting_errors
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
            changes["expires_at"] = to_bson_date(expires_at)
        if policy is not None:
            changes["policy"] = policy
        if not changes:
            return self.get_key(context, store, key, now)
        doc = self._connection.collection().find_one_and_update(
            {**store_filter(context, store, key), **live(now)},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else key_record(doc, self.location)

    @converting_errors
    def delete_key(self, context: str | None, store: str, key: str, now: int) -> bool:
        """Delete a key (an expired one too); return whether it was live."""
        doc = self._connection.collection().find_one_and_delete(
            store_filter(context, store, key), projection={"expires_at": 1}
        )
        return doc is not None and is_live(doc, now)

    @converting_errors
    def list_items(
        self, context: str | None, store: str, now: int, prefix: str | None
    ) -> list[tuple[str, str]]:
        """Return the live ``(key, value)`` pairs by key, optionally by prefix."""
        where = {**store_filter(context, store), "key": key_range(prefix), **live(now)}
        collection = self._connection.collection()
        fields = {"key": 1, "value": 1, "store_name": 1}  # store_name for a message
        cursor = collection.find(where, fields).sort("key", 1)
        return [(doc["key"], value_text(doc, self.location)) for doc in cursor]

    @converting_errors
    def list_keys(self, context: str | None, store: str, now: int) -> list[str]:
        """Return the live keys, sorted."""
        where = {**store_filter(context, store), "key": NOT_STORE_DOC, **live(now)}
        collection = self._connection.collection()
        cursor = collection.find(where, {"key": 1, "_id": 0}).sort("key", 1)
        return [doc["key"] for doc in cursor]

    @converting_errors
    def count_keys(self, context: str | None, store: str, now: int) -> int:
        """Return the number of live keys."""
        where = {**store_filter(context, store), "key": NOT_STORE_DOC, **live(now)}
        return self._connection.collection().count_documents(where)

    # Stores ----------------------------------------------------------------------

    @converting_errors
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
            **store_filter(context, store, STORE_KEY),
            "value": None if metadata is None else to_bson_value(metadata),
            "created_at": to_bson_date(now),
            "updated_at": None,
            "expires_at": None,
            "policy": policy,
        }
        try:
            self._connection.collection().insert_one(doc)
        except DuplicateKeyError as exc:
            where = "the global context" if context is None else f"dataset {context!r}"
            raise StoreExistsError(
                f"store {store!r} already exists in {where}"
            ) from exc
        return store_record(doc, self.location)

    @converting_errors
    def get_store(
        self, context: str | None, store: str, now: int
    ) -> StoreRecord | None:
        """Return the store's document, one made up for a key-only store, or None."""
        collection = self._connection.collection()
        doc = collection.find_one(
            {**store_filter(context, store, STORE_KEY), **live(now)}
        )
        if doc is not None:
            return store_record(doc, self.location)
        where = {**store_filter(context, store), "key": NOT_STORE_DOC, **live(now)}
        named = {"created_at": 1, "key": 1, "store_name": 1}  # for a message
        oldest = collection.find_one(where, named, sort=[("created_at", 1)])
        if oldest is None:
            return None
        created_at = date_micros(oldest, "created_at", self.location)
        return StoreRecord(None, created_at, None, "persist", has_document=False)

    @converting_errors
    def delete_store(
        self, context: str | None, store: str, now: int
    ) -> StoreRecord | None:
        """Delete every document of the store; return what existed.

        A store whose document cannot be read is deleted too, as on SQLite
        (deleting is how damage is cleared); a blank record stands for it.
        """
        damage = None
        try:
            existing = self.get_store(context, store, now)
        except CorruptStoreError as exc:
            damage = exc
            existing = StoreRecord(None, now, None, "persist", has_document=False)
        self._connection.collection().delete_many(store_filter(context, store))
        if damage is not None:
            logger.warning("deleted a damaged store: %s", damage)
        return existing

    @converting_errors
    def has_store(self, context: str | None, store: str, now: int) -> bool:
        """Tell whether a store has a live document, without reading it."""
        where = {**store_filter(context, store), **live(now)}
        return self._connection.collection().find_one(where, {"_id": 1}) is not None

    @converting_errors
    def clear_cache(self, context: str | None, store: str | None, now: int) -> int:
        """Delete evict-policy and TTL keys, and evict-policy store documents."""
        where: dict[str, Any] = {
            "dataset_id": to_dataset_id(context),
            "$or": [{"policy": "evict"}, {"expires_at": {"$type": "date"}}],
        }
        if store is not None:
            where["store_name"] = store
        return self._connection.collection().delete_many(where).deleted_count

    @converting_errors
    def list_stores(self, context: str | None, now: int) -> list[str]:
        """Return the names of the stores with a live document in ``context``."""
        where = {"dataset_id": to_dataset_id(context), **live(now)}
        names = self._connection.collection().distinct("store_name", where)
        return sorted(name for name in names if isinstance(name, str))

    @converting_errors
    def list_contexts(self) -> list[str | None]:
        """Return every context with a document in the collection."""
        from bson import ObjectId

        # Answered from the dataset_id index, which also lists as null the
        # documents without the field that FiftyOne's versions of 2024 wrote.
        ids = self._connection.collection().distinct("dataset_id")
        contexts = sorted(
            {str(value) for value in ids if isinstance(value, (str, ObjectId))}
        )
        return [None, *contexts] if None in ids else list(contexts)

    @converting_errors
    def sweep(self, now: int) -> dict[tuple[str | None, str], int]:
        """Delete expired documents now, rather than at the TTL monitor's next pass."""
        collection = self._connection.collection()
        expired = {"expires_at": {"$lte": to_bson_date(now)}}
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

    @converting_errors
    def dump_store(
        self, context: str | None, store: str, now: int
    ) -> tuple[StoreRecord | None, list[KeyRecord]]:
        """Return the store document and every live key, read by one query."""
        where = {**store_filter(context, store), **live(now)}
        document, keys = None, []
        for doc in self._connection.collection().find(where).sort("key", 1):
            if doc["key"] == STORE_KEY:
                document = store_record(doc, self.location)
            else:
                keys.append(key_record(doc, self.location))
        return document, keys

    @converting_errors
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
            where = {**store_filter(context, store), **live(now)}
            where["key"] = {"$in": [record.key for record in keys]}
            collection = self._connection.collection()
            live_keys = {doc["key"] for doc in collection.find(where, {"key": 1})}
            keys = [record for record in keys if record.key not in live_keys]
        for record in keys:
            where = store_filter(context, store, record.key)
            if not replace:
                where["expires_at"] = {"$lte": to_bson_date(now)}  # or missing: upsert
            try:
                written = exact_update(record)
            except (InvalidValueError, CorruptStoreError) as exc:
                raise type(exc)(f"key {record.key!r}: {exc}") from exc
            operations.append(UpdateOne(where, written, upsert=True))
        if document is not None:
            fields = store_fields(document)
            update = [{"$set": fields}] if replace else {"$setOnInsert": fields}
            where = store_filter(context, store, STORE_KEY)
            operations.append(UpdateOne(where, update, upsert=True))
        skipped = self._connection.write_many(operations)
        return len(keys) - sum(1 for index in skipped if index < len(keys))

    @converting_errors
    def change_marker(self, context: str | None, store: str) -> object:
        """Return the count, sizes and newest ``updated_at`` of the store's documents.

        Timestamps hold milliseconds, so a rewrite that keeps the count, the sizes
        and the millisecond of the previous change goes unnoticed until the next.
        """
        summary = self._connection.collection().aggregate(
            [
                {"$match": store_filter(context, store)},
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
