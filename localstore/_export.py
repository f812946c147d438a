"""Export files: stores as JSON Lines, one document per line, and back.

Each line is an object with the fields of a ``KeyDocument``, always in the order
of :data:`FIELDS`. A store's own document has the key ``"__store__"`` and its
metadata as value. Values are the JSON trees the codec wrote, tags included
(bytes, datetimes, NaN and infinities), and timestamps are ISO 8601 text in UTC
with microseconds, so export, import and export again give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from . import _codec
from ._backend import KeyRecord, StoreRecord
from ._documents import STORE_KEY, to_datetime, to_micros
from ._validate import check_dataset_id, check_key, check_name, check_policy
from .errors import CorruptStoreError, InvalidArgumentError, LocalStoreError

__all__ = [
    "FIELDS",
    "Groups",
    "decode_value",
    "document_line",
    "iso",
    "read_lines",
    "to_json",
]

#: The fields of an exported document, in the order they are written.
FIELDS = (
    "dataset_id",
    "store_name",
    "key",
    "value",
    "created_at",
    "updated_at",
    "expires_at",
    "policy",
)

#: Documents read from a file: per (context, store), its document and keys.
Groups = dict[tuple[str | None, str], tuple[StoreRecord | None, list[KeyRecord]]]

#: Compact JSON text of a tree, with the codec's settings, so an exported value is
#: byte for byte its stored text.
to_json = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
).encode


def document_line(
    context: str | None, store: str, record: KeyRecord | StoreRecord
) -> str:
    """Return the export line (without its newline) of a key or a store document."""
    if isinstance(record, StoreRecord):
        key, text, expires_at = STORE_KEY, record.metadata, None
    else:
        key, text, expires_at = record.key, record.value, record.expires_at
    fields = {
        "dataset_id": context,
        "store_name": store,
        "key": key,
        "value": None if text is None else json.loads(text),
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "expires_at": iso(expires_at),
        "policy": record.policy,
    }
    return to_json(fields)


def read_lines(data: bytes) -> Groups:
    """Check every line of an export file and group the documents by store.

    Stores keep the order in which the file first names them; blank lines are
    skipped.

    :raises InvalidArgumentError: naming the line, for a line that is not JSON,
        lacks a field, holds a value ``set_key`` would reject, or repeats a key.
    """
    groups: Groups = {}
    seen: set[tuple[str | None, str, str]] = set()
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            context, store, record = _parse_line(line)
        except (ValueError, TypeError, LocalStoreError) as exc:
            raise InvalidArgumentError(f"line {number}: {exc}") from exc
        key = record.key if isinstance(record, KeyRecord) else STORE_KEY
        if (context, store, key) in seen:
            raise InvalidArgumentError(f"line {number}: {key!r} of {store!r} repeats")
        seen.add((context, store, key))

        document, keys = groups.get((context, store), (None, []))
        if isinstance(record, StoreRecord):
            document = record
        else:
            keys.append(record)
        groups[(context, store)] = (document, keys)
    return groups


def decode_value(text: str) -> Any:
    """Decode JSON text in the codec's tagged form, or raise :class:`ValueError`."""
    try:
        return _codec.decode(text)
    except CorruptStoreError as exc:  # the codec's word for text it cannot read
        raise ValueError(f"a tagged value is malformed: {exc}") from exc


def iso(micros: int | None) -> str | None:
    """Format epoch microseconds as ISO 8601 text in UTC, microseconds included."""
    moment = to_datetime(micros)
    return None if moment is None else moment.isoformat(timespec="microseconds")


def _parse_line(line: bytes) -> tuple[str | None, str, KeyRecord | StoreRecord]:
    """Check one export line and turn it into the record a backend loads."""
    fields = json.loads(line)
    if not isinstance(fields, dict) or set(fields) != set(FIELDS):
        raise ValueError(f"expected an object with the fields {', '.join(FIELDS)}")
    context = check_dataset_id(fields["dataset_id"])
    store = check_name(fields["store_name"])
    policy = check_policy(fields["policy"])
    created_at = _micros(fields, "created_at")
    updated_at = _micros(fields, "updated_at")
    expires_at = _micros(fields, "expires_at")
    value = fields["value"]
    if created_at is None:
        raise ValueError("created_at must not be null")

    if fields["key"] == STORE_KEY:
        if not (value is None or isinstance(value, dict)) or expires_at is not None:
            raise ValueError(
                "a store document needs an object or null as value and no expires_at"
            )
        metadata = None if value is None else _canonical(value)
        return (
            context,
            store,
            StoreRecord(metadata, created_at, updated_at, policy, True),
        )
    key = check_key(fields["key"])
    if updated_at is None:
        raise ValueError(f"key {key!r} has no updated_at")
    record = KeyRecord(
        key, _canonical(value), created_at, updated_at, expires_at, policy
    )
    return context, store, record


def _canonical(tree: Any) -> str:
    """Return the codec's text for a value tree, checking it as ``set_key`` would."""
    text = to_json(tree)
    # Without a tag the tree already is the value; decoding would only copy it.
    return _codec.encode(decode_value(text) if '"$' in text else tree)


def _micros(fields: dict[str, Any], name: str) -> int | None:
    """Parse a timestamp field, ISO 8601 text or ``null``, into epoch microseconds."""
    text = fields[name]
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(f"{name} must be an ISO 8601 timestamp, not {text!r}")
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return to_micros(moment)
