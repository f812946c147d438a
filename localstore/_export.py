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
import math
import re
from typing import Any

from . import _codec
from ._backend import KeyRecord, StoreRecord
from ._documents import STORE_KEY, to_datetime, to_micros
from ._validate import check_dataset_id, check_key, check_name, check_policy
from .errors import CorruptStoreError, InvalidArgumentError, LocalStoreError

__all__ = [
    "FIELDS",
    "Groups",
    "check_records",
    "decode_value",
    "document_fields",
    "document_line",
    "escape_surrogates",
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

#: A lone surrogate: Python strings hold them, UTF-8 cannot.
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_records(
    context: str | None,
    store: str,
    document: StoreRecord | None,
    keys: list[KeyRecord],
) -> None:
    """Raise unless every record of a dumped store reads as the API reads it.

    :raises CorruptStoreError: naming the first damaged key (or the document).
    """
    if document is not None:
        document_fields(context, store, document)
    for key in keys:
        document_fields(context, store, key)


def document_fields(
    context: str | None, store: str, record: KeyRecord | StoreRecord
) -> dict[str, Any]:
    """Return the export fields of a key or a store document, value as a JSON tree.

    The value is checked as reading it through the service checks it.

    :raises CorruptStoreError: naming the key and store, for a value the codec
        cannot read (a file edited by hand, say), a number beyond the range of a
        float, or a timestamp or policy that localstore never writes.
    """
    if isinstance(record, StoreRecord):
        what = f"the document of store {store!r}"
        key, text, expires_at = STORE_KEY, record.metadata, None
    else:
        what = f"key {record.key!r} of store {store!r}"
        key, text, expires_at = record.key, record.value, record.expires_at
    try:
        value = None if text is None else _stored_tree(text)
    except CorruptStoreError as exc:
        raise CorruptStoreError(f"{what}: {exc}") from exc

    try:
        return {
            "dataset_id": context,
            "store_name": store,
            "key": key,
            "value": value,
            "created_at": iso(record.created_at),
            "updated_at": iso(record.updated_at),
            "expires_at": iso(expires_at),
            "policy": check_policy(record.policy),
        }
    except (LocalStoreError, TypeError, ValueError, OverflowError) as exc:
        raise CorruptStoreError(
            f"{what}: a stored timestamp or policy is damaged: {exc}"
        ) from exc


def document_line(
    context: str | None, store: str, record: KeyRecord | StoreRecord
) -> str:
    """Return the export line (without its newline) of a key or a store document.

    :raises CorruptStoreError: as :func:`document_fields` does.
    """
    return escape_surrogates(to_json(document_fields(context, store, record)))


def escape_surrogates(text: str) -> str:
    r"""Write the lone surrogates in JSON text as ``\uXXXX`` escapes.

    UTF-8 cannot hold a lone surrogate, so printing or encoding one fails; a
    value edited by hand can hold one, and the escape is the JSON for it.
    """
    if text.isascii():
        return text
    return _SURROGATE.sub(lambda match: f"\\u{ord(match[0]):04x}", text)


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
    """Decode JSON text in the codec's tagged form, or raise :class:`ValueError`.

    The message of the error reads after the word for the text ("VALUE is not
    valid JSON ..."); a syntax error has a :class:`json.JSONDecodeError` as cause.
    """
    try:
        tree = _STRICT_DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not valid JSON ({exc})") from exc
    except ValueError as exc:  # raised by a hook: NaN, Infinity or a float overflow
        raise ValueError(f"is not storable JSON: {exc}") from exc
    except RecursionError as exc:
        raise ValueError("is nested too deeply to parse") from exc
    if '"$' not in text:  # without a tag the tree already is the value
        return tree

    try:
        return _codec.decode(text)
    except CorruptStoreError as exc:  # the codec's word for text it cannot read
        raise ValueError(f"holds a malformed tag ({exc.__cause__ or exc})") from exc


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
    if '"$' not in text:
        return _codec.encode(tree)
    try:
        value = decode_value(text)
    except ValueError as exc:
        raise ValueError(f"the value {exc}") from exc
    return _codec.encode(value)


def _stored_tree(text: Any) -> Any:
    """Return the JSON tree of a stored value, tags kept, or raise CorruptStoreError.

    The tree must be strict JSON again when written out, so a number beyond the
    range of a float (which Python reads as an infinity) is damage too.
    """
    try:
        if not isinstance(text, str):  # a SQLite cell edited to a blob or a number
            raise TypeError(f"it is {type(text).__name__}, not JSON text")
        tree = _STRICT_DECODER.decode(text)
    except (ValueError, TypeError, RecursionError) as exc:
        raise CorruptStoreError(f"a stored value is damaged: {exc}") from exc
    if '"$' in text:
        _codec.decode(text)  # raises CorruptStoreError for a malformed tag
    return tree


def _refuse_constant(name: str) -> Any:
    """Refuse the non-standard JSON constants NaN and Infinity (tags carry them)."""
    raise ValueError(f'{name} is not strict JSON (write {{"$float": "{name}"}})')


def _finite_float(text: str) -> float:
    """Parse a JSON number, refusing one too large for a float (Python's infinity)."""
    number = float(text)
    if math.isinf(number):
        tag = "-Infinity" if number < 0 else "Infinity"
        raise ValueError(
            f"the number {text} is beyond the range of a float (write "
            f'{{"$float": "{tag}"}} for an infinity)'
        )
    return number


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


#: Reads JSON as the codec does, and also refuses numbers that overflow a float.
_STRICT_DECODER = json.JSONDecoder(
    parse_float=_finite_float, parse_constant=_refuse_constant
)
