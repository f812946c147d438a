"""Values: what can be stored, how it reads back, and that nothing is aliased."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from pathlib import Path

import pytest

from localstore import InvalidValueError
from localstore._codec import MAX_DEPTH, decode, encode

from .conftest import as_stored, files_under

ROUND_TRIPS = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    1.5,
    -0.0,
    math.inf,
    -math.inf,
    "",
    'text with "quotes" and \\ and \0 and é and 🙂',
    b"\x00\xff",
    b"",
    dt.datetime(2024, 2, 29, 23, 59, 59, 999999),
    [],
    {},
    [1, [2, [3, {"a": None}]]],
    {"nested": {"list": [1.5, "x", b"y", dt.datetime(2000, 1, 1)]}},
    {"$bytes": "not bytes"},
    {"$date": 1},
    {"$dict": [["a", 1]]},
    {"$oid": "x", "other": 1},
    {"$float": "NaN"},
    {"": "empty key"},
]


@pytest.mark.parametrize("value", ROUND_TRIPS, ids=repr)
def test_values_round_trip_exactly(service, backend, value):
    service.set_key("s", "k", value)

    read = service.get_key("s", "k").value

    assert read == as_stored(value, backend)
    assert type(read) is type(value)
    if isinstance(value, float):
        assert math.copysign(1, read) == math.copysign(1, value)


def test_nan_round_trips(service):
    service.set_key("s", "k", [math.nan])

    assert math.isnan(service.get_key("s", "k").value[0])


def test_tuple_reads_back_as_list(service):
    doc = service.set_key("s", "k", (1, 2))

    assert doc.value == [1, 2]
    assert service.get_key("s", "k").value == [1, 2]


def test_aware_datetime_reads_back_as_naive_utc(service, backend):
    tz = dt.timezone(dt.timedelta(hours=5, minutes=30))
    aware = dt.datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=tz)

    service.set_key("s", "k", aware)

    naive_utc = dt.datetime(2024, 1, 1, 6, 30, 0, 123456)
    assert service.get_key("s", "k").value == as_stored(naive_utc, backend)


def test_objectid_round_trips(service):
    bson = pytest.importorskip("bson")
    oid = bson.ObjectId()

    service.set_key("s", "k", {"id": oid})

    assert service.get_key("s", "k").value == {"id": oid}


def _self_containing() -> dict:
    value: dict = {}
    value["me"] = value
    return value


def _deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({1, 2}, "set"),
        (object(), "object"),
        ({1: "a"}, "key 1"),
        (2**63, "64-bit"),
        (-(2**63) - 1, "64-bit"),
        (dt.date.today(), "date"),
        (dt.time(1, 2), "time"),
        (decimal.Decimal("1"), "Decimal"),
        (_self_containing(), "contains itself"),
        ({"a": [1, {"b": {2}}]}, r"value\['a'\]\[1\]\['b'\]"),
        (bytearray(b"x"), "bytearray"),
        ("\ud800", "surrogate"),
        ({"a\0b": 1}, "NUL"),
        (_deep(MAX_DEPTH + 1), "deeper"),
        (Path("x"), "Path"),
        (
            dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(-dt.timedelta(hours=5))),
            "years 1-9999",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_unstorable_values_raise_before_anything_is_written(
    service, root, value, where
):
    service.set_key("s", "existing", {"keep": 1})
    before = files_under(root)

    with pytest.raises(InvalidValueError, match=where):
        service.set_key("s", "k", value)
    with pytest.raises(InvalidValueError):
        service.set_key("s", "existing", value)
    with pytest.raises(InvalidValueError):
        service.set_key("new_store", "k", value)

    assert files_under(root) == before
    assert service.get_key("s", "existing").value == {"keep": 1}
    assert service.list_stores() == ["s"]


def test_invalid_value_error_is_type_and_value_error():
    assert issubclass(InvalidValueError, TypeError)
    assert issubclass(InvalidValueError, ValueError)


def test_nesting_up_to_the_limit_is_allowed(service):
    value = _deep(MAX_DEPTH - 1)

    service.set_key("s", "k", value)

    assert service.get_key("s", "k").value == value


def test_mutating_a_value_after_set_key_changes_nothing_stored(service):
    value = {"list": [1, 2], "inner": {"a": 1}}
    doc = service.set_key("s", "k", value)

    value["list"].append(3)
    value["inner"]["a"] = 2
    doc.value["list"].append(4)

    assert service.get_key("s", "k").value == {"list": [1, 2], "inner": {"a": 1}}


def test_mutating_a_value_after_get_key_changes_nothing_stored(service):
    service.set_key("s", "k", {"list": [1]})

    service.get_key("s", "k").value["list"].append(2)
    service.list_values("s")[0]["list"].append(3)

    assert service.get_key("s", "k").value == {"list": [1]}


def test_shared_references_are_not_cycles(service):
    shared = [1, 2]

    service.set_key("s", "k", {"a": shared, "b": shared})

    assert service.get_key("s", "k").value == {"a": [1, 2], "b": [1, 2]}


def test_subclasses_of_builtins_read_back_as_builtins(service):
    class Name(str):
        def __str__(self) -> str:
            return "something else"

    class Count(int):
        pass

    service.set_key("s", "k", {Name("key"): [Name("v"), Count(3)]})

    value = service.get_key("s", "k").value
    assert value == {"key": ["v", 3]}
    assert type(next(iter(value))) is str
    assert type(value["key"][1]) is int


def test_codec_text_is_strict_json():
    import json

    text = encode(
        {"f": [math.nan, math.inf], "b": b"\x01", "d": dt.datetime(2020, 1, 1)}
    )

    parsed = json.loads(text, parse_constant=lambda name: pytest.fail(name))
    assert parsed["b"] == {"$bytes": "AQ=="}
    assert decode(text)["d"] == dt.datetime(2020, 1, 1)
