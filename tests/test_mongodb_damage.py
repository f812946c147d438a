"""Documents damaged by hand in MongoDB: read as the SQLite backend reads its damage.

A damaged store document or key is left out of ``list_stores_global()`` with a
warning, and deleting the store clears it. Needs ``$LOCALSTORE_MONGODB_URI``.
"""

from __future__ import annotations

import logging
import os

import pytest

from localstore import CorruptStoreError, ExecutionStoreService, InvalidValueError

from .conftest import MONGODB_URI

if not MONGODB_URI:
    pytest.skip(
        "no MongoDB server: set LOCALSTORE_MONGODB_URI (.ci/run starts one)",
        allow_module_level=True,
    )

# Each way of damaging store "bad", which has a document and a key.
DAMAGE = {
    "store document created_at": ({"key": "__store__"}, {"created_at": "yesterday"}),
    "key without created_at": ({"key": "k"}, {"created_at": None}),
}


@pytest.fixture
def raw(mongodb_client):
    """The test database's ``execution_store`` collection, read with pymongo."""
    return mongodb_client[os.environ["LOCALSTORE_MONGODB_DATABASE"]]["execution_store"]


@pytest.fixture
def service(root):
    """A global-context mongodb service."""
    with ExecutionStoreService(root=root, backend="mongodb") as s:
        yield s


def _damage(service, raw, how: str) -> None:
    """Make stores "good" and "bad", then damage "bad" as ``DAMAGE[how]`` says."""
    service.set_key("good", "k", 1)
    service.create_store("bad", metadata={"m": 1})
    service.set_key("bad", "k", 1)
    where, fields = DAMAGE[how]
    if how == "key without created_at":
        raw.delete_one({"store_name": "bad", "key": "__store__"})  # key-only store
        raw.update_one({"store_name": "bad", **where}, {"$unset": fields})
    else:
        raw.update_one({"store_name": "bad", **where}, {"$set": fields})


@pytest.mark.parametrize("how", DAMAGE)
def test_list_stores_global_leaves_out_a_damaged_store_with_a_warning(
    service, raw, caplog, how
):
    _damage(service, raw, how)

    with caplog.at_level(logging.WARNING, logger="localstore"):
        documents = service.list_stores_global()

    assert [d.store_name for d in documents] == ["good"]
    assert "leaving out store 'bad'" in caplog.text


@pytest.mark.parametrize("how", DAMAGE)
def test_delete_store_deletes_a_damaged_store_and_returns_a_blank_document(
    service, raw, caplog, how
):
    _damage(service, raw, how)

    with caplog.at_level(logging.WARNING, logger="localstore"):
        document = service.delete_store("bad")

    assert document.store_name == "bad"
    assert document.metadata == {}
    assert "deleted a damaged store" in caplog.text
    assert raw.count_documents({"store_name": "bad"}) == 0
    assert service.list_stores() == ["good"]


def test_get_store_of_a_key_without_created_at_names_the_store_and_key(service, raw):
    _damage(service, raw, "key without created_at")

    with pytest.raises(CorruptStoreError, match="key 'k' of store 'bad' has"):
        service.get_store("bad")


def test_list_values_names_the_store_of_a_damaged_value(service, raw):
    bson = pytest.importorskip("bson")
    service.set_key("s", "k", 1)
    raw.update_one({"key": "k"}, {"$set": {"value": bson.Decimal128("1.5")}})

    with pytest.raises(CorruptStoreError, match="key 'k' of store 's'"):
        service.list_values("s")


@pytest.mark.parametrize("how", DAMAGE)
def test_cli_keys_then_rm_of_a_damaged_store_succeed(service, raw, root, capsys, how):
    from localstore._cli import main

    _damage(service, raw, how)
    cli = ["--root", str(root), "--backend", "mongodb"]

    listed = main([*cli, "keys", "bad"])
    keys = capsys.readouterr().out
    removed = main([*cli, "rm", "bad"])

    assert (listed, removed) == (0, 0)
    assert keys == "k\n"
    assert raw.count_documents({"store_name": "bad"}) == 0


@pytest.mark.timeout(60)
def test_compare_and_set_of_two_values_too_large_together_names_their_size(
    service,
):
    expected = "a" * (9 << 20)
    service.set_key("s", "k", expected)

    with pytest.raises(InvalidValueError, match=r"together they must fit in 16 MiB"):
        service.compare_and_set_key("s", "k", expected, "b" * (9 << 20))

    assert service.get_value("s", "k") == expected
