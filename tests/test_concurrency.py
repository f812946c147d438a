"""Several processes and threads on one root: nothing lost, nothing locked out.

Children are forked (they start in milliseconds and inherit the test's imports);
one test forks with a connection open on purpose. Every child is killed and
reaped when its test ends, passed or not.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pytest

from localstore import ExecutionStoreService, StoreExistsError, _sqlite_pool

from .conftest import FORK, Start, hold_write_lock


def wait_all(processes: list[BaseProcess], timeout: float) -> list[int | None]:
    """Join every process within ``timeout`` seconds; return their exit codes."""
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    return [process.exitcode for process in processes]


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


# 16 processes open a store that does not exist yet --------------------------------


def set_one_key(
    root: str, backend: str, barrier: Any, index: int, create_first: bool, out: Any
) -> None:
    service = ExecutionStoreService(root=root, backend=backend)
    barrier.wait(timeout=20)
    outcome = "set"
    if create_first:
        try:
            service.create_store("shared", metadata={"by": index})
            outcome = "created"
        except StoreExistsError:
            outcome = "exists"
    service.set_key("shared", f"key-{index:02d}", index)
    out.put(outcome)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("create_first", [False, True], ids=["set_key", "create_store"])
def test_sixteen_processes_creating_one_store_at_once_all_succeed(
    root: Path, file_backend: str, start: Start, create_first: bool
) -> None:
    barrier, out = FORK.Barrier(16), FORK.Queue()

    children = [
        start(set_one_key, str(root), file_backend, barrier, i, create_first, out)
        for i in range(16)
    ]
    exit_codes = wait_all(children, timeout=40)

    assert exit_codes == [0] * 16
    outcomes = sorted(out.get(timeout=5) for _ in range(16))
    if create_first:
        assert outcomes == ["created"] + ["exists"] * 15
    service = ExecutionStoreService(root=root, backend=file_backend)
    assert service.list_stores() == ["shared"]
    assert service.list_keys("shared") == [f"key-{i:02d}" for i in range(16)]
    assert [service.get_value("shared", f"key-{i:02d}") for i in range(16)] == list(
        range(16)
    )
    if create_first:
        document = service.get_store("shared")
        assert document is not None
        assert document.metadata["by"] in range(16)


# 2 processes x 500 rounds of set_key + update_ttl -----------------------------------


def set_and_refresh(
    root: str, backend: str, barrier: Any, index: int, rounds: int, out: Any
) -> None:
    service = ExecutionStoreService(root=root, backend=backend)
    barrier.wait(timeout=20)
    seen = set()
    for round_ in range(rounds):
        written = service.set_key("shared", "key", [index, round_])
        refreshed = service.update_ttl("shared", "key", 3600)
        assert refreshed is not None
        seen.update({written.created_at.isoformat(), refreshed.created_at.isoformat()})
    out.put(sorted(seen))


@pytest.mark.timeout(90)
def test_two_processes_updating_one_key_keep_its_first_created_at(
    root: Path, file_backend: str, start: Start
) -> None:
    barrier, out = FORK.Barrier(2), FORK.Queue()

    children = [
        start(set_and_refresh, str(root), file_backend, barrier, i, 500, out)
        for i in range(2)
    ]
    exit_codes = wait_all(children, timeout=80)

    assert exit_codes == [0, 0]
    seen = set(out.get(timeout=5)) | set(out.get(timeout=5))
    stored = ExecutionStoreService(root=root, backend=file_backend).get_key(
        "shared", "key"
    )
    assert stored is not None
    assert seen == {stored.created_at.isoformat()}
    assert stored.expires_at is not None
    assert stored.value in ([0, 499], [1, 499])


# delete_store, create_store and set_key racing --------------------------------------

RACE_EPOCHS = 8
RACE_SECONDS = 0.35  # per epoch, every operation
QUIET_SECONDS = 0.15  # per epoch, no delete_store


def race(root: str, backend: str, barrier: Any, index: int, log_dir: str) -> None:
    """Run the epochs of the race; process 0 checks each epoch's writes."""
    service = ExecutionStoreService(root=root, backend=backend)
    rng = random.Random(index)
    for epoch in range(RACE_EPOCHS):
        barrier.wait(timeout=20)
        events = run_epoch(service, rng, index, epoch)
        Path(log_dir, f"{epoch}-{index}.json").write_text(json.dumps(events))
        barrier.wait(timeout=20)
        if index == 0:
            check_epoch(service, log_dir, epoch)
        barrier.wait(timeout=20)


def run_epoch(
    service: ExecutionStoreService, rng: random.Random, index: int, epoch: int
) -> list[tuple[str, str, float, float]]:
    """Race for one epoch; return (operation, key, start, end) of each success."""
    events = []
    begun = time.monotonic()
    count = 0
    while (now := time.monotonic()) < begun + RACE_SECONDS + QUIET_SECONDS:
        quiet = now >= begun + RACE_SECONDS
        roll = rng.random()
        key = ""
        start = time.monotonic()
        if roll < 0.15 and not quiet:
            operation = "delete_store"
            service.delete_store("raced")
        elif roll < 0.3:
            operation = "create_store"
            try:
                service.create_store("raced")
            except StoreExistsError:
                operation = "create_store (existed)"
        else:
            operation, key = "set_key", f"{epoch}-{index}-{count}"
            count += 1
            service.set_key("raced", key, key)
        events.append((operation, key, start, time.monotonic()))
    return events


def check_epoch(service: ExecutionStoreService, log_dir: str, epoch: int) -> None:
    """Fail if a write no later delete_store could remove is not there."""
    events = [
        event
        for path in Path(log_dir).glob(f"{epoch}-*.json")
        for event in json.loads(path.read_text())
    ]
    deletes_ended = [end for op, _, _, end in events if op == "delete_store"]
    present = set(service.list_keys("raced"))
    must_be_present = {
        key
        for op, key, start, _ in events
        if op == "set_key" and all(end < start for end in deletes_ended)
    }
    lost = sorted(must_be_present - present)
    Path(log_dir, f"{epoch}-checked").write_text(
        json.dumps({"checked": len(must_be_present), "lost": lost})
    )


@pytest.mark.timeout(60)
def test_set_key_racing_delete_store_never_acknowledges_a_lost_write(
    root: Path, tmp_path: Path, file_backend: str, start: Start
) -> None:
    barrier, log_dir = FORK.Barrier(3), tmp_path / "log"
    log_dir.mkdir()

    children = [
        start(race, str(root), file_backend, barrier, i, str(log_dir)) for i in range(3)
    ]
    exit_codes = wait_all(children, timeout=50)

    assert exit_codes == [0, 0, 0]
    results = [
        json.loads((log_dir / f"{epoch}-checked").read_text())
        for epoch in range(RACE_EPOCHS)
    ]
    assert [result["lost"] for result in results] == [[]] * RACE_EPOCHS
    assert sum(result["checked"] for result in results) > 0
    operations = {
        op
        for path in log_dir.glob("*-?.json")
        for op, *_ in json.loads(path.read_text())
    }
    assert {"delete_store", "create_store", "set_key"} <= operations


# Threads --------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_eight_threads_sharing_one_service_write_every_key(
    root: Path, backend: str
) -> None:
    service = ExecutionStoreService(root=root, backend=backend)
    errors: list[BaseException] = []

    def write(thread: int) -> None:
        try:
            for i in range(200):
                service.set_key(
                    "shared", f"{thread}-{i:03d}", {"thread": thread, "i": i}
                )
        except BaseException as exc:  # collected: the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(50)

    assert errors == []
    assert service.count_keys("shared") == 1600
    assert service.get_value("shared", "7-199") == {"thread": 7, "i": 199}
    service.close()


def read_under_descriptor_limit(root: str, backend: str, stores: int, out: Any) -> None:
    """Read with RLIMIT_NOFILE at 256: many threads, then every store in turn."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    service = ExecutionStoreService(root=root, backend=backend)
    before = open_descriptors()
    values: list[Any] = []

    for _ in range(20):
        threads = [
            threading.Thread(target=lambda: values.append(service.get_value("s0", "k")))
            for _ in range(50)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    after_threads = open_descriptors()

    read = [service.get_value(f"s{i}", "k") for i in range(stores)]
    after_stores = open_descriptors()
    service.close()
    out.put(
        {
            "thread_values": values == [0] * 1000,
            "store_values": read == list(range(stores)),
            "before": before,
            "after_threads": after_threads,
            "after_stores": after_stores,
            "after_close": open_descriptors(),
        }
    )


@pytest.fixture
def memory_root(tmp_path: Path) -> Iterator[Path]:
    """A root in RAM where there is room (/dev/shm), else under ``tmp_path``.

    Creating 2000 stores flushes 2000 files to disk: a minute on a busy CI disk,
    and nothing this test is about.
    """
    shm = "/dev/shm"
    if os.path.isdir(shm) and shutil.disk_usage(shm).free > 512 * 2**20:
        base = tempfile.mkdtemp(prefix="localstore-test-", dir=shm)
        yield Path(base, "root")
        shutil.rmtree(base)
    else:
        yield tmp_path / "root"


@pytest.mark.timeout(120)
def test_reading_2000_stores_under_a_descriptor_limit_of_256_leaks_nothing(
    memory_root: Path, file_backend: str, start: Start
) -> None:
    root = memory_root
    service = ExecutionStoreService(root=root, backend=file_backend)
    for i in range(2000):
        service.set_key(f"s{i}", "k", i)
    service.close()
    out = FORK.Queue()

    child = start(read_under_descriptor_limit, str(root), file_backend, 2000, out)
    result = out.get(timeout=100)
    child.join(10)

    assert child.exitcode == 0
    assert result["thread_values"]
    assert result["store_values"]
    # A SQLite store holds 3 descriptors while it is one of the open few; the
    # interpreter itself may hold a few more for a moment.
    slack = 4
    assert result["after_threads"] <= result["before"] + 3 + slack
    limit = result["before"] + 3 * _sqlite_pool.MAX_OPEN_FILES + slack
    assert result["after_stores"] <= limit
    assert result["after_close"] <= result["before"] + slack


@pytest.mark.timeout(120)
def test_a_root_removed_again_and_again_under_an_open_service_leaks_no_descriptors(
    root: Path, file_backend: str
) -> None:
    service = ExecutionStoreService(root=root, backend=file_backend)
    service.set_key("s", "k", -1)
    before = open_descriptors()

    for i in range(40):
        shutil.rmtree(root)
        service.set_key("s", "k", i)
        service.set_key("t", "k", i)
        time.sleep(_sqlite_pool.RECHECK_SECONDS)  # let the next call re-check
        assert service.get_value("s", "k") == i
    during = open_descriptors()
    service.close()

    # Each store holds 3 descriptors while open; files gone are closed.
    assert during <= before + 2 * 3 + 4
    assert open_descriptors() <= before
    assert (
        ExecutionStoreService(root=root, backend=file_backend).get_value("t", "k") == 39
    )


# Fork with an open connection ------------------------------------------------------


def write_in_child(root: str, backend: str) -> None:
    service = ExecutionStoreService(root=root, backend=backend)
    for i in range(20):
        service.set_key("forked", f"child-{i:02d}", i)


@pytest.mark.timeout(60)
def test_fork_with_an_open_store_leaves_it_whole(
    root: Path, file_backend: str, start: Start
) -> None:
    service = ExecutionStoreService(root=root, backend=file_backend)
    service.set_key("forked", "parent-start", True)

    child = start(write_in_child, str(root), file_backend)
    child.join(30)
    for i in range(100):
        service.set_key("forked", f"parent-{i:03d}", i)

    assert child.exitcode == 0
    keys = service.list_keys("forked")
    assert keys == sorted(
        ["parent-start"]
        + [f"child-{i:02d}" for i in range(20)]
        + [f"parent-{i:03d}" for i in range(100)]
    )
    if file_backend == "sqlite":
        path = service.repo.store_path(None, "forked")
        check = sqlite3.connect(path)
        try:
            assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            check.close()
    service.close()


def write_and_report(root: str, backend: str, out: Any) -> None:
    service = ExecutionStoreService(root=root, backend=backend, timeout=5)
    try:
        service.set_key("busy", f"child-{os.getpid()}", True)
    except Exception as exc:  # the parent tells which
        out.put(f"{type(exc).__name__}: {exc}")
    else:
        out.put("written")


@pytest.mark.timeout(120)
def test_a_child_forked_while_a_thread_writes_can_write_the_same_store(
    root: Path, file_backend: str, start: Start
) -> None:
    service = ExecutionStoreService(root=root, backend=file_backend)
    service.set_key("busy", "writes", 0)
    stop = threading.Event()

    def write_until_stopped() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            service.set_key("busy", "writes", n)

    writer = threading.Thread(target=write_until_stopped)
    writer.start()
    out = FORK.Queue()
    answers = []
    try:
        for _ in range(12):
            time.sleep(0.01)
            child = start(write_and_report, str(root), file_backend, out)
            answers.append(out.get(timeout=60))
            child.join(10)
    finally:
        stop.set()
        writer.join()

    # A child forked in the middle of a parent's write would inherit a write
    # lock no thread of its own holds, and time out on every write.
    assert answers == ["written"] * 12
    assert len(service.list_keys("busy")) == 13


def read_and_report(root: str, out: Any) -> None:
    out.put(ExecutionStoreService(root=root).get_value("other", "k"))


@pytest.mark.timeout(60)
def test_a_fork_does_not_wait_long_for_a_thread_waiting_for_another_process(
    root: Path, start: Start
) -> None:
    service = ExecutionStoreService(root=root, timeout=30)
    service.set_key("busy", "k", 0)
    service.set_key("other", "k", "readable")
    hold = hold_write_lock(service, "busy", 6)
    waiter = threading.Thread(target=service.set_key, args=("busy", "k", 1))
    waiter.start()
    time.sleep(0.3)  # the thread now waits for the other process's lock
    out = FORK.Queue()

    began = time.monotonic()
    child = start(read_and_report, str(root), out)
    forked_in = time.monotonic() - began

    assert out.get(timeout=30) == "readable"
    child.join(10)
    hold.communicate()
    waiter.join()
    # The fork gives up waiting for the thread after a second (and a margin for a
    # busy machine), not after the 6 s the other process holds the lock.
    assert forked_in < 3
    assert service.get_value("busy", "k") == 1
