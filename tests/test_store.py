"""``ExecutionStore``: FiftyOne's per-store wrapper."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from localstore import ExecutionStore, ExecutionStoreService, KeyPolicy


def test_set_get_has_delete(store):
    assert store.set("k", {"a": 1}) is None

    assert store.get("k") == {"a": 1}
    assert store.has("k")
    assert store.delete("k") is True
    assert store.get("k") is None
    assert not store.has("k")
    assert store.delete("k") is False


def test_stored_none_reads_like_missing_but_has_tells_apart(store):
    store.set("k", None)

    assert store.get("k") is None
    assert store.has("k")


def test_default_policy_applies_to_set(service):
    cache = ExecutionStore("cache", service, default_policy="evict")

    cache.set("k", 1)
    cache.set("p", 1, policy="persist")

    assert service.get_key("cache", "k").policy is KeyPolicy.EVICT
    assert service.get_key("cache", "p").policy is KeyPolicy.PERSIST


def test_bad_default_policy_is_rejected(service):
    with pytest.raises(ValueError, match="policy"):
        ExecutionStore("s", service, default_policy="sometimes")


@pytest.mark.parametrize("not_a_service", [None, "service", object()])
def test_a_store_needs_a_service(not_a_service):
    with pytest.raises(TypeError, match="must be an ExecutionStoreService"):
        ExecutionStore("s", not_a_service)


def test_set_cache_and_clear_cache_touch_only_this_store(service):
    one = ExecutionStore("one", service)
    two = ExecutionStore("two", service)
    one.set("keep", 1)
    one.set_cache("drop", 1)
    two.set_cache("other", 1)

    one.clear_cache()

    assert one.list_keys() == ["keep"]
    assert two.list_keys() == ["other"]


def test_clear_deletes_keys_and_store_document(service):
    service.create_store("s", metadata={"m": 1})
    store = ExecutionStore("s", service)
    store.set("k", 1)

    store.clear()

    assert not service.has_store("s")
    assert store.list_keys() == []


def test_update_ttl_and_update_policy(store, service):
    store.set("k", 1)

    assert store.update_policy("k", "evict").policy is KeyPolicy.EVICT
    assert service.get_key("test_store", "k").policy is KeyPolicy.EVICT
    assert store.update_ttl("missing", 1) is None
    assert store.update_policy("missing", "evict") is None
    expires_at = store.update_ttl("k", 0.1).expires_at

    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    time.sleep(max(0.0, (expires_at - now).total_seconds()) + 0.05)
    assert not store.has("k")


def test_get_metadata_has_the_three_timestamps(store):
    store.set("k", 1, ttl=60)

    meta = store.get_metadata("k")

    assert set(meta) == {"created_at", "updated_at", "expires_at"}
    assert all(isinstance(v, dt.datetime) for v in meta.values())
    assert store.get_metadata("missing") is None


def test_list_keys_values_and_stores(service):
    store = ExecutionStore("runs", service)
    store.set("run:b", {"id": "b", "heavy": [1]})
    store.set("run:a", {"id": "a", "heavy": [1]})
    store.set("other", 1)
    service.set_key("another_store", "k", 1)

    assert store.list_keys() == ["other", "run:a", "run:b"]
    assert store.list_values("run:", ["heavy"]) == [{"id": "a"}, {"id": "b"}]
    assert store.list_stores() == ["another_store", "runs"]


def test_set_if_absent_and_compare_and_set(store):
    assert store.set_if_absent("lock", "me", ttl=60) is True
    assert store.set_if_absent("lock", "you", ttl=60) is False
    assert store.compare_and_set("lock", "me", "released") is True
    assert store.compare_and_set("lock", "me", "again") is False

    assert store.get("lock") == "released"


def test_create_builds_a_store_on_a_root_and_writes_nothing(root, backend):
    store = ExecutionStore.create("s", dataset_id="ds", root=root, backend=backend)

    assert store.store_name == "s"
    assert store.service.dataset_id == "ds"
    assert store.list_stores() == []
    store.set("k", 1)
    assert (
        ExecutionStoreService(dataset_id="ds", root=root, backend=backend)
        .get_key("s", "k")
        .value
        == 1
    )


def test_create_uses_the_environment_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALSTORE_ROOT", str(tmp_path / "env-root"))

    ExecutionStore.create("s").set("k", 1)

    assert (tmp_path / "env-root" / "execution_store").is_dir()
