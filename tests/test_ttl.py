"""TTLs: units, validation, refresh on write, and expired keys absent everywhere."""

from __future__ import annotations

import datetime as dt
import math
import time

import pytest

from localstore import (
    ArgumentTypeError,
    ExecutionStoreService,
    InvalidArgumentError,
    KeyPolicy,
)

from .conftest import hold_write_lock


def _wait_past(doc):
    """Sleep until the key's expiry has passed, however long the calls took."""
    _sleep_past(doc.expires_at)


def _utc_now():
    """Return the time now as a naive UTC datetime, as documents carry it."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _sleep_past(moment):
    """Sleep until a naive UTC instant has passed."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    time.sleep(max(0.0, (moment - now).total_seconds()) + 0.05)


@pytest.mark.parametrize(
    ("ttl", "error"),
    [
        (0, InvalidArgumentError),
        (-5, InvalidArgumentError),
        (math.nan, InvalidArgumentError),
        (math.inf, InvalidArgumentError),
        (1e30, InvalidArgumentError),
        (1e308, InvalidArgumentError),  # ttl * 1e6 is an infinity
        (True, ArgumentTypeError),
        ("10", ArgumentTypeError),
        ([10], ArgumentTypeError),
    ],
)
def test_bad_ttls_raise_and_write_nothing(service, ttl, error):
    service.set_key("s", "k", "old")

    with pytest.raises(error, match="ttl"):
        service.set_key("s", "k", "new", ttl=ttl)
    with pytest.raises(error, match="ttl"):
        service.update_ttl("s", "k", ttl)

    doc = service.get_key("s", "k")
    assert doc.value == "old"
    assert doc.expires_at is None


def test_ttl_errors_are_value_and_type_errors():
    assert issubclass(InvalidArgumentError, ValueError)
    assert issubclass(ArgumentTypeError, TypeError)


def test_fractional_ttl_means_fractions_of_a_second(service):
    doc = service.set_key("s", "k", 1, ttl=0.5)

    assert (doc.expires_at - doc.updated_at).total_seconds() == pytest.approx(0.5)
    assert service.get_key("s", "k") is not None
    _wait_past(doc)
    assert service.get_key("s", "k") is None


def test_expired_key_is_absent_from_every_read(service):
    service.set_key("s", "live", 1)
    service.set_key("s", "old", {"x": 1}, ttl=0.2)
    _wait_past(service.set_key("only_expired", "k", 1, ttl=0.2))

    assert service.get_key("s", "old") is None
    assert service.has_key("s", "old") is False
    assert service.list_keys("s") == ["live"]
    assert service.count_keys("s") == 1
    assert service.list_values("s") == [1]
    assert service.list_stores() == ["s"]
    assert service.count_stores() == 1
    assert not service.has_store("only_expired")
    assert service.get_store("only_expired") is None
    assert not service.has_store_global("only_expired")
    assert service.count_stores_global() == 1
    assert service.update_ttl("s", "old", 10) is None
    assert service.update_policy("s", "old", "persist") is None
    assert service.delete_key("s", "old") is False
    assert service.compare_and_set_key("s", "old", {"x": 1}, 2) is False


def test_set_key_again_with_ttl_moves_expiry_forward(service):
    first = service.set_key("s", "k", 1, ttl=0.5)

    second = service.set_key("s", "k", 2, ttl=30)
    _wait_past(first)

    assert second.expires_at > first.expires_at
    assert second.created_at == first.created_at
    assert service.get_key("s", "k").value == 2


def test_set_key_again_without_ttl_clears_expiry(service):
    first = service.set_key("s", "k", 1, ttl=1)

    second = service.set_key("s", "k", 2)
    _wait_past(first)

    assert second.expires_at is None
    assert second.policy is KeyPolicy.PERSIST
    assert second.created_at == first.created_at
    assert service.get_key("s", "k") == second


def test_writing_an_expired_key_is_a_fresh_insert(service):
    first = service.set_key("s", "k", 1, ttl=0.1)
    _wait_past(first)

    second = service.set_key("s", "k", 2)

    assert second.created_at > first.created_at
    assert second.created_at == second.updated_at


def test_set_key_if_absent_replaces_an_expired_key(service):
    _wait_past(service.set_key("s", "k", 1, ttl=0.1))

    assert service.set_key_if_absent("s", "k", 2) is True

    assert service.get_key("s", "k").value == 2


def test_update_ttl_none_keeps_key_forever(service):
    first = service.set_key("s", "k", 1, ttl=0.5)

    service.update_ttl("s", "k", None)
    _wait_past(first)

    assert service.get_key("s", "k").value == 1


def test_update_ttl_shortens_life_of_a_key(service):
    service.set_key("s", "k", 1)

    _wait_past(service.update_ttl("s", "k", 0.1))

    assert not service.has_key("s", "k")


def test_sweep_removes_expired_keys_for_good(service):
    service.set_key("s", "gone", 1, ttl=0.1)
    service.set_key("s", "kept", 1)
    _wait_past(service.set_key("t", "gone", 1, ttl=0.1))

    swept = service.sweep()

    assert swept == {(None, "s"): 1, (None, "t"): 1}
    assert service.sweep() == {}
    assert service.list_keys("s") == ["kept"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", ["sqlite", "json"])
def test_sweep_leaves_out_a_store_busy_beyond_the_timeout_and_sweeps_the_rest(
    root, backend, caplog
):
    service = ExecutionStoreService(root=root, backend=backend, timeout=0.2)
    for store in ("a", "m", "z"):
        service.set_key(store, "kept", 1)
        doc = service.set_key(store, "gone", 1, ttl=0.05)
    _wait_past(doc)
    hold = hold_write_lock(service, "m", 60)

    with caplog.at_level("WARNING", logger="localstore"):
        swept = service.sweep()

    hold.kill()  # its lock goes with it
    hold.communicate()
    assert swept == {(None, "a"): 1, (None, "z"): 1}
    assert "not sweeping store 'm', busy beyond the timeout" in caplog.text
    assert service.sweep() == {(None, "m"): 1}
    assert [service.list_keys(s) for s in ("a", "m", "z")] == [["kept"]] * 3


@pytest.mark.timeout(30)
def test_ttl_counts_from_the_write_after_waiting_for_a_lock(root):
    service = ExecutionStoreService(root=root, timeout=5)
    service.set_key("s", "existing", 0)
    hold = hold_write_lock(service, "s", 0.6)
    called = _utc_now()

    doc = service.set_key("s", "k", "v", ttl=0.5)

    returned = _utc_now()
    hold.communicate()
    # Stamped when written, after the wait, to the millisecond: not when called.
    assert called + dt.timedelta(seconds=0.5) < doc.updated_at <= returned
    assert doc.created_at == doc.updated_at
    assert doc.expires_at == doc.updated_at + dt.timedelta(seconds=0.5)
    assert service.get_key("s", "k") == doc
    assert service.set_key_if_absent("s", "k", "other") is False


@pytest.mark.timeout(30)
def test_store_set_after_a_lock_wait_counts_its_ttl_from_the_write(root):
    from localstore import ExecutionStore, ExecutionStoreService

    store = ExecutionStore("s", ExecutionStoreService(root=root, timeout=5))
    store.set("existing", 0)
    hold = hold_write_lock(store.service, "s", 0.6)

    store.set("k", "v", ttl=0.5)

    hold.communicate()
    assert store.get("k") == "v"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", ["sqlite", "json"])
@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda service: service.compare_and_set_key("s", "k", "old", "new"), False),
        (lambda service: service.delete_key("s", "k"), False),
        (lambda service: service.update_policy("s", "k", "evict"), None),
    ],
    ids=["compare_and_set", "delete", "update_policy"],
)
def test_a_key_that_expires_during_a_lock_wait_is_judged_expired(
    root, backend, call, expected
):
    service = ExecutionStoreService(root=root, backend=backend, timeout=5)
    service.set_key("s", "other", 1)
    service.set_key("s", "k", "old", ttl=0.3)
    hold = hold_write_lock(service, "s", 0.6)

    answer = call(service)  # live when called, expired when the lock is free

    hold.communicate()
    assert answer == expected
    assert service.get_value("s", "k") is None
