"""The SQLite backend's files: schema upgrades, files replaced behind it, purges."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from localstore import ExecutionStore, ExecutionStoreService, _sqlite_pool
from localstore._sqlite_pool import PURGE_EVERY, RECHECK_SECONDS
from localstore._sqlite_sql import SCHEMA_VERSION

# A store file as localstore 0.1.0 wrote it: schema version 1, keys counted by
# triggers into store_info.key_count.
VERSION_1_SCHEMA = """
CREATE TABLE store_info (
    id INTEGER PRIMARY KEY CHECK (id = 1), store_name TEXT NOT NULL,
    dataset_id TEXT, created_at INTEGER NOT NULL, key_count INTEGER NOT NULL);
CREATE TABLE store_doc (
    id INTEGER PRIMARY KEY CHECK (id = 1), metadata TEXT,
    created_at INTEGER NOT NULL, updated_at INTEGER, policy TEXT NOT NULL);
CREATE TABLE keys (
    key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL, expires_at INTEGER, policy TEXT NOT NULL);
CREATE INDEX keys_by_expiry ON keys (expires_at) WHERE expires_at IS NOT NULL;
CREATE TRIGGER keys_added AFTER INSERT ON keys
    BEGIN UPDATE store_info SET key_count = key_count + 1; END;
CREATE TRIGGER keys_removed AFTER DELETE ON keys
    BEGIN UPDATE store_info SET key_count = key_count - 1; END;
PRAGMA application_id = 1280529487;
PRAGMA user_version = 1;
"""


def write_version_1_store(path: Path, store: str, keys: dict[str, str]) -> None:
    """Write a schema version 1 store file holding ``keys`` (JSON texts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(VERSION_1_SCHEMA)
    conn.execute("INSERT INTO store_info VALUES (1, ?, NULL, 1, 0)", (store,))
    for key, text in keys.items():
        conn.execute(
            "INSERT INTO keys VALUES (?, ?, 1000, 1000, NULL, 'persist')", (key, text)
        )
    conn.execute("INSERT INTO keys VALUES ('old', '1', 1000, 1000, 2000, 'evict')")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


def test_version_1_store_is_upgraded_on_open_and_keeps_its_keys(tmp_path):
    service = ExecutionStoreService(root=tmp_path)
    path = Path(service.repo.store_path(None, "s"))
    write_version_1_store(path, "s", {"a": '{"x": 1}', "b": "[1, 2]"})

    assert service.get_value("s", "a") == {"x": 1}
    assert service.count_keys("s") == 2  # "old" expired long ago
    service.set_key("s", "c", 3)
    service.delete_key("s", "a")

    assert service.list_keys("s") == ["b", "c"]
    assert service.count_keys("s") == 2
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert (
        conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
        == []
    )
    conn.close()


def upgrade_and_write(root: str, worker: int) -> None:
    """Open a version 1 store (upgrading it, or finding it upgraded) and write."""
    service = ExecutionStoreService(root=root)
    for i in range(20):
        service.set_key("s", f"w{worker}-{i}", i)


@pytest.mark.timeout(60)
def test_processes_opening_a_version_1_store_at_once_all_upgrade_it_safely(
    tmp_path, start
):
    path = Path(ExecutionStoreService(root=tmp_path).repo.store_path(None, "s"))
    write_version_1_store(path, "s", {"a": "1"})

    children = [start(upgrade_and_write, str(tmp_path), w) for w in range(4)]
    for child in children:
        child.join(50)

    assert [child.exitcode for child in children] == [0, 0, 0, 0]
    service = ExecutionStoreService(root=tmp_path)
    assert service.count_keys("s") == 81
    assert service.get_value("s", "w3-19") == 19


def test_new_key_gets_one_time_and_an_exact_ttl(tmp_path):
    service = ExecutionStoreService(root=tmp_path)
    store = ExecutionStore("s", service)

    store.set("k", 1, ttl=2.5)
    doc = service.get_key("s", "k")

    assert doc.created_at == doc.updated_at
    assert (doc.expires_at - doc.updated_at).total_seconds() == 2.5


def test_a_new_service_sees_a_removed_root_at_once(tmp_path):
    root = tmp_path / "root"
    ExecutionStoreService(root=root).set_key("s", "k", "before")
    ExecutionStoreService(root=root).get_value("s", "k")  # pooled and checked
    shutil.rmtree(root)

    service = ExecutionStoreService(root=root)

    assert service.get_value("s", "k") is None
    assert service.list_stores() == []


_WRITES = {
    "ExecutionStore.set": lambda service: ExecutionStore("s", service).set("new", 1),
    "set_key": lambda service: service.set_key("s", "new", 1),
    "set_keys": lambda service: service.set_keys("s", {"new": 1}),
}


@pytest.mark.parametrize("write", _WRITES.values(), ids=_WRITES.keys())
def test_a_write_after_the_root_was_removed_lands_in_a_new_file(
    tmp_path, monkeypatch, write
):
    # However recent the last check of the file, a write finds it gone.
    monkeypatch.setattr(_sqlite_pool, "RECHECK_SECONDS", 3600.0)
    root = tmp_path / "root"
    service = ExecutionStoreService(root=root)
    service.set_key("s", "k", "before")
    shutil.rmtree(root)

    write(service)

    assert service.get_value("s", "k") is None
    assert ExecutionStoreService(root=root).get_value("s", "new") == 1


def test_a_write_lands_in_a_replaced_file_after_the_recheck_time(tmp_path):
    service = ExecutionStoreService(root=tmp_path)
    service.set_key("s", "k", "old file")
    path = _replace_with_another_store_file(service, tmp_path)
    time.sleep(RECHECK_SECONDS * 1.5)

    ExecutionStore("s", service).set("k", "written")

    assert ExecutionStoreService(root=tmp_path).get_value("s", "k") == "written"
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT value FROM keys").fetchall() == [('"written"',)]


def test_a_read_sees_a_replaced_file_within_the_recheck_time(tmp_path):
    service = ExecutionStoreService(root=tmp_path)
    service.set_key("s", "k", "old file")
    assert service.get_value("s", "k") == "old file"

    _replace_with_another_store_file(service, tmp_path)
    time.sleep(RECHECK_SECONDS * 1.5)

    assert service.get_value("s", "k") == "new file"


def _replace_with_another_store_file(service, tmp_path) -> Path:
    """Put another service's file of store "s" (k: "new file") in place of service's."""
    path = Path(service.repo.store_path(None, "s"))
    other = ExecutionStoreService(root=tmp_path / "elsewhere")
    other.set_key("s", "k", "new file")
    other.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    Path(other.repo.store_path(None, "s")).replace(path)
    return path


@pytest.mark.parametrize("write", ["set_key", "ExecutionStore.set"])
def test_writes_purge_expired_keys_now_and_then(tmp_path, write):
    service = ExecutionStoreService(root=tmp_path)
    service.set_keys("s", {f"gone-{i}": i for i in range(100)}, ttl=1e-6)
    time.sleep(0.01)
    path = service.repo.store_path(None, "s")
    store = ExecutionStore("s", service)

    for i in range(PURGE_EVERY):
        if write == "set_key":
            service.set_key("s", f"live-{i}", i)
        else:
            store.set(f"live-{i}", i)

    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT count(*) FROM keys WHERE key LIKE 'gone-%'").fetchone()
    conn.close()
    assert rows[0] == 0
    assert service.count_keys("s") == PURGE_EVERY


def test_a_wal_file_left_without_its_store_file_is_not_applied_to_a_new_one(tmp_path):
    service = ExecutionStoreService(root=tmp_path)
    service.set_key("s", "old", "from the deleted file")
    path = Path(service.repo.store_path(None, "s"))
    service.close()
    # Another program writes through the WAL and keeps it; then only the
    # store file itself is deleted.
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    for i in range(50):
        writer.execute(
            "INSERT INTO keys (key, created_at, updated_at, policy, value) "
            "VALUES (?, 1, 1, 'persist', '1')",
            (f"w{i}",),
        )
    path.unlink()

    fresh = ExecutionStoreService(root=tmp_path)
    fresh.set_key("s", "new", 1)

    assert fresh.list_keys("s") == ["new"]
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()
    writer.close()


@pytest.mark.parametrize(
    ("call", "answer"),
    [
        (lambda store: store.get("a"), 1),
        (lambda store: store.get("missing"), None),
        (lambda store: store.has("a"), True),
        (lambda store: store.has("missing"), False),
        (lambda store: store.service.get_key("s", "b") is not None, True),
        (lambda store: store.delete("missing"), False),
    ],
    ids=["get", "get miss", "has", "has miss", "get_key", "delete miss"],
)
def test_single_key_calls_leave_no_read_transaction_open(tmp_path, call, answer):
    store = ExecutionStore("s", ExecutionStoreService(root=tmp_path))
    store.set("a", 1)
    store.set("b", 2, ttl=60)
    path = store.service.repo.store_path(None, "s")

    # These calls share a pooled cursor: each must finish its statement, or the
    # reader it leaves open keeps checkpoints from emptying the log until the
    # next call.
    assert call(store) == answer

    with closing(sqlite3.connect(path, timeout=0)) as other:
        busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0
    assert Path(f"{path}-wal").stat().st_size == 0


# Writes store "s" under the root given, then keeps its connection open: the key
# stays in the write-ahead log until the process is killed.
WRITE_AND_HOLD = """
import sys, time
from localstore import ExecutionStoreService
ExecutionStoreService(root=sys.argv[1]).set_key("s", "k", "new file")
print("written", flush=True)
time.sleep(60)
"""


@pytest.mark.timeout(60)
def test_closing_a_replaced_files_connection_leaves_the_new_files_log_alone(
    tmp_path,
):
    service = ExecutionStoreService(root=tmp_path)
    service.set_key("s", "k", "old file")
    path = Path(service.repo.store_path(None, "s"))
    old_handle = _sqlite_pool._pool.handles[str(path)]
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITE_AND_HOLD, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "written\n"
        time.sleep(RECHECK_SECONDS)

        # The call finds the file replaced and closes its connection to the old
        # one, which must not take the new file's log with it.
        assert service.get_value("s", "k") == "new file"
        assert old_handle.closed
    finally:
        writer.kill()
        writer.communicate()

    with closing(sqlite3.connect(path)) as check:
        rows = check.execute("SELECT value FROM keys WHERE key = 'k'").fetchall()
    assert rows == [('"new file"',)]
