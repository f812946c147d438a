"""The service contract (FIFTYONE.md section 17), on every backend."""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

import pytest

from localstore import (
    ArgumentTypeError,
    ExecutionStoreService,
    InvalidArgumentError,
    InvalidValueError,
    KeyDocument,
    KeyPolicy,
    LocalStoreError,
    StoreDocument,
    StoreExistsError,
)


def test_set_key_returns_the_document_a_later_get_key_reads(service):
    written = service.set_key("s", "k", {"a": (1, 2)}, ttl=60)

    read = service.get_key("s", "k")

    assert isinstance(written, KeyDocument)
    assert written == read
    assert read.value == {"a": [1, 2]}
    assert read.policy is KeyPolicy.EVICT
    assert read.dataset_id is None


def test_get_key_of_missing_key_or_store_returns_none(service):
    service.set_key("s", "k", 1)

    assert service.get_key("s", "other") is None
    assert service.get_key("missing", "k") is None


def test_set_key_without_ttl_is_persistent_with_no_expiry(service):
    doc = service.set_key("s", "k", "v")

    assert doc.policy == "persist"
    assert doc.expires_at is None
    assert doc.created_at == doc.updated_at


def test_set_key_with_evict_policy_and_no_ttl_is_evictable(service):
    doc = service.set_key("s", "k", "v", policy="evict")

    assert doc.policy is KeyPolicy.EVICT
    assert doc.expires_at is None


def test_set_key_again_redefines_value_policy_and_keeps_created_at(service):
    first = service.set_key("s", "k", 1, policy="evict")

    second = service.set_key("s", "k", 2)

    assert second.value == 2
    assert second.policy is KeyPolicy.PERSIST
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert service.get_key("s", "k") == second


def test_set_cache_key_uses_evict_policy(service):
    doc = service.set_cache_key("s", "k", 1, ttl=30)

    assert doc.policy is KeyPolicy.EVICT
    assert doc.expires_at is not None


def test_reserved_store_key_is_rejected_everywhere(service):
    for call in (
        lambda: service.set_key("s", "__store__", 1),
        lambda: service.get_key("s", "__store__"),
        lambda: service.has_key("s", "__store__"),
        lambda: service.delete_key("s", "__store__"),
        lambda: service.update_ttl("s", "__store__", 5),
    ):
        with pytest.raises(ValueError, match="__store__"):
            call()
    assert service.list_stores() == []


@pytest.mark.parametrize("name", ["", 5, None, b"s", "\ud800"])
def test_bad_store_names_raise_and_write_nothing(service, name):
    with pytest.raises((TypeError, ValueError)):
        service.set_key(name, "k", 1)

    assert service.list_stores() == []


@pytest.mark.parametrize("key", ["", 5, None, ("k",)])
def test_bad_keys_raise_and_write_nothing(service, key):
    with pytest.raises((TypeError, ValueError)):
        service.set_key("s", key, 1)

    assert service.list_stores() == []


@pytest.mark.parametrize("policy", ["forever", "", "PERSIST", None, 1])
def test_unknown_policy_raises(service, policy):
    with pytest.raises((InvalidArgumentError, ArgumentTypeError), match="policy"):
        service.set_key("s", "k", 1, policy=policy)

    assert not service.has_store("s")


def test_policy_accepts_the_enum(service):
    doc = service.set_key("s", "k", 1, policy=KeyPolicy.EVICT)

    assert doc.policy is KeyPolicy.EVICT


def test_has_key_and_delete_key(service):
    service.set_key("s", "k", None)

    assert service.has_key("s", "k") is True
    assert service.delete_key("s", "k") is True
    assert service.has_key("s", "k") is False
    assert service.delete_key("s", "k") is False
    assert service.delete_key("missing", "k") is False


def test_list_keys_is_sorted_and_count_keys_matches(service):
    for key in ["b", "a", "C", "a2", "é"]:
        service.set_key("s", key, key)

    assert service.list_keys("s") == ["C", "a", "a2", "b", "é"]
    assert service.count_keys("s") == 5
    assert service.list_keys("missing") == []
    assert service.count_keys("missing") == 0


def test_list_values_follows_key_order_and_keeps_none(service):
    service.set_key("s", "run:2", {"id": 2, "big": [0] * 3})
    service.set_key("s", "run:1", {"id": 1, "big": [0] * 3})
    service.set_key("s", "other", None)

    assert service.list_values("s") == [
        None,
        {"id": 1, "big": [0] * 3},
        {"id": 2, "big": [0] * 3},
    ]
    assert service.list_values("s", key_prefix="run:", exclude_fields=["big"]) == [
        {"id": 1},
        {"id": 2},
    ]
    assert service.get_key("s", "run:1").value == {"id": 1, "big": [0, 0, 0]}


def test_list_values_prefix_is_literal_and_case_sensitive(service):
    for key in ["a.b", "axb", "A.b", "a.", "a"]:
        service.set_key("s", key, key)

    assert service.list_values("s", key_prefix="a.") == ["a.", "a.b"]
    assert service.list_values("s", key_prefix="") == ["A.b", "a", "a.", "a.b", "axb"]
    assert service.list_values("s", key_prefix="zz") == []


def test_list_values_keeps_non_dict_values_when_excluding_fields(service):
    service.set_key("s", "a", [1, {"x": 1}])
    service.set_key("s", "b", 3)

    assert service.list_values("s", exclude_fields=["x"]) == [[1, {"x": 1}], 3]


def test_list_values_rejects_a_bare_string_of_fields(service):
    with pytest.raises(TypeError, match="exclude_fields"):
        service.list_values("s", exclude_fields="big")


def test_update_ttl_sets_and_clears_expiry_and_returns_document(service):
    service.set_key("s", "k", 1)

    with_ttl = service.update_ttl("s", "k", 100)
    cleared = service.update_ttl("s", "k", None)

    assert with_ttl.expires_at is not None
    assert with_ttl.policy is KeyPolicy.PERSIST
    assert cleared.expires_at is None
    assert service.update_ttl("s", "missing", 5) is None
    assert service.update_ttl("missing", "k", 5) is None


def test_update_policy_changes_policy_and_returns_document(service):
    service.set_key("s", "k", 1)

    doc = service.update_policy("s", "k", "evict")

    assert doc.policy is KeyPolicy.EVICT
    assert service.get_key("s", "k").policy is KeyPolicy.EVICT
    assert service.update_policy("s", "missing", "evict") is None
    with pytest.raises(ValueError, match="policy"):
        service.update_policy("s", "k", "sometimes")
    assert service.get_key("s", "k").policy is KeyPolicy.EVICT


def test_create_store_returns_document_with_metadata(service):
    doc = service.create_store("s", metadata={"owner": "me"})

    assert isinstance(doc, StoreDocument)
    assert doc.metadata == {"owner": "me"}
    assert doc.key == "__store__"
    assert service.get_store("s") == doc
    assert service.has_store("s")
    assert service.list_keys("s") == []
    assert service.count_keys("s") == 0


def test_create_store_twice_raises_store_exists(service):
    service.create_store("s", metadata={"v": 1})

    with pytest.raises(StoreExistsError, match="'s'"):
        service.create_store("s", metadata={"v": 2})

    assert service.get_store("s").metadata == {"v": 1}


def test_create_store_on_key_only_store_attaches_metadata(service):
    service.set_key("s", "k", 1)

    service.create_store("s", metadata={"v": 1})

    assert service.get_store("s").metadata == {"v": 1}
    assert service.list_keys("s") == ["k"]


def test_create_store_rejects_bad_metadata_and_policy(service):
    with pytest.raises(TypeError, match="metadata"):
        service.create_store("s", metadata=[1])
    with pytest.raises(ValueError, match="policy"):
        service.create_store("s", policy="keep")

    assert not service.has_store("s")


def test_get_store_of_key_only_store_has_empty_metadata(service):
    service.set_key("s", "k", 1)

    doc = service.get_store("s")

    assert isinstance(doc, StoreDocument)
    assert doc.metadata == {}
    assert doc.store_name == "s"
    assert service.get_store("missing") is None


def test_store_exists_through_keys_and_vanishes_with_last_key(service):
    service.set_key("s", "k", 1)
    assert service.list_stores() == ["s"]

    service.delete_key("s", "k")

    assert service.list_stores() == []
    assert service.count_stores() == 0
    assert not service.has_store("s")


def test_delete_store_returns_what_existed(service):
    service.create_store("s", metadata={"m": 1})
    service.set_key("s", "k", 1)

    deleted = service.delete_store("s")

    assert deleted.metadata == {"m": 1}
    assert not service.has_store("s")
    assert service.get_key("s", "k") is None
    assert service.delete_store("s") is None


def test_store_can_be_recreated_after_delete(service):
    service.create_store("s", metadata={"m": 1})
    service.delete_store("s")

    service.create_store("s", metadata={"m": 2})
    service.set_key("s", "k", 2)

    assert service.get_store("s").metadata == {"m": 2}
    assert service.list_keys("s") == ["k"]


def test_clear_cache_removes_evict_and_ttl_keys_only(service):
    service.set_key("s", "persist", 1)
    service.set_key("s", "evict", 1, policy="evict")
    service.set_key("s", "ttl", 1, ttl=100)
    service.set_key("s", "persist_ttl", 1)
    service.update_ttl("s", "persist_ttl", 100)
    service.set_key("t", "evict", 1, policy="evict")

    assert service.clear_cache("s") is None

    assert service.list_keys("s") == ["persist"]
    assert service.list_keys("t") == ["evict"]


def test_clear_cache_without_name_covers_every_store_of_the_context(make_service):
    service = make_service()
    other_context = make_service(dataset_id="ds1")
    service.set_cache_key("a", "k", 1)
    service.set_cache_key("b", "k", 1)
    service.set_key("b", "keep", 1)
    other_context.set_cache_key("a", "k", 1)

    service.clear_cache()

    assert service.list_stores() == ["b"]
    assert service.list_keys("b") == ["keep"]
    assert other_context.list_keys("a") == ["k"]


def test_clear_cache_removes_evict_policy_store_documents(service):
    service.create_store("cache", policy="evict")
    service.set_cache_key("cache", "k", 1)
    service.create_store("kept")

    service.clear_cache()

    assert service.list_stores() == ["kept"]
    assert service.count_stores() == 1


def test_cleanup_deletes_every_store_of_the_context_only(make_service):
    service = make_service()
    other = make_service(dataset_id="ds1")
    service.create_store("a")
    service.set_key("b", "k", 1)
    other.set_key("a", "k", 1)

    service.cleanup()

    assert service.list_stores() == []
    assert other.list_stores() == ["a"]


def test_same_store_name_in_two_contexts_is_two_stores(make_service):
    global_service = make_service()
    dataset_service = make_service(dataset_id="ds1")

    global_service.set_key("s", "k", "global")
    dataset_service.set_key("s", "k", "dataset")

    assert global_service.get_key("s", "k").value == "global"
    assert dataset_service.get_key("s", "k").value == "dataset"
    assert dataset_service.get_key("s", "k").dataset_id == "ds1"


def test_objectid_and_its_hex_string_are_one_context(make_service):
    bson = pytest.importorskip("bson")
    oid = bson.ObjectId()
    make_service(dataset_id=oid).set_key("s", "k", 1)

    assert make_service(dataset_id=str(oid)).get_key("s", "k").value == 1


@pytest.mark.parametrize("dataset_id", [5, 1.5, b"ab", ["x"], True])
def test_dataset_id_of_other_types_raises_type_error(root, backend, dataset_id):
    with pytest.raises(TypeError, match="dataset_id"):
        ExecutionStoreService(dataset_id=dataset_id, root=root, backend=backend)


def test_empty_dataset_id_raises_value_error(root, backend):
    with pytest.raises(ValueError, match="dataset_id"):
        ExecutionStoreService(dataset_id="", root=root, backend=backend)


def test_globals_see_every_context(make_service):
    global_service = make_service()
    dataset_service = make_service(dataset_id="ds1")
    global_service.create_store("a", metadata={"m": 1})
    global_service.set_key("b", "k", 1)
    dataset_service.set_key("a", "k", 1)

    docs = global_service.list_stores_global()

    assert sorted((d.store_name, d.dataset_id or "") for d in docs) == [
        ("a", ""),
        ("a", "ds1"),
        ("b", ""),
    ]
    assert all(isinstance(d, StoreDocument) for d in docs)
    assert [
        d.metadata for d in docs if d.dataset_id is None and d.store_name == "a"
    ] == [{"m": 1}]
    assert global_service.count_stores_global() == 3
    assert dataset_service.has_store_global("b")
    assert not dataset_service.has_store_global("zzz")


def test_delete_store_global_returns_number_of_contexts(make_service):
    global_service = make_service()
    dataset_service = make_service(dataset_id="ds1")
    global_service.set_key("a", "k", 1)
    dataset_service.create_store("a")
    dataset_service.set_key("b", "k", 1)

    assert dataset_service.delete_store_global("a") == 2

    assert global_service.count_stores_global() == 1
    assert dataset_service.delete_store_global("a") == 0


def test_collections_are_separate_namespaces(make_service):
    default = make_service()
    other = make_service(collection_name="tests")
    default.set_key("s", "k", 1)

    assert other.list_stores() == []
    assert other.list_stores_global() == []
    assert not other.has_store_global("s")


def test_second_service_on_same_root_sees_writes_at_once(make_service):
    writer = make_service()
    reader = make_service()

    writer.set_key("s", "k", 1)
    assert reader.get_key("s", "k").value == 1
    writer.set_key("s", "k", 2)
    assert reader.get_key("s", "k").value == 2
    writer.delete_store("s")
    assert reader.get_key("s", "k") is None


def test_set_key_if_absent_only_sets_missing_keys(service):
    assert service.set_key_if_absent("s", "k", 1) is True
    assert service.set_key_if_absent("s", "k", 2) is False

    assert service.get_key("s", "k").value == 1


def test_compare_and_set_key_needs_the_expected_value(service):
    service.set_key("s", "k", [1, 2])

    assert service.compare_and_set_key("s", "k", (1, 2), "next") is True
    assert service.compare_and_set_key("s", "k", [1, 2], "again") is False
    assert service.compare_and_set_key("s", "missing", None, 1) is False

    assert service.get_key("s", "k").value == "next"
    assert not service.has_key("s", "missing")


@pytest.mark.parametrize(
    ("expected", "value", "named"),
    [({1, 2}, "next", "expected is {1, 2}"), ("old", {1, 2}, "value is {1, 2}")],
)
def test_compare_and_set_key_names_the_argument_it_cannot_store(
    service, expected, value, named
):
    service.set_key("s", "k", "old")

    with pytest.raises(InvalidValueError, match=re.escape(named)):
        service.compare_and_set_key("s", "k", expected, value)

    assert service.get_value("s", "k") == "old"


def test_set_keys_writes_all_in_one_step(service):
    service.set_keys("s", {"a": 1, "b": (2,)}, ttl=100)
    service.set_keys("s", [("c", 3)])

    assert service.list_values("s") == [1, [2], 3]
    assert service.get_key("s", "a").policy is KeyPolicy.EVICT


def test_set_keys_with_one_bad_value_writes_nothing(service):
    with pytest.raises(TypeError):
        service.set_keys("s", {"a": 1, "b": {1, 2}})

    assert not service.has_store("s")


def test_repo_and_root_together_are_rejected(service, root):
    with pytest.raises(ValueError, match="repo"):
        ExecutionStoreService(repo=service.repo, root=root)


def test_unknown_backend_is_rejected(root):
    with pytest.raises(ValueError, match="backend"):
        ExecutionStoreService(root=root, backend="redis")


def test_timestamps_are_naive_utc(service):
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    before = now.replace(microsecond=now.microsecond - now.microsecond % 1000)  # BSON

    doc = service.set_key("s", "k", 1, ttl=10)

    after = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert doc.created_at.tzinfo is None
    assert before <= doc.created_at <= after
    assert (
        dt.timedelta(seconds=9)
        < doc.expires_at - doc.created_at
        <= dt.timedelta(seconds=10)
    )


@pytest.mark.parametrize("items", ["ab", None, [("a", 1, 2)], [1], 5])
def test_set_keys_with_malformed_items_raises_type_error(service, items):
    with pytest.raises(ArgumentTypeError, match="items"):
        service.set_keys("s", items)

    assert not service.has_store("s")


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        (-1, InvalidArgumentError),
        (math.inf, InvalidArgumentError),
        (math.nan, InvalidArgumentError),
        (3e6, InvalidArgumentError),
        ("x", ArgumentTypeError),
        (True, ArgumentTypeError),
    ],
)
def test_bad_timeouts_are_rejected_by_the_constructor(root, backend, timeout, error):
    with pytest.raises(error, match="timeout"):
        ExecutionStoreService(root=root, backend=backend, timeout=timeout)


@pytest.mark.parametrize("bad_root", [1, "", "  ", b"/tmp"])
def test_bad_roots_are_rejected(backend, bad_root):
    with pytest.raises((ArgumentTypeError, InvalidArgumentError), match="root"):
        ExecutionStoreService(root=bad_root, backend=backend)


def test_deleted_store_gives_its_space_back(make_service, backend):
    service = make_service()
    service.set_key("big", "k", "x" * 2_000_000)

    service.delete_store("big")
    service.close()

    sizes = [p.stat().st_size for p in Path(service.root).rglob("big.*")]
    assert all(size < 200_000 for size in sizes)


def test_a_root_that_is_a_file_raises_a_localstore_error(tmp_path, file_backend):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    service = ExecutionStoreService(root=not_a_directory, backend=file_backend)

    for call in (
        service.list_stores,
        service.list_stores_global,
        service.sweep,
        lambda: service.set_key("s", "k", 1),
    ):
        with pytest.raises(LocalStoreError):
            call()
    assert not_a_directory.read_text() == "x"
