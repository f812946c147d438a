"""``KeyDocument``, ``StoreDocument`` and ``KeyPolicy`` behave like FiftyOne's."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from localstore import KeyDocument, KeyPolicy, StoreDocument


def test_key_policy_is_a_str_enum():
    assert KeyPolicy.EVICT == "evict"
    assert KeyPolicy("persist") is KeyPolicy.PERSIST
    assert str(KeyPolicy.EVICT) == "evict"
    with pytest.raises(ValueError, match="forever"):
        KeyPolicy("forever")


def test_key_document_fields_are_in_fiftyones_order():
    names = [f.name for f in dataclasses.fields(KeyDocument)]

    assert names == [
        "store_name",
        "key",
        "value",
        "_id",
        "dataset_id",
        "created_at",
        "updated_at",
        "expires_at",
        "policy",
    ]


def test_key_document_defaults():
    doc = KeyDocument("s", "k", 1)

    assert doc.policy is KeyPolicy.PERSIST
    assert doc.created_at.tzinfo is None
    assert doc.updated_at is None
    assert doc.expires_at is None


def test_get_expiration():
    assert KeyDocument.get_expiration(None) is None
    moment = KeyDocument.get_expiration(60)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert dt.timedelta(seconds=59) < moment - now <= dt.timedelta(seconds=60)


def test_from_dict_infers_policy_from_expiry():
    expiring = KeyDocument.from_dict(
        {
            "store_name": "s",
            "key": "k",
            "value": 1,
            "expires_at": dt.datetime(2030, 1, 1),
        }
    )
    plain = KeyDocument.from_dict({"store_name": "s", "key": "k", "value": 1})
    explicit = KeyDocument.from_dict(
        {"store_name": "s", "key": "k", "value": 1, "policy": "evict"}
    )

    assert expiring.policy is KeyPolicy.EVICT
    assert plain.policy is KeyPolicy.PERSIST
    assert explicit.policy is KeyPolicy.EVICT
    with pytest.raises(ValueError, match="bogus"):
        KeyDocument.from_dict(
            {"store_name": "s", "key": "k", "value": 1, "policy": "bogus"}
        )
    with pytest.raises(TypeError):
        KeyDocument.from_dict({"store_name": "s", "key": "k", "value": 1, "extra": 1})


def test_to_mongo_dict_drops_id_and_writes_policy_as_str():
    data = KeyDocument("s", "k", 1, _id="x", policy=KeyPolicy.EVICT).to_mongo_dict()

    assert "_id" not in data
    assert data["policy"] == "evict"
    assert type(data["policy"]) is str


def test_store_document_metadata_defaults_to_empty_dict():
    assert StoreDocument("s").key == "__store__"
    assert StoreDocument("s").metadata == {}
    assert StoreDocument("s", value={"a": 1}).metadata == {"a": 1}
