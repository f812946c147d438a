"""subscribe / unsubscribe: events for this process's writes and other processes'."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localstore import (
    ArgumentTypeError,
    ChangeEvent,
    ExecutionStore,
    ExecutionStoreService,
)

pytestmark = pytest.mark.timeout(60)

WATCHER = "localstore-watcher"

WRITER = """
import sys
from localstore import ExecutionStoreService

root, backend, action = sys.argv[1:4]
service = ExecutionStoreService(root=root, backend=backend)
if action == "set":
    service.set_key("jobs", "job-1", {"state": "done", "steps": [1, 2]})
else:
    service.delete_key("jobs", "job-1")
"""


def watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WATCHER]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def event(key: str, operation: str, value: Any = None, store: str = "s") -> ChangeEvent:
    return ChangeEvent(store, None, key, operation, value)  # type: ignore[arg-type]


@pytest.fixture
def subscriptions() -> Iterator[list[tuple[ExecutionStoreService, str]]]:
    """Subscriptions a test made; all are ended afterwards, so no watcher lingers."""
    made: list[tuple[ExecutionStoreService, str]] = []
    yield made
    for service, subscription_id in made:
        service.unsubscribe(subscription_id)
    assert watcher_threads() == []


@pytest.fixture
def listen(
    subscriptions: list[tuple[ExecutionStoreService, str]],
) -> Callable[[ExecutionStoreService, str], list[ChangeEvent]]:
    """Subscribe to a store and return the list its events are appended to."""

    def subscribe(service: ExecutionStoreService, store: str) -> list[ChangeEvent]:
        received: list[ChangeEvent] = []
        subscriptions.append((service, service.subscribe(store, received.append)))
        return received

    return subscribe


def test_same_process_writes_arrive_before_the_call_returns(
    service: ExecutionStoreService, listen: Callable[..., list[ChangeEvent]]
) -> None:
    received = listen(service, "s")

    service.set_key("s", "a", {"n": 1})
    after_insert = list(received)
    service.set_key("s", "a", (1, 2))
    service.delete_key("s", "a")

    assert after_insert == [event("a", "insert", {"n": 1})]
    assert received == [
        event("a", "insert", {"n": 1}),
        event("a", "update", [1, 2]),
        event("a", "delete"),
    ]


def test_event_value_is_a_copy(
    service: ExecutionStoreService, listen: Callable[..., list[ChangeEvent]]
) -> None:
    received = listen(service, "s")
    service.set_key("s", "a", {"items": [1]})

    received[0].value["items"].append(2)

    assert service.get_value("s", "a") == {"items": [1]}


def test_only_the_subscribed_store_and_context_are_reported(
    make_service: Callable[..., ExecutionStoreService],
    listen: Callable[..., list[ChangeEvent]],
) -> None:
    global_service, dataset_service = make_service(), make_service("dataset-1")
    received = listen(global_service, "s")

    global_service.set_key("other", "a", 1)
    dataset_service.set_key("s", "a", 1)
    global_service.set_key("s", "b", 2)

    assert received == [event("b", "insert", 2)]


def test_dataset_subscription_events_carry_the_dataset_id(
    make_service: Callable[..., ExecutionStoreService],
    listen: Callable[..., list[ChangeEvent]],
) -> None:
    service = make_service("dataset-1")
    received = listen(service, "s")

    service.set_key("s", "a", 1)

    assert received == [ChangeEvent("s", "dataset-1", "a", "insert", 1)]


def test_writes_through_another_service_on_the_root_arrive_at_once(
    make_service: Callable[..., ExecutionStoreService],
    listen: Callable[..., list[ChangeEvent]],
) -> None:
    received = listen(make_service(), "s")

    make_service().set_key("s", "a", 1)

    assert received == [event("a", "insert", 1)]


def test_bulk_and_store_wide_writes_report_every_key(
    service: ExecutionStoreService, listen: Callable[..., list[ChangeEvent]]
) -> None:
    received = listen(service, "s")

    service.set_keys("s", {"a": 1, "b": 2})
    service.set_cache_key("s", "c", 3)
    service.clear_cache("s")
    service.delete_store("s")

    assert received == [
        event("a", "insert", 1),
        event("b", "insert", 2),
        event("c", "insert", 3),
        event("c", "delete"),
        event("a", "delete"),
        event("b", "delete"),
    ]


def test_cleanup_and_delete_store_global_report_deletions(
    make_service: Callable[..., ExecutionStoreService],
    listen: Callable[..., list[ChangeEvent]],
) -> None:
    global_service, dataset_service = make_service(), make_service("dataset-1")
    global_events = listen(global_service, "s")
    dataset_events = listen(dataset_service, "s")
    global_service.set_key("s", "a", 1)
    dataset_service.set_key("s", "b", 2)

    global_service.cleanup()
    global_service.delete_store_global("s")

    assert global_events[-1] == event("a", "delete")
    assert dataset_events[-1] == ChangeEvent("s", "dataset-1", "b", "delete", None)


def test_conditional_writes_report_only_what_they_changed(
    service: ExecutionStoreService, listen: Callable[..., list[ChangeEvent]]
) -> None:
    received = listen(service, "s")

    service.set_key_if_absent("s", "a", 1)
    service.set_key_if_absent("s", "a", 2)
    service.compare_and_set_key("s", "a", 5, 6)
    service.compare_and_set_key("s", "a", 1, 7)
    service.set_key("s", "a", 7)

    assert received == [event("a", "insert", 1), event("a", "update", 7)]


def test_execution_store_subscribe_reports_its_own_store(
    service: ExecutionStoreService,
    subscriptions: list[tuple[ExecutionStoreService, str]],
) -> None:
    store = ExecutionStore("panel", service)
    received: list[ChangeEvent] = []
    subscription_id = store.subscribe(received.append)
    subscriptions.append((service, subscription_id))

    store.set("selection", ["id1"])
    ended = store.unsubscribe(subscription_id)
    store.set("selection", ["id2"])

    assert received == [event("selection", "insert", ["id1"], store="panel")]
    assert ended is True


def test_unsubscribe_stops_events_and_tells_whether_the_id_existed(
    service: ExecutionStoreService,
) -> None:
    received: list[ChangeEvent] = []
    subscription_id = service.subscribe("s", received.append)

    first = service.unsubscribe(subscription_id)
    second = service.unsubscribe(subscription_id)
    service.set_key("s", "a", 1)

    assert (first, second) == (True, False)
    assert received == []
    assert service.unsubscribe("no-such-id") is False


def test_watcher_starts_with_the_first_subscription_and_is_joined_with_the_last(
    service: ExecutionStoreService,
) -> None:
    assert watcher_threads() == []

    first = service.subscribe("a", lambda event: None)
    second = service.subscribe("b", lambda event: None)
    running = watcher_threads()
    service.unsubscribe(first)
    still_running = watcher_threads()
    service.unsubscribe(second)

    assert len(running) == 1
    assert running[0].daemon
    assert still_running == running
    assert watcher_threads() == []
    assert not running[0].is_alive()


def test_a_callback_may_end_its_own_subscription(
    service: ExecutionStoreService,
) -> None:
    received: list[ChangeEvent] = []
    ids: list[str] = []

    def once(change: ChangeEvent) -> None:
        received.append(change)
        service.unsubscribe(ids[0])

    ids.append(service.subscribe("s", once))
    service.set_key("s", "a", 1)
    service.set_key("s", "b", 2)

    assert received == [event("a", "insert", 1)]
    assert watcher_threads() == []


def test_a_callback_may_write_to_the_store_it_watches(
    service: ExecutionStoreService,
    subscriptions: list[tuple[ExecutionStoreService, str]],
) -> None:
    received: list[ChangeEvent] = []

    def echo(change: ChangeEvent) -> None:
        received.append(change)
        if change.key == "a":
            service.set_key("s", "echo", change.value)

    subscriptions.append((service, service.subscribe("s", echo)))
    service.set_key("s", "a", 1)

    assert received == [event("a", "insert", 1), event("echo", "insert", 1)]
    assert service.get_value("s", "echo") == 1


def test_a_raising_callback_is_logged_and_others_still_receive(
    service: ExecutionStoreService,
    listen: Callable[..., list[ChangeEvent]],
    subscriptions: list[tuple[ExecutionStoreService, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(change: ChangeEvent) -> None:
        raise RuntimeError("callback bug")

    subscriptions.append((service, service.subscribe("s", broken)))
    received = listen(service, "s")

    with caplog.at_level(logging.ERROR, logger="localstore._notify"):
        service.set_key("s", "a", 1)

    assert received == [event("a", "insert", 1)]
    assert service.get_value("s", "a") == 1
    assert "callback bug" in caplog.text


def test_bad_callbacks_and_ids_are_rejected_without_starting_a_watcher(
    service: ExecutionStoreService,
) -> None:
    with pytest.raises(ArgumentTypeError, match="callback must be callable"):
        service.subscribe("s", "not a function")  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="subscription_id must be a str"):
        service.unsubscribe(42)  # type: ignore[arg-type]

    assert watcher_threads() == []


def run_writer(root: Path, backend: str, action: str) -> None:
    subprocess.run(
        [sys.executable, "-c", WRITER, str(root), backend, action],
        check=True,
        timeout=60,
    )


def test_other_process_writes_arrive_through_the_watcher(
    root: Path,
    file_backend: str,
    listen: Callable[..., list[ChangeEvent]],
) -> None:
    service = ExecutionStoreService(root=root, backend=file_backend)
    received = listen(service, "jobs")

    run_writer(root, file_backend, "set")
    inserted = wait_until(lambda: len(received) >= 1)
    run_writer(root, file_backend, "delete")
    deleted = wait_until(lambda: len(received) >= 2)

    assert inserted
    assert deleted
    assert received == [
        ChangeEvent(
            "jobs", None, "job-1", "insert", {"state": "done", "steps": [1, 2]}
        ),
        ChangeEvent("jobs", None, "job-1", "delete", None),
    ]


def test_watcher_survives_a_raising_callback(
    root: Path,
    file_backend: str,
    subscriptions: list[tuple[ExecutionStoreService, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = ExecutionStoreService(root=root, backend=file_backend)
    calls: list[str] = []

    def fails_first(change: ChangeEvent) -> None:
        calls.append(change.operation)
        if len(calls) == 1:
            raise RuntimeError("first call fails")

    subscriptions.append((service, service.subscribe("jobs", fails_first)))

    with caplog.at_level(logging.ERROR, logger="localstore._notify"):
        run_writer(root, file_backend, "set")
        assert wait_until(lambda: len(calls) >= 1)
        run_writer(root, file_backend, "delete")
        assert wait_until(lambda: len(calls) >= 2)

    assert calls == ["insert", "delete"]
    assert "first call fails" in caplog.text
    assert len(watcher_threads()) == 1
