"""The MongoDB backend's documents, laid out as FiftyOne lays them out, and its records.

Every key is one document ``{store_name, key, value, dataset_id, created_at,
updated_at, expires_at, policy}``; a store's metadata is the document whose key
is ``"__store__"``. ``dataset_id`` is an ``ObjectId`` for a context whose id is 24
lowercase hex digits (so FiftyOne finds the dataset's stores), the string itself
for any other id, and ``null`` for the global context.

Values are stored as native BSON, not as JSON text, so FiftyOne reads them as it
reads its own. BSON dates hold milliseconds: every timestamp, and every
``datetime`` inside a value, is cut to the millisecond on the way in.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from . import _codec
from ._backend import KeyRecord, StoreRecord
from ._documents import STORE_KEY, to_datetime, to_micros
from .errors import CorruptStoreError, InvalidValueError

__all__ = [
    "NOT_STORE_DOC",
    "date_micros",
    "exact_update",
    "is_live",
    "key_range",
    "key_record",
    "key_update",
    "live",
    "store_fields",
    "store_filter",
    "store_record",
    "to_bson_date",
    "to_bson_value",
    "to_dataset_id",
    "too_large_to_compare",
    "value_text",
]

#: The condition on ``key`` that leaves out the store document.
NOT_STORE_DOC = {"$ne": STORE_KEY}

_OBJECT_ID_HEX = re.compile(r"[0-9a-f]{24}")
_FAR_FUTURE = dt.datetime(9999, 12, 31, 23, 59, 59)

# A BSON value larger than this cannot fit in a document with the other fields.
_MAX_VALUE_BSON = 16 * 1024 * 1024 - 16 * 1024


def to_dataset_id(context: str | None) -> Any:
    """Return the ``dataset_id`` a context is stored under: ObjectId, str or None."""
    if context is not None and _OBJECT_ID_HEX.fullmatch(context):
        from bson import ObjectId

        return ObjectId(context)
    return context


def to_bson_date(micros: int | None) -> dt.datetime | None:
    """Return epoch microseconds as the naive UTC date BSON keeps (milliseconds)."""
    return None if micros is None else to_datetime(micros - micros % 1000)


def store_filter(
    context: str | None, store: str, key: str | None = None
) -> dict[str, Any]:
    """Return the filter of a store's documents, or of one of them."""
    where: dict[str, Any] = {
        "store_name": store,
        "dataset_id": to_dataset_id(context),
    }
    if key is not None:
        where["key"] = key
    return where


def live(now: int) -> dict[str, Any]:
    """Return the filter of documents that have not expired at ``now``."""
    return {"$or": [{"expires_at": None}, {"expires_at": {"$gt": to_bson_date(now)}}]}


def is_live(doc: dict[str, Any], now: int) -> bool:
    """Tell whether a document read back has not expired at ``now``."""
    expires = doc.get("expires_at")
    moment = to_bson_date(now)
    assert moment is not None
    return not isinstance(expires, dt.datetime) or expires > moment


def key_range(prefix: str | None) -> dict[str, Any]:
    """Return the condition on ``key`` for keys starting with ``prefix``.

    A range rather than a regular expression: it is literal, uses the index, and
    MongoDB compares strings as UTF-8 bytes, which orders them as Python does.
    """
    if not prefix:
        return NOT_STORE_DOC
    condition: dict[str, Any] = {"$gte": prefix, **NOT_STORE_DOC}
    for index in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[index]) + 1
        if code <= 0x10FFFF:
            if 0xD800 <= code <= 0xDFFF:
                code = 0xE000  # surrogates cannot be encoded in UTF-8
            condition["$lt"] = prefix[:index] + chr(code)
            break
    return condition


# Records to documents ----------------------------------------------------------


def to_bson_value(text: str) -> Any:
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


def key_update(
    value: Any, expires_at: int | None, policy: str, now: int
) -> list[dict[str, Any]]:
    """Return the update that defines a key anew, keeping ``created_at`` while live.

    It is a pipeline so that ``created_at`` can depend on the stored expiry; the
    value goes through ``$literal`` so that strings and keys starting with
    ``$`` stay data.
    """
    moment = to_bson_date(now)
    stays_live = {"$gt": [{"$ifNull": ["$expires_at", _FAR_FUTURE]}, moment]}
    return [
        {
            "$set": {
                "value": {"$literal": value},
                "created_at": {
                    "$cond": [stays_live, {"$ifNull": ["$created_at", moment]}, moment]
                },
                "updated_at": moment,
                "expires_at": {"$literal": to_bson_date(expires_at)},
                "policy": policy,
            }
        }
    ]


def exact_update(record: KeyRecord) -> list[dict[str, Any]]:
    """Return the update that writes a key record with its own timestamps."""
    return [
        {
            "$set": {
                "value": {"$literal": to_bson_value(record.value)},
                "created_at": to_bson_date(record.created_at),
                "updated_at": to_bson_date(record.updated_at),
                "expires_at": {"$literal": to_bson_date(record.expires_at)},
                "policy": record.policy,
            }
        }
    ]


def store_fields(record: StoreRecord) -> dict[str, Any]:
    """Return the fields of a store document, for an update."""
    metadata = None if record.metadata is None else to_bson_value(record.metadata)
    return {
        "value": {"$literal": metadata},
        "created_at": to_bson_date(record.created_at),
        "updated_at": {"$literal": to_bson_date(record.updated_at)},
        "expires_at": None,
        "policy": record.policy,
    }


def too_large_to_compare(
    current: dict[str, Any], update: list[dict[str, Any]], store: str, key: str
) -> InvalidValueError:
    """Return the error for a compare-and-set whose two values overflow a command.

    The write's filter holds the value read and its update the new one, and
    MongoDB takes both in one command of at most 16 MiB.
    """
    import bson

    expected = bson.encode({"value": current.get("value")})
    new = bson.encode({"value": update[0]["$set"]["value"]["$literal"]})
    return InvalidValueError(
        f"compare_and_set_key on key {key!r} of store {store!r}: the expected value "
        f"and the new one take {len(expected) + len(new)} bytes as BSON together; "
        "MongoDB gets both in one command, so together they must fit in 16 MiB"
    )


# Documents to records ----------------------------------------------------------
#
# ``location`` names the collection in the CorruptStoreError raised for a
# document that localstore cannot read.


def key_record(doc: dict[str, Any] | None, location: str) -> KeyRecord:
    """Turn a key document into a record."""
    assert doc is not None
    created_at = date_micros(doc, "created_at", location)
    updated = doc.get("updated_at")
    expires = doc.get("expires_at")
    return KeyRecord(
        doc["key"],
        value_text(doc, location),
        created_at,
        created_at if updated is None else date_micros(doc, "updated_at", location),
        None if expires is None else date_micros(doc, "expires_at", location),
        _policy(doc, location),
    )


def store_record(doc: dict[str, Any], location: str) -> StoreRecord:
    """Turn a store document into a record."""
    metadata = None if doc.get("value") is None else value_text(doc, location)
    updated = doc.get("updated_at")
    return StoreRecord(
        metadata,
        date_micros(doc, "created_at", location),
        None if updated is None else date_micros(doc, "updated_at", location),
        _policy(doc, location),
        has_document=True,
    )


def value_text(doc: dict[str, Any], location: str) -> str:
    """Return a document's value as codec text; raise for a type it cannot hold."""
    try:
        return _codec.encode(doc.get("value"))
    except InvalidValueError as exc:
        raise CorruptStoreError(
            f"key {doc.get('key')!r} of store {doc.get('store_name')!r} holds a "
            f"value localstore cannot read ({exc}); it was left as it is",
            location,
        ) from exc


def date_micros(doc: dict[str, Any], field: str, location: str) -> int:
    """Return a date field of a document in epoch microseconds."""
    moment = doc.get(field)
    if not isinstance(moment, dt.datetime):
        raise CorruptStoreError(
            f"key {doc.get('key')!r} of store {doc.get('store_name')!r} has "
            f"{field} {moment!r}, not a date; it was left as it is",
            location,
        )
    return to_micros(moment)


def _policy(doc: dict[str, Any], location: str) -> str:
    """Return a document's policy; FiftyOne reads a missing one from ``expires_at``.

    Any other policy is damage, as FiftyOne's ``KeyPolicy`` refuses it too.
    """
    policy = doc.get("policy")
    if policy in ("persist", "evict"):
        return str(policy)
    if policy is not None and policy != "":
        raise CorruptStoreError(
            f"key {doc.get('key')!r} of store {doc.get('store_name')!r} has the "
            f"policy {policy!r}, not 'persist' or 'evict'; it was left as it is",
            location,
        )
    return "evict" if doc.get("expires_at") else "persist"
