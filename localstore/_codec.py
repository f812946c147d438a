"""Checking values and turning them into JSON text and back.

A value is stored as strict JSON. The few kinds JSON lacks travel as one-key
dicts, so they round-trip exactly::

    {"$bytes": "<base64>"}     bytes
    {"$date": "<ISO 8601>"}    datetime (naive, UTC, microseconds)
    {"$oid": "<hex>"}          bson ObjectId
    {"$float": "NaN"}          NaN, "Infinity" and "-Infinity"
    {"$dict": [[k, v], ...]}   a dict of the user's that would read as one of these

Decoding runs bottom-up (``json`` calls the hook on inner dicts first), which is
why an escaped dict carries its items as a list of pairs: a list is never
rewritten by the hook, so a user's ``{"$bytes": "x"}`` cannot turn into bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Collection, Sequence
from itertools import chain

from .errors import CorruptStoreError, InvalidValueError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MAX_DEPTH", "MAX_ENCODED_SIZE", "decode", "encode", "normalize"]

#: MongoDB rejects documents nested deeper than this, so localstore does too.
MAX_DEPTH = 100

#: MongoDB's limit on one document, applied to a value's JSON text.
MAX_ENCODED_SIZE = 16 * 1024 * 1024

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1
_TAGS = frozenset({"$bytes", "$date", "$oid", "$float", "$dict"})
_FLOAT_NAMES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_SCALARS = (str, bool, int, float, type(None))
_PLAIN = frozenset({str, bool, type(None)})
_INT, _FLOAT = frozenset({int}), frozenset({float})
_DICT, _LIST, _INT_BOOL = frozenset({dict}), frozenset({list}), frozenset({int, bool})
_SCALAR_TYPES = _PLAIN | {int, float}
_RECORD_TYPES = _SCALAR_TYPES | {list}
_IS_INT, _IS_FLOAT, _IS_LIST = (
    int.__instancecheck__,
    float.__instancecheck__,
    list.__instancecheck__,
)

_encoder = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":")
)


def _make_dumps() -> Callable[[Any], str]:
    """Return ``_encoder.encode``, or the same work done by json's C encoder direct.

    ``encode`` builds a new C encoder on each call, which costs a small value's
    write about a microsecond; this one is built once (it keeps no state: no
    circular-reference markers). Where the C encoder is missing or takes other
    arguments, ``encode`` itself is used.
    """
    make_encoder = getattr(json.encoder, "c_make_encoder", None)  # not in typeshed
    try:
        if make_encoder is None:
            raise TypeError("no C encoder")
        chunks = make_encoder(
            None,
            _encoder.default,
            json.encoder.encode_basestring,
            None,
            ":",
            ",",
            False,
            False,
            False,
        )
        if "".join(chunks({"a": [1, 2.5, None]}, 0)) != '{"a":[1,2.5,null]}':
            raise TypeError("the C encoder writes other text")
    except TypeError:
        return _encoder.encode
    join = "".join
    return lambda value: join(chunks(value, 0))


_dumps = _make_dumps()


def encode(value: Any, what: str = "value") -> str:
    """Check ``value`` and return its JSON text.

    :param what: the argument's name in error messages.
    :raises InvalidValueError: naming where in ``value`` the offending part sits,
        for a type MongoDB could not store, a dict key that is not a ``str``, an
        int outside signed 64 bits, a cycle, nesting deeper than
        :data:`MAX_DEPTH` or text over :data:`MAX_ENCODED_SIZE`.
    """
    # The commonest value, a dict of scalars and lists of scalars, holds no cycle
    # and, with other than one key, cannot read as a tag: it skips _check's
    # bookkeeping.
    if type(value) is dict and len(value) != 1 and _is_plain_record(value, 0):
        tree = value
    else:
        tree = _tag(value) if _check(value, what, 0, set()) else value
    try:
        text = _dumps(tree)
    except ValueError as exc:  # a float the check missed would be a bug, not input
        raise InvalidValueError(f"{what} cannot be stored as JSON: {exc}") from exc
    if len(text) > MAX_ENCODED_SIZE // 4 and len(text.encode()) > MAX_ENCODED_SIZE:
        raise InvalidValueError(
            f"{what} is {len(text.encode())} bytes as JSON; at most "
            f"{MAX_ENCODED_SIZE} bytes (MongoDB's document limit) can be stored"
        )
    if not text.isascii():
        _check_unicode(text, what)
    return text


def decode(text: str) -> Any:
    """Return the value that :func:`encode` turned into ``text``.

    :raises CorruptStoreError: for text that :func:`encode` cannot have written
        (a file edited by hand, say): not strict JSON, or a malformed tag.
    """
    if type(text) is not str:  # a SQLite BLOB, say, written by another program
        raise CorruptStoreError(
            f"a stored value is damaged: it is {type(text).__name__}, not JSON text"
        )
    # Every tag starts '"$'. Most values hold no "$" at all, and looking for one
    # character (a memchr) is several times faster than looking for the pair.
    tagged = "$" in text and '"$' in text
    decoder = _TAGGED_DECODER if tagged else _PLAIN_DECODER
    try:
        return _decode_with(decoder, text)
    except (ValueError, TypeError, KeyError) as exc:  # binascii.Error is a ValueError
        raise CorruptStoreError(f"a stored value is damaged: {exc}") from exc


def _decode_with(decoder: json.JSONDecoder, text: str) -> Any:
    """Decode ``text``, quickly when it is exactly one value, as encode() writes."""
    # raw_decode skips decode()'s two whitespace scans; text with whitespace
    # around it (typed by a user, say) or junk after it takes the full path.
    try:
        value, end = decoder.raw_decode(text)
    except ValueError:
        end = -1
    if end != len(text):
        value = decoder.decode(text)
    return value


def _reject_constant(name: str) -> Any:
    """Refuse the non-standard JSON constants NaN and Infinity (tags carry them)."""
    raise ValueError(f"{name} is not strict JSON")


def normalize(value: Any, what: str = "value") -> Any:
    """Return ``value`` as it would read back after being stored."""
    return decode(encode(value, what))


def _check(value: Any, where: str, depth: int, path: set[int]) -> bool:
    """Raise for what cannot be stored; return whether tags are needed."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return False
    if kind is int:
        if _INT_MIN <= value <= _INT_MAX:
            return False
        raise InvalidValueError(
            f"{where} is {value!r}, outside the signed 64-bit range MongoDB stores"
        )
    if kind is float:
        return not math.isfinite(value)
    if depth >= MAX_DEPTH:
        raise InvalidValueError(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if kind is dict or kind is list or kind is tuple:
        return _check_container(value, where, depth, path)
    if isinstance(value, dt.datetime):
        _check_datetime(value, where)
        return True
    if isinstance(value, bytes) or _is_object_id(value):
        return True
    if isinstance(value, _SCALARS):
        return _check(_plain(value), where, depth, path)
    if isinstance(value, (dict, list, tuple)):
        return _check_container(value, where, depth, path)
    raise InvalidValueError(
        f"{where} is {_describe(value)}, which cannot be stored; allowed are None, "
        "bool, int, float, str, bytes, datetime, list, tuple, dict with str keys "
        "and bson ObjectId"
    )


def _check_container(value: Any, where: str, depth: int, path: set[int]) -> bool:
    """Check the items of a dict, list or tuple."""
    marker = id(value)
    if marker in path:
        raise InvalidValueError(f"{where} contains itself; cycles cannot be stored")
    path.add(marker)
    needs_tags = False
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in _TAGS:
            needs_tags = True  # the dict must be escaped to not read as a tag
        if type(value) is dict and _is_plain_record(value, depth):
            path.discard(marker)
            return needs_tags
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidValueError(
                    f"{where} has the key {key!r} of type {type(key).__name__}; "
                    "dict keys must be str"
                )
            if "\0" in key:
                raise InvalidValueError(
                    f"{where} has the key {key!r}; keys cannot contain NUL"
                )
            if _is_plain(item, depth + 1):
                continue
            if _check(item, f"{where}[{key!r}]", depth + 1, path):
                needs_tags = True
    elif type(value) is not list or not (
        _are_plain(value) or _are_plain_records(value, depth)
    ):
        for index, item in enumerate(value):
            if _is_plain(item, depth + 1):
                continue
            if _check(item, f"{where}[{index}]", depth + 1, path):
                needs_tags = True
    path.discard(marker)
    return needs_tags


def _is_plain(item: Any, depth: int) -> bool:
    """Tell quickly whether _check would pass ``item`` untagged (False: unsure)."""
    kind = type(item)
    if kind in _PLAIN:
        return True
    if kind is int:
        return bool(_INT_MIN <= item <= _INT_MAX)
    if kind is float:
        return math.isfinite(item)
    # A list of scalars can hold no cycle and no tag.
    return kind is list and depth < MAX_DEPTH and _are_plain(item)


def _is_plain_record(record: dict[Any, Any], depth: int) -> bool:
    """Tell whether _check passes every key and item of a dict untagged (False: unsure).

    The items go through a loop rather than _is_plain calls: a call costs more
    than the test, and a small dict is the commonest value.
    """
    if not _has_str_keys(record):
        return False
    for item in record.values():
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if not _INT_MIN <= item <= _INT_MAX:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind is not list or depth + 1 >= MAX_DEPTH or not _are_plain(item):
            return False
    return True


def _are_plain(items: list[Any]) -> bool:
    """Tell, at C speed, whether every item is a scalar _check passes untagged."""
    if _are_str(items):
        return True
    if items and type(items[0]) not in _SCALAR_TYPES:
        return False  # a list of records, say: skip the type pass
    kinds = set(map(type, items))
    if kinds <= _PLAIN:
        return True
    if kinds == _INT:
        return bool(min(items) >= _INT_MIN and max(items) <= _INT_MAX)
    # A sum of floats is finite only if every one is; should it overflow, the
    # items merely go the slow way.
    return kinds == _FLOAT and math.isfinite(sum(items))


def _are_plain_records(items: list[Any], depth: int) -> bool:
    """Tell, mostly in C, whether every item is a flat dict _check passes untagged.

    Flat: ``str`` keys without NUL, more than one of them (so none can read as a
    tag), and values that are scalars or lists of scalars. A list of such
    records is common, and checking them all at once is several times faster.
    """
    if depth + 2 >= MAX_DEPTH or set(map(type, items)) != _DICT:
        return False
    lengths, keys = set(map(len, items)), set().union(*items)
    if 1 in lengths or not _has_str_keys(keys):
        return False
    if lengths == {len(keys)}:  # every record has the same keys: check by column
        # Records whose keys come in another order merely mix columns, which can
        # only send them the slow way; zip is quicker than one itemgetter per key.
        return all(map(_is_plain_column, zip(*map(dict.values, items), strict=True)))
    values = list(chain.from_iterable(map(dict.values, items)))
    kinds = set(map(type, values))
    if not kinds <= _RECORD_TYPES or not _are_plain_numbers(values, kinds):
        return False
    if list not in kinds:
        return True
    inner = list(chain.from_iterable(filter(_IS_LIST, values)))
    kinds = set(map(type, inner))
    return kinds <= _SCALAR_TYPES and _are_plain_numbers(inner, kinds)


def _is_plain_column(values: Sequence[Any]) -> bool:
    """Tell whether values are scalars, or lists of scalars, _check passes untagged."""
    if _are_str(values):
        return True
    kinds = set(map(type, values))
    if kinds == _LIST:
        values = list(chain.from_iterable(values))
        if _are_str(values):
            return True
        kinds = set(map(type, values))
    return kinds <= _SCALAR_TYPES and _are_plain_numbers(values, kinds)


def _are_str(items: Sequence[Any]) -> bool:
    """Tell whether every item is a ``str``, several times faster than a type pass.

    ``join`` takes subclasses of ``str`` too, which _check passes untagged as well.
    """
    if not items or type(items[0]) is not str:
        return False
    try:
        "".join(items)
    except TypeError:
        return False
    return True


def _are_plain_numbers(values: Sequence[Any], kinds: set[type]) -> bool:
    """Tell whether the ints among ``values`` fit 64 bits and the floats are finite.

    ``kinds`` are the exact types of ``values``, so ``filter`` with the C-level
    tests ``_IS_INT`` and ``_IS_FLOAT`` picks every int (and bool, which is in
    range) and float.
    """
    if int in kinds:
        ints = values if kinds <= _INT_BOOL else list(filter(_IS_INT, values))
        if min(ints) < _INT_MIN or max(ints) > _INT_MAX:
            return False
    if float not in kinds:
        return True
    return math.isfinite(sum(values if kinds == _FLOAT else filter(_IS_FLOAT, values)))


def _has_str_keys(value: Collection[Any]) -> bool:
    """Tell, at C speed, whether every key is a ``str`` without NUL.

    ``join`` takes subclasses of ``str`` too, which _check accepts as keys as well.
    """
    try:
        return "\0" not in "".join(value)
    except TypeError:  # a key that is not a str
        return False


def _tag(value: Any) -> Any:
    """Return a copy of a checked value in which every non-JSON part is tagged."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        if math.isnan(value):
            return {"$float": "NaN"}
        return {"$float": "Infinity" if value > 0 else "-Infinity"}
    if isinstance(value, dict):
        items = {str(_plain(key)): _tag(item) for key, item in value.items()}
        if len(items) == 1 and next(iter(items)) in _TAGS:
            return {"$dict": [[key, item] for key, item in items.items()]}
        return items
    if isinstance(value, (list, tuple)):
        return [_tag(item) for item in value]
    if isinstance(value, bytes):
        import base64  # imported by the few values that hold bytes

        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dt.datetime):
        return {"$date": _naive_utc(value).isoformat(timespec="microseconds")}
    if _is_object_id(value):
        return {"$oid": str(value)}
    return _tag(_plain(value))


def _untag(obj: dict[str, Any]) -> Any:
    """Turn one tagged dict back into the value it stands for."""
    if len(obj) != 1:
        return obj
    tag, payload = next(iter(obj.items()))
    if tag not in _TAGS:
        return obj
    if tag == "$bytes":
        import base64

        return base64.b64decode(payload, validate=True)
    if tag == "$date":
        return _parse_date(payload)
    if tag == "$float":
        return _FLOAT_NAMES[payload]
    if tag == "$dict":
        return dict(payload)
    try:
        from bson import ObjectId  # only stores written with bson installed hold these
    except ImportError as exc:
        raise ValueError(
            "the value holds an ObjectId, which needs bson: pip install pymongo"
        ) from exc
    try:
        return ObjectId(payload)
    except Exception as exc:  # bson's InvalidId is neither ValueError nor TypeError
        raise ValueError(f"malformed $oid tag: {exc}") from exc


def _plain(value: Any) -> Any:
    """Return a subclass instance of a JSON scalar as the built-in type itself."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return value[:]  # slicing gives a plain str; str() would call __str__
    return value


def _parse_date(text: Any) -> dt.datetime:
    """Read a ``$date`` tag's text as a naive UTC datetime.

    encode() writes no offset, but a fixture typed by hand may end in ``Z`` or
    ``+05:00``: the instant is kept and given as naive UTC, as every read gives.
    """
    if type(text) is not str:
        raise TypeError(f"a $date tag holds {type(text).__name__}, not ISO 8601 text")
    if text.endswith(("Z", "z")):  # Python 3.10's fromisoformat() refuses the Z
        text = text[:-1] + "+00:00"
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return moment
    try:
        return _naive_utc(moment)
    except OverflowError:  # the offset moves it before year 1 or after 9999
        raise ValueError(f"$date {text!r} is outside the years 1-9999 in UTC") from None


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    """Return ``moment`` as a plain naive datetime in UTC."""
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        moment = moment.astimezone(dt.timezone.utc)
    return dt.datetime(
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
    )


def _check_datetime(moment: dt.datetime, where: str) -> None:
    """Raise if an aware datetime falls outside the years 1-9999 once in UTC."""
    try:
        _naive_utc(moment)
    except OverflowError as exc:
        raise InvalidValueError(
            f"{where} is {moment!r}, which falls outside the years 1-9999 in UTC"
        ) from exc


def _is_object_id(value: Any) -> bool:
    """Tell whether ``value`` is a bson ObjectId, without importing bson."""
    kind = type(value)
    return kind.__name__ == "ObjectId" and kind.__module__.startswith("bson")


def _describe(value: Any) -> str:
    """Name a rejected value for an error message, briefly."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} of type {type(value).__module__}.{type(value).__qualname__}"


def _check_unicode(text: str, what: str) -> None:
    """Raise if ``text`` holds a lone surrogate, which UTF-8 (and BSON) cannot hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidValueError(
            f"{what} holds the lone surrogate {text[exc.start]!r}, which is not "
            "valid Unicode and cannot be stored"
        ) from exc


# Built once: json.loads with any option builds a new decoder per call.
_PLAIN_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_TAGGED_DECODER = json.JSONDecoder(object_hook=_untag, parse_constant=_reject_constant)
