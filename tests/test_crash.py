"""Killed writers, full disks and stuck lock holders.

A process crash may not lose an acknowledged write nor leave a store that does
not open; a failed write raises ``OSError`` and leaves what was there; a lock
held by a dead process blocks nobody, and one held by a live process makes the
caller raise ``TimeoutError`` instead of hanging.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import random
import resource
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from localstore import ExecutionStoreService, LockTimeoutError
from localstore._doctor import examine_root

from .conftest import FORK, Start, make_healthy_and_damaged_stores


def whole_value(n: int) -> dict[str, Any]:
    """A value large enough to span several pages, that checks itself."""
    payload = hashlib.sha256(str(n).encode()).hexdigest() * 300
    return {"n": n, "payload": payload}


def is_whole(value: Any) -> bool:
    return isinstance(value, dict) and value == whole_value(value.get("n", -1))


# SIGKILL at random instants ---------------------------------------------------------


def write_forever(root: str, backend: str, acknowledged: Any) -> None:
    """Write ever larger ``n``; publish each one after its write has returned."""
    service = ExecutionStoreService(root=root, backend=backend)
    current = service.get_value("crash", "value")
    n = 0 if current is None else current["n"] + 1
    while True:
        service.set_keys("crash", {"value": whole_value(n), "twin": whole_value(n)})
        acknowledged.value = n
        if n % 7 == 0:
            service.set_key("crash", f"extra-{n}", n)
        n += 1


@pytest.mark.timeout(120)
def test_writer_killed_at_random_instants_loses_no_acknowledged_write(
    root: Path, file_backend: str, start: Start
) -> None:
    rng = random.Random(4)
    reader = ExecutionStoreService(root=root, backend=file_backend)

    for _ in range(50):
        acknowledged = FORK.Value("q", -1, lock=False)
        child = start(write_forever, str(root), file_backend, acknowledged)
        deadline = time.monotonic() + 20
        while acknowledged.value < 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.03))
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        last_acknowledged = acknowledged.value

        value = reader.get_value("crash", "value")
        twin = reader.get_value("crash", "twin")

        assert last_acknowledged >= 0
        assert is_whole(value)
        assert value == twin  # both keys of one set_keys, or neither
        assert value["n"] >= last_acknowledged
    assert value["n"] >= 50
    assert reader.count_keys("crash") >= 2


# A full disk ------------------------------------------------------------------------

_CLONE_NEWNS, _CLONE_NEWUSER = 0x00020000, 0x10000000
_MS_REC, _MS_PRIVATE = 0x4000, 0x40000


def mount_small_tmpfs(directory: str, size: str) -> None:
    """Mount a tmpfs of ``size`` on ``directory``, visible to this process only.

    The mount lives in a new mount namespace (as root), or in a new user and
    mount namespace (as an ordinary user where the kernel allows it); it goes
    away with the process.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(_CLONE_NEWNS) != 0:
        if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare failed")
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
        Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "making mounts private failed")
    options = f"size={size},mode=0700".encode()
    if libc.mount(b"tmpfs", directory.encode(), b"tmpfs", 0, options) != 0:
        raise OSError(ctypes.get_errno(), "mounting a tmpfs failed")


def fill_until_failure(
    root: str, backend: str, out: Any, prepare: Callable[[], None]
) -> None:
    """Write until the disk refuses; report what failed and what is left."""
    try:
        prepare()
    except OSError as exc:
        out.put({"skip": f"cannot make a small disk here: {exc}"})
        return
    service = ExecutionStoreService(root=root, backend=backend)
    for i in range(5):
        service.set_key("early", f"key-{i}", whole_value(i))
    service.set_key("other", "key", "kept")
    failure = new_store_failure = None

    for i in range(10_000):
        try:
            service.set_key("early", f"fill-{i}", whole_value(i))
        except Exception as exc:
            failure = exc
            break
    try:
        service.set_key("new", "key", whole_value(0))
    except Exception as exc:
        new_store_failure = exc

    readable = [service.get_value("early", f"key-{i}") for i in range(5)]
    listing = service.list_stores()
    service.close()
    reopened = ExecutionStoreService(root=root, backend=backend)
    files = [
        (
            os.path.relpath(os.path.join(path, name), root),
            os.path.getsize(os.path.join(path, name)),
        )
        for path, _, names in os.walk(root)
        for name in names
    ]
    out.put(
        {
            "failure": repr(failure),
            "is_oserror": isinstance(failure, OSError),
            "new_store_failure": repr(new_store_failure),
            "new_store_is_oserror": new_store_failure is None
            or isinstance(new_store_failure, OSError),
            "readable": readable == [whole_value(i) for i in range(5)],
            "reopened": reopened.get_value("early", "key-4") == whole_value(4)
            and reopened.get_value("other", "key") == "kept",
            "listing": listing,
            "files": files,
        }
    )


def assert_failed_cleanly(result: dict[str, Any]) -> None:
    if "skip" in result:
        pytest.skip(result["skip"])
    assert result["is_oserror"], result["failure"]
    assert result["new_store_is_oserror"], result["new_store_failure"]
    assert result["readable"]
    assert result["reopened"]
    assert {"early", "other"} <= set(result["listing"])
    empty = [name for name, size in result["files"] if size == 0]
    assert [name for name in empty if not name.endswith(".lock")] == []
    assert [name for name, _ in result["files"] if name.endswith(".tmp")] == []


@pytest.mark.timeout(60)
def test_write_on_a_full_disk_raises_oserror_and_keeps_earlier_keys(
    tmp_path: Path, file_backend: str, start: Start
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    out = FORK.Queue()

    child = start(
        fill_until_failure,
        str(disk / "root"),
        file_backend,
        out,
        lambda: mount_small_tmpfs(str(disk), "384k"),
    )
    result = out.get(timeout=50)
    child.join(10)

    assert child.exitcode == 0
    assert_failed_cleanly(result)
    assert "No space left" in result["failure"] or "full" in result["failure"]


def limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))


@pytest.mark.timeout(60)
def test_write_past_the_file_size_limit_raises_oserror_and_keeps_earlier_keys(
    root: Path, file_backend: str, start: Start
) -> None:
    out = FORK.Queue()

    child = start(fill_until_failure, str(root), file_backend, out, limit_file_size)
    result = out.get(timeout=50)
    child.join(10)

    assert child.exitcode == 0
    assert_failed_cleanly(result)


def fill_the_disk(directory: str) -> None:
    """Write a file into ``directory`` until its filesystem has no space left."""
    fd = os.open(os.path.join(directory, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)


def write_to_a_store_on_a_full_disk(disk: str, out: Any) -> None:
    """Fill the disk below a closed store, then write to it from a new service."""
    root = os.path.join(disk, "root")
    with ExecutionStoreService(root=root) as service:
        service.set_key("kept", "key", "value")
    fill_the_disk(disk)

    service = ExecutionStoreService(root=root)
    writes = {
        "set_key": lambda: service.set_key("kept", "other", 1),
        "delete_key": lambda: service.delete_key("kept", "key"),
        "set_keys": lambda: service.set_keys("kept", {"a": 1}),
        "sweep": service.sweep,
    }
    failures = {}
    for name, write in writes.items():
        try:
            write()
            failures[name] = "succeeded"
        except Exception as exc:
            failures[name] = (type(exc).__name__, getattr(exc, "errno", None), str(exc))
    out.put(
        {
            "failures": failures,
            "path": service.repo.store_path(None, "kept"),
            "readable": service.get_value("kept", "key") == "value",
        }
    )


def _on_a_small_disk(disk: str, target: Callable[[str, Any], None], out: Any) -> None:
    try:
        mount_small_tmpfs(disk, "384k")
    except OSError as exc:
        out.put({"skip": f"cannot make a small disk here: {exc}"})
        return
    target(disk, out)


def run_on_a_small_disk(
    tmp_path: Path, start: Start, target: Callable[[str, Any], None]
) -> dict[str, Any]:
    """Run ``target(disk, out)`` in a child, on a disk of 384 KB mounted for it.

    :returns: what the child put on ``out``; the test is skipped where no such
        disk can be made.
    """
    disk = tmp_path / "disk"
    disk.mkdir()
    out = FORK.Queue()

    child = start(_on_a_small_disk, str(disk), target, out)
    result: dict[str, Any] = out.get(timeout=50)
    child.join(10)

    if "skip" in result:
        pytest.skip(result["skip"])
    assert child.exitcode == 0
    return result


@pytest.mark.timeout(60)
def test_write_to_a_store_first_opened_on_a_full_disk_raises_enospc(
    tmp_path: Path, start: Start
) -> None:
    result = run_on_a_small_disk(tmp_path, start, write_to_a_store_on_a_full_disk)

    assert result["readable"]
    for kind, number, message in result["failures"].values():
        assert (kind, number) == ("StoreIOError", errno.ENOSPC), message
        assert "disk is full" in message
        assert result["path"] in message


def check_a_full_disk(disk: str, out: Any) -> None:
    """Make a healthy and a damaged store, fill the disk, run doctor's checks."""
    root = os.path.join(disk, "root")
    damaged = make_healthy_and_damaged_stores(root)
    fill_the_disk(disk)

    checked, problems = examine_root(root)
    out.put({"checked": checked, "problems": problems, "damaged": damaged})


@pytest.mark.timeout(60)
def test_doctor_on_a_full_disk_reports_only_the_damaged_store(
    tmp_path: Path, start: Start
) -> None:
    result = run_on_a_small_disk(tmp_path, start, check_a_full_disk)

    assert result["checked"] == 2
    assert [path for path, _ in result["problems"]] == [result["damaged"]]
    assert "disk I/O error" not in result["problems"][0][1]


# Lock holders ---------------------------------------------------------------------


def hold_store_lock(root: str, backend: str, holding: Any) -> None:
    """Stop inside a write, with the store's lock held, until killed."""
    service = ExecutionStoreService(root=root, backend=backend)

    def stuck(current: str) -> bool:
        holding.set()
        time.sleep(3600)
        return False

    service.repo.compare_and_set_key(
        None, "locked", "key", stuck, '"never"', None, "persist", time.time_ns() // 1000
    )


@pytest.mark.timeout(60)
def test_live_lock_holder_makes_writer_raise_timeout_error(
    root: Path, file_backend: str, start: Start
) -> None:
    ExecutionStoreService(root=root, backend=file_backend).set_key("locked", "key", 1)
    holding = FORK.Event()
    holder = start(hold_store_lock, str(root), file_backend, holding)
    assert holding.wait(20)
    service = ExecutionStoreService(root=root, backend=file_backend, timeout=0.5)

    began = time.monotonic()
    with pytest.raises(LockTimeoutError) as raised:
        service.set_key("locked", "key", 2)
    waited = time.monotonic() - began

    assert isinstance(raised.value, TimeoutError)
    assert "locked" in str(raised.value)
    assert waited < 8  # the 0.5 s given, not the default 10 s
    assert holder.is_alive()
    assert service.get_value("locked", "key") == 1  # readers are not blocked


@pytest.mark.timeout(60)
def test_lock_holder_killed_mid_write_blocks_no_later_writer(
    root: Path, file_backend: str, start: Start
) -> None:
    ExecutionStoreService(root=root, backend=file_backend).set_key("locked", "key", 1)
    holding = FORK.Event()
    holder = start(hold_store_lock, str(root), file_backend, holding)
    assert holding.wait(20)

    holder.kill()
    holder.join(10)
    service = ExecutionStoreService(root=root, backend=file_backend, timeout=5)
    service.set_key("locked", "key", 2)

    assert service.get_value("locked", "key") == 2


def hold_creation_lock(lock_path: str, holding: Any) -> None:
    with FileLock(lock_path):
        holding.set()
        time.sleep(3600)


@pytest.mark.timeout(60)
def test_store_creation_waits_out_a_dead_creator_and_times_out_on_a_live_one(
    root: Path, start: Start
) -> None:
    service = ExecutionStoreService(root=root, timeout=0.5)
    service.set_key("first", "key", 1)
    lock_path = os.path.join(service.repo.context_dir(None), ".lock")
    holding = FORK.Event()
    holder = start(hold_creation_lock, lock_path, holding)
    assert holding.wait(20)

    with pytest.raises(LockTimeoutError) as raised:
        service.set_key("second", "key", 2)
    holder.kill()
    holder.join(10)
    service.set_key("second", "key", 2)

    assert raised.value.path == lock_path
    assert service.get_value("second", "key") == 2
    assert service.get_value("first", "key") == 1
