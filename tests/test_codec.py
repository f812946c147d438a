"""The codec's fast paths: they must reject and tag exactly what the full check does."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest

from localstore import CorruptStoreError, InvalidValueError
from localstore._codec import MAX_DEPTH, decode, encode


def _record(i: int) -> dict:
    return {
        "id": i,
        "name": f"sample-{i:06d}",
        "confidence": 0.5,
        "tags": ["train", "reviewed"],
        "bbox": [0.1, 0.2, 0.3, 0.4],
        "done": True,
        "note": None,
    }


def _records(count: int = 300) -> dict:
    return {"run": 1, "rows": [_record(i) for i in range(count)]}


def _nested(value: object, levels: int) -> object:
    for _ in range(levels):
        value = [value]
    return value


def test_text_is_compact_json_that_keeps_non_ascii():
    text = encode({"name": "café", "sizes": [1, 2.5], "ok": True, "none": None})

    assert text == '{"name":"café","sizes":[1,2.5],"ok":true,"none":null}'


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": 1, "id": 2**63}, r"value\['id'\] is 9223372036854775808"),
        ({"a": 1, "id": -(2**63) - 1}, r"value\['id'\] is -9223372036854775809"),
        ({"a": 1, 2: "b"}, "key 2 of type int"),
        ({"a": 1, None: "b"}, "key None of type NoneType"),
        ({"a": 1, "b\0": 2}, "NUL"),
        ({"a": 1, "bbox": [0.1, 2**64]}, r"value\['bbox'\]\[1\] is"),
        ({"a": 1, "tags": ["x", "y", 2**64]}, r"value\['tags'\]\[2\] is"),
        ({"a": 1, "tags": ["x", {1, 2}]}, r"value\['tags'\]\[1\] is \{1, 2\}"),
        ({"a": 1, "b": [{3: "c"}]}, r"value\['b'\]\[0\] has the key 3"),
    ],
    ids=repr,
)
def test_flat_dict_rejects_what_the_full_check_rejects(value, where):
    with pytest.raises(InvalidValueError, match=where):
        encode(value)


@pytest.mark.parametrize(
    ("row", "where"),
    [
        ({"id": 2**63}, r"value\['rows'\]\[217\]\['id'\] is 9223372036854775808"),
        ({7: "x"}, r"value\['rows'\]\[217\] has the key 7 of type int"),
        ({"name\0": "x"}, r"value\['rows'\]\[217\] has the key 'name\\x00'"),
        ({"bbox": [0.1, 0.2, -(2**70)]}, r"value\['rows'\]\[217\]\['bbox'\]\[2\]"),
        ({"tags": ["train", 2**64]}, r"value\['rows'\]\[217\]\['tags'\]\[1\]"),
        ({"tags": ["train", object()]}, r"value\['rows'\]\[217\]\['tags'\]\[1\]"),
        ({"name": {"a": {"b": {2}}}}, r"value\['rows'\]\[217\]\['name'\]\['a'\]"),
    ],
    ids=[
        "big int",
        "int key",
        "NUL key",
        "big int in list",
        "int in str list",
        "object in str list",
        "set in nested dict",
    ],
)
def test_records_reject_a_bad_part_deep_inside_naming_where(row, where):
    value = _records()
    value["rows"][217].update(row)

    with pytest.raises(InvalidValueError, match=where):
        encode(value)


def test_records_with_tagged_parts_deep_inside_round_trip():
    value = _records()
    value["rows"][5]["confidence"] = math.inf
    value["rows"][6]["tags"] = ["train", b"\x00\xff"]
    value["rows"][7]["name"] = dt.datetime(2024, 1, 2, 3, 4, 5, 6)
    value["rows"][8]["bbox"] = [-math.inf, 0.5]
    value["rows"][9] = {"$bytes": "not bytes"}

    assert decode(encode(value)) == value


def test_records_with_nan_round_trip():
    value = _records()
    value["rows"][40]["bbox"] = [0.1, math.nan]

    read = decode(encode(value))

    assert math.isnan(read["rows"][40]["bbox"][1])
    assert read["rows"][41] == value["rows"][41]


def test_lists_of_str_subclasses_read_back_as_str():
    class Name(str):
        def __str__(self) -> str:
            return "something else"

    value = {"a": [Name("x"), "y"], "rows": [{"k": Name("v"), "n": 1}] * 3}

    read = decode(encode(value))

    assert read == {"a": ["x", "y"], "rows": [{"k": "v", "n": 1}] * 3}
    assert type(read["a"][0]) is str
    assert type(read["rows"][0]["k"]) is str


def test_list_of_str_with_other_kinds_at_the_end_round_trips():
    value = ["a", "b", 1, 2.5, None, True, ["c"], {"d": "e"}, b"f"]

    assert decode(encode(value)) == value


@pytest.mark.parametrize("levels", [MAX_DEPTH - 2, MAX_DEPTH - 1])
def test_flat_dict_at_the_depth_limit(levels):
    value = _nested({"a": [1, 2], "b": "x"}, levels)

    if levels == MAX_DEPTH - 2:  # its list sits at depth MAX_DEPTH - 1: allowed
        assert decode(encode(value)) == value
    else:
        with pytest.raises(InvalidValueError, match="deeper"):
            encode(value)


@pytest.mark.parametrize("levels", [MAX_DEPTH - 3, MAX_DEPTH - 2])
def test_records_at_the_depth_limit(levels):
    value = _nested([_record(1), _record(2)], levels)

    if levels == MAX_DEPTH - 3:  # the records' lists sit at depth MAX_DEPTH - 1
        assert decode(encode(value)) == value
    else:
        with pytest.raises(InvalidValueError, match="deeper"):
            encode(value)


def test_decode_reads_dollars_outside_tags_as_text():
    text = json.dumps({"price": "$5", "$": ["$bytes"], "a$": {"b": "$date"}})

    assert decode(text) == {"price": "$5", "$": ["$bytes"], "a$": {"b": "$date"}}


def test_decode_reads_a_tag_after_other_dollars():
    text = '{"price":"$5","data":{"$bytes":"AP8="}}'

    assert decode(text) == {"price": "$5", "data": b"\x00\xff"}


def test_decode_rejects_a_malformed_tag_after_other_dollars():
    with pytest.raises(CorruptStoreError):
        decode('{"price":"$5","data":{"$bytes":"not base64!"}}')


def test_records_with_keys_in_another_order_round_trip():
    rows = [_record(i) for i in range(50)]
    rows[10] = dict(reversed(list(rows[10].items())))
    rows[11] = {"bbox": [1, 2], "tags": ["a"], **rows[11]}

    assert decode(encode(rows)) == rows


def test_records_with_keys_in_another_order_still_reject_a_big_int():
    rows = [_record(i) for i in range(50)]
    rows[10] = dict(reversed(list(rows[10].items())))
    rows[30]["bbox"] = [2**63, 0.5]

    with pytest.raises(InvalidValueError, match=r"value\[30\]\['bbox'\]\[0\]"):
        encode(rows)


def test_records_with_str_subclass_keys_read_back_with_str_keys():
    class Field(str):
        pass

    rows = [{Field("a"): i, Field("b"): [f"x{i}"]} for i in range(20)]

    read = decode(encode(rows))

    assert read == [{"a": i, "b": [f"x{i}"]} for i in range(20)]
    assert {type(key) for row in read for key in row} == {str}


@pytest.mark.parametrize(
    "value",
    [
        _records(3),
        "plain",
        -(2**63),
        1e300,
        None,
        [1, "two", [3.5, {"four": None}]],
        {"é": "\u2603", "quote": 'a "b" \\ c\n'},
    ],
)
def test_the_encoder_built_once_writes_what_json_writes(monkeypatch, value):
    from localstore import _codec

    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)  # as without _json
    without_c_encoder = _codec._make_dumps()

    assert _codec._dumps(value) == expected
    assert without_c_encoder(value) == expected
    assert without_c_encoder == _codec._encoder.encode
