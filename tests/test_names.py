"""Store names and dataset ids become distinct, safe file names that round-trip."""

from __future__ import annotations

import os
import unicodedata

import pytest

from localstore._paths import decode_name, encode_name

TRICKY_NAMES = [
    "../escape",
    "..",
    ".",
    "/abs",
    "a/b\\c",
    "Data",
    "data",
    "CON",
    "con",
    "nul",
    "COM1",
    "lpt9",
    "a:b",
    'a|b?c*d<e>f"g',
    "trailing. ",
    "x" * 1000,
    "caf\u00e9",
    "cafe\u0301",
    "%41",
    "A",
    "~tilde",
    "@global",
    "with space",
    "\t\n",
    "🙂",
]


@pytest.mark.parametrize("name", TRICKY_NAMES, ids=repr)
def test_tricky_store_names_round_trip_inside_the_root(make_service, root, name):
    service = make_service()

    service.set_key(name, "k", name)

    assert service.list_stores() == [name]
    assert service.get_key(name, "k").value == name
    assert [d.store_name for d in service.list_stores_global()] == [name]
    for path in root.rglob("*"):
        assert os.path.realpath(path).startswith(os.path.realpath(root))
    assert sorted(os.listdir(root.parent)) == ["root"]


@pytest.mark.parametrize("name", TRICKY_NAMES, ids=repr)
def test_tricky_dataset_ids_round_trip(make_service, name):
    service = make_service(dataset_id=name)

    service.set_key("s", "k", 1)

    assert [d.dataset_id for d in service.list_stores_global()] == [name]


def test_names_differing_in_case_or_normalisation_keep_separate_values(make_service):
    service = make_service()
    names = ["Data", "data", "DATA", "caf\u00e9", "cafe\u0301"]

    for name in names:
        service.set_key(name, "k", name)

    assert service.list_stores() == sorted(names)
    assert [service.get_key(name, "k").value for name in names] == names


def test_encoded_names_are_distinct_on_case_insensitive_filesystems():
    names = ["Data", "data", "dATA", "%44ata", "caf\u00e9", "cafe\u0301", "CON", "con"]

    folded = {encode_name(name).lower() for name in names}

    assert len(folded) == len(names)


@pytest.mark.parametrize("name", TRICKY_NAMES, ids=repr)
def test_encoded_names_are_portable_file_names(name):
    encoded = encode_name(name)

    assert len(encoded.encode()) <= 120
    assert all(c.isascii() and (c.isalnum() or c in "-_%~") for c in encoded)
    assert encoded.split(".")[0].lower() not in {
        "con",
        "prn",
        "aux",
        "nul",
        "com1",
        "lpt9",
    }
    assert unicodedata.normalize("NFD", encoded) == encoded
    assert decode_name(encoded) in (name, None)


def test_long_names_are_hashed_and_still_distinct():
    first, second = "x" * 1000, "x" * 999 + "y"

    assert encode_name(first) != encode_name(second)
    assert decode_name(encode_name(first)) is None


def test_foreign_file_names_decode_to_nothing():
    assert decode_name("UPPER") is None
    assert decode_name("%4") is None
    assert decode_name("%C3") is None
    assert decode_name("a b") is None


def test_a_str_subclass_name_is_kept_as_a_plain_str(make_service):
    class Name(str):
        def __str__(self) -> str:
            return "something else"

    service = make_service()

    doc = service.set_key(Name("runs"), Name("k\u00e9"), 1)

    assert (type(doc.store_name), doc.store_name) == (str, "runs")
    assert (type(doc.key), doc.key) == (str, "k\u00e9")
    assert service.list_stores() == ["runs"]
