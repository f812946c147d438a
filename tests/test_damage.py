"""Damaged store files: a clear error naming the file, and nothing else touched.

A damaged file is never reset, repaired or deleted: every call on its store
raises one :class:`~localstore.CorruptStoreError` naming it, the other stores of
the context keep working, and listings skip it with a logged warning.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import pickle
import random
import re
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

import localstore
from localstore import CorruptStoreError, ExecutionStoreService, LocalStoreError

from .conftest import edit_json_file


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def write_random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(4).randbytes(8192))


def write_foreign_sqlite(path: Path) -> None:
    path.unlink()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE keys (key TEXT, value TEXT)")
    conn.execute("INSERT INTO keys VALUES ('key', '\"foreign\"')")
    conn.commit()
    conn.close()


DAMAGES: dict[str, Callable[[Path], None]] = {
    "random-bytes": write_random_bytes,
    "truncated": truncate,
    "null": lambda path: path.write_text("null"),
    "empty-list": lambda path: path.write_text("[]"),
    "zero-bytes": lambda path: path.write_bytes(b""),
    "foreign-sqlite": write_foreign_sqlite,
    "text": lambda path: path.write_text("these are not the droids\n"),
}


def assert_each_raises_corrupt_store_error(
    calls: dict[str, Callable[[], object]], path: Path
) -> None:
    """Check that every call raises CorruptStoreError naming the damaged file."""
    for name, call in calls.items():
        with pytest.raises(CorruptStoreError) as raised:
            call()
        assert raised.value.path == str(path), name
        assert str(path) in str(raised.value), name


def damaged_service(
    root: Path, backend: str, damage: str
) -> tuple[ExecutionStoreService, Path]:
    """Return a service whose store "bad" has been damaged and "good" has not."""
    service = ExecutionStoreService(root=root, backend=backend)
    service.set_key("good", "key", "good value")
    for i in range(50):
        service.set_key("bad", f"key-{i}", "x" * 500)
    path = Path(service.repo.store_path(None, "bad"))
    service.close()  # SQLite moves the WAL into the file on close
    for sidecar in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        assert not sidecar.exists()
    DAMAGES[damage](path)
    return ExecutionStoreService(root=root, backend=backend), path


@pytest.mark.timeout(30)
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_store_raises_corrupt_store_error_naming_the_file(
    root: Path, file_backend: str, damage: str
) -> None:
    service, path = damaged_service(root, file_backend, damage)
    before = path.read_bytes()
    calls = {
        "get_key": lambda: service.get_key("bad", "key-1"),
        "set_key": lambda: service.set_key("bad", "key-1", "new"),
        "list_keys": lambda: service.list_keys("bad"),
        "count_keys": lambda: service.count_keys("bad"),
        "delete_key": lambda: service.delete_key("bad", "key-1"),
        "delete_store": lambda: service.delete_store("bad"),
        "create_store": lambda: service.create_store("bad"),
    }

    assert_each_raises_corrupt_store_error(calls, path)

    assert path.read_bytes() == before
    service.close()
    assert path.read_bytes() == before


@pytest.mark.timeout(30)
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_store_leaves_other_stores_working_and_is_skipped_by_listings(
    root: Path, file_backend: str, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    service, path = damaged_service(root, file_backend, damage)
    before = path.read_bytes()

    with caplog.at_level(logging.WARNING, logger="localstore"):
        stores = service.list_stores()
        count = service.count_stores()
        documents = service.list_stores_global()
        service.sweep()
        service.clear_cache()
    service.set_key("good", "other", 2)
    service.set_key("fresh", "key", 3)

    assert stores == ["good"]
    assert count == 1
    assert [document.store_name for document in documents] == ["good"]
    assert service.get_value("good", "key") == "good value"
    assert service.list_stores() == ["fresh", "good"]
    assert any(str(path) in record.getMessage() for record in caplog.records)
    assert path.read_bytes() == before


@pytest.mark.timeout(30)
def test_corrupt_store_error_is_a_local_store_error() -> None:
    assert issubclass(CorruptStoreError, LocalStoreError)


# No stored byte is ever unpickled ----------------------------------------------------


class Planted:
    """Unpickling this would create the marker file named in ``MARKER``."""

    marker = ""

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (Path(Planted.marker), "unpickled!"))


@pytest.mark.timeout(30)
def test_pickled_bytes_come_back_as_bytes_never_unpickled(
    root: Path, backend: str, tmp_path: Path
) -> None:
    Planted.marker = str(tmp_path / "marker")
    payload = pickle.dumps(Planted())
    service = ExecutionStoreService(root=root, backend=backend)

    service.set_key("store", "pickle", payload)
    service.set_key("store", "nested", {"data": [payload]})
    value = service.get_value("store", "pickle")
    nested = service.get_value("store", "nested")
    listed = service.list_values("store")

    assert value == payload
    assert nested == {"data": [payload]}
    assert payload in listed
    assert not os.path.exists(Planted.marker)


@pytest.mark.timeout(30)
def test_pickle_written_into_a_store_file_is_never_unpickled(
    root: Path, tmp_path: Path
) -> None:
    Planted.marker = str(tmp_path / "marker")
    service = ExecutionStoreService(root=root)
    service.set_key("store", "key", "placeholder")
    path = service.repo.store_path(None, "store")
    service.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE keys SET value = ?", (pickle.dumps(Planted()),))
    conn.execute(
        "INSERT INTO keys (key, value, created_at, updated_at, expires_at, policy) "
        "SELECT 'text', ?, created_at, updated_at, NULL, policy FROM keys",
        (pickle.dumps(Planted(), protocol=0).decode("ascii"),),
    )
    conn.commit()
    conn.close()

    for key in ("key", "text"):
        with pytest.raises((LocalStoreError, TypeError, ValueError)):
            service.get_value("store", key)
    with pytest.raises((LocalStoreError, TypeError, ValueError)):
        service.list_values("store")

    assert not os.path.exists(Planted.marker)


@pytest.mark.timeout(30)
def test_package_never_calls_an_unpickler_or_eval() -> None:
    package = Path(localstore.__file__).parent
    forbidden = re.compile(
        r"\b(pickle|cPickle|marshal|shelve|yaml|jsonpickle|dill)\b"
        r"|(?<![\w.])(eval|exec|compile|__import__)\("
    )

    uses = [
        (source.name, match.group())
        for source in sorted(package.rglob("*.py"))
        for match in forbidden.finditer(source.read_text(encoding="utf-8"))
    ]

    assert uses == []


def test_a_sqlite_file_copied_under_another_store_name_is_refused(tmp_path):
    service = ExecutionStoreService(root=tmp_path)
    service.set_key("alpha", "k", "alpha's")
    alpha = Path(service.repo.store_path(None, "alpha"))
    beta = alpha.with_name("beta.sqlite")
    shutil.copyfile(alpha, beta)
    copied = beta.read_bytes()

    with pytest.raises(CorruptStoreError, match="records store 'alpha'"):
        service.get_value("beta", "k")

    assert service.list_stores() == ["alpha"]
    assert beta.read_bytes() == copied


# A JSON file damaged after this process wrote it ------------------------------------


def damage_in_place_keeping_size_and_times(path: Path, old: bytes, new: bytes) -> None:
    """Overwrite ``old`` with ``new``, as long, in the same inode; restore the times."""
    before = path.stat()
    data = path.read_bytes()
    assert len(old) == len(new)
    assert data.count(old) == 1
    with open(path, "r+b") as file:
        file.write(data.replace(old, new))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )


@pytest.mark.timeout(30)
@pytest.mark.parametrize("damage", ['{"$bytes": "!!"}', "18446744073709551616"])
def test_json_value_damaged_after_this_process_wrote_the_file_is_refused(
    root: Path, damage: str
) -> None:
    service = ExecutionStoreService(root=root, backend="json")
    stand_in = "x" * (len(damage) - 2)
    service.set_key("s", "k", stand_in)
    service.set_key("s", "k2", 2)  # checks the value of "k" and writes again
    assert service.get_value("s", "k") == stand_in
    path = Path(service.repo.store_path(None, "s"))
    damage_in_place_keeping_size_and_times(
        path, f'"value": "{stand_in}"'.encode(), f'"value": {damage}'.encode()
    )
    damaged = path.read_bytes()

    with pytest.raises(CorruptStoreError, match="under key 'k'"):
        service.set_key("s", "k3", 3)
    with pytest.raises(CorruptStoreError, match="under key 'k'"):
        service.delete_key("s", "k2")

    assert path.read_bytes() == damaged
    service.close()


@pytest.mark.timeout(30)
def test_json_file_replaced_by_hand_with_an_older_copy_is_read_as_it_now_is(
    root: Path,
) -> None:
    service = ExecutionStoreService(root=root, backend="json")
    service.set_key("s", "k", "old")
    path = Path(service.repo.store_path(None, "s"))
    older = path.read_bytes()
    service.set_key("s", "k", "new")
    assert service.get_value("s", "k") == "new"

    path.write_bytes(older)
    service.set_key("s", "k2", 2)

    assert service.get_value("s", "k") == "old"
    assert service.list_keys("s") == ["k", "k2"]
    service.close()


# Numbers JSON reads but cannot write, and directories in a file's place ------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("number", ["1e400", "-1e400"])
def test_json_value_beyond_json_range_raises_corrupt_store_error_naming_the_file(
    root: Path, number: str
) -> None:
    service = ExecutionStoreService(root=root, backend="json")
    service.set_key("bad", "k", 1.5)
    service.set_key("bad", "k2", 2)
    path = Path(service.repo.store_path(None, "bad"))
    damaged = edit_json_file(path, '"value": 1.5', f'"value": {number}')
    calls = {
        "get_value": lambda: service.get_value("bad", "k"),
        "get_key": lambda: service.get_key("bad", "k"),
        "list_values": lambda: service.list_values("bad"),
        "set_key": lambda: service.set_key("bad", "k3", 3),
        "delete_key": lambda: service.delete_key("bad", "k2"),
        "clear_cache": lambda: service.clear_cache("bad"),
    }

    assert_each_raises_corrupt_store_error(calls, path)

    assert path.read_bytes() == damaged
    service.close()


def json_root_with_a_value_beyond_range(
    root: Path,
) -> tuple[ExecutionStoreService, Path, bytes]:
    """Return a JSON service whose store "bad" holds 1e400, its file, and its bytes."""
    service = ExecutionStoreService(root=root, backend="json")
    service.set_key("bad", "k", 1.5)
    path = Path(service.repo.store_path(None, "bad"))
    return service, path, edit_json_file(path, '"value": 1.5', '"value": 1e400')


@pytest.mark.timeout(30)
def test_json_value_beyond_json_range_is_skipped_by_sweep_and_clear_cache(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service, path, damaged = json_root_with_a_value_beyond_range(root)
    service.set_cache_key("good", "cached", 1)

    with caplog.at_level(logging.WARNING, logger="localstore"):
        swept = service.sweep()
        service.clear_cache()

    assert swept == {}
    assert service.list_keys("good") == []
    assert any(str(path) in record.getMessage() for record in caplog.records)
    assert path.read_bytes() == damaged


@pytest.mark.timeout(30)
def test_cleanup_deletes_the_other_stores_and_leaves_a_damaged_one(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service, path, damaged = json_root_with_a_value_beyond_range(root)
    service.set_key("good", "k", 1)

    with caplog.at_level(logging.WARNING, logger="localstore"):
        service.cleanup()

    assert not service.has_store("good")
    assert any(str(path) in record.getMessage() for record in caplog.records)
    assert path.read_bytes() == damaged


@pytest.mark.timeout(30)
def test_json_metadata_beyond_json_range_raises_corrupt_store_error(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = ExecutionStoreService(root=root, backend="json")
    service.create_store("bad", metadata={"threshold": 1.5})
    service.set_key("good", "k", 1)
    path = Path(service.repo.store_path(None, "bad"))
    damaged = edit_json_file(path, '"threshold": 1.5', '"threshold": 1e400')

    with pytest.raises(CorruptStoreError, match="metadata") as raised:
        service.get_store("bad")
    with caplog.at_level(logging.WARNING, logger="localstore"):
        stores = service.list_stores()

    assert raised.value.path == str(path)
    assert stores == ["good"]
    assert path.read_bytes() == damaged


@pytest.mark.timeout(30)
def test_directory_in_place_of_a_store_file_raises_corrupt_store_error(
    root: Path, file_backend: str
) -> None:
    service = ExecutionStoreService(root=root, backend=file_backend)
    path = Path(service.repo.store_path(None, "bad"))
    path.parent.mkdir(parents=True)
    path.mkdir()
    calls = {
        "get_value": lambda: service.get_value("bad", "k"),
        "has_key": lambda: service.has_key("bad", "k"),
        "list_keys": lambda: service.list_keys("bad"),
        "set_key": lambda: service.set_key("bad", "k", 1),
        "delete_key": lambda: service.delete_key("bad", "k"),
        "create_store": lambda: service.create_store("bad"),
        "delete_store": lambda: service.delete_store("bad"),
    }

    for name, call in calls.items():
        with pytest.raises(CorruptStoreError, match="is a directory") as raised:
            call()
        assert raised.value.path == str(path), name
        assert str(path) in str(raised.value), name

    assert path.is_dir()
    assert list(path.iterdir()) == []
    service.close()


@pytest.mark.timeout(30)
def test_directory_in_place_of_a_store_file_is_skipped_by_listings(
    root: Path, file_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    service = ExecutionStoreService(root=root, backend=file_backend)
    service.set_key("good", "k", 1)
    path = Path(service.repo.store_path(None, "bad"))
    path.mkdir()

    with caplog.at_level(logging.WARNING, logger="localstore"):
        stores = service.list_stores()
        documents = service.list_stores_global()
        swept = service.sweep()
        service.clear_cache()
        service.cleanup()

    assert stores == ["good"]
    assert [document.store_name for document in documents] == ["good"]
    assert swept == {}
    assert service.list_stores() == []
    assert any(str(path) in record.getMessage() for record in caplog.records)
    assert path.is_dir()
    service.close()


def sqlite_store_with_value(root: Path, value: str | bytes) -> ExecutionStoreService:
    """Return a service whose store "bad" key "k" holds ``value``, written by hand."""
    service = ExecutionStoreService(root=root)
    service.set_key("bad", "k", 1)
    with closing(sqlite3.connect(service.repo.store_path(None, "bad"))) as conn:
        conn.execute("UPDATE keys SET value = ?", (value,))
        conn.commit()
    return service


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "value", [b"\x00\xff", '{"$oid": "zz"}', '{"$oid": 5}'], ids=["blob", "oid", "int"]
)
def test_sqlite_value_damaged_by_hand_raises_corrupt_store_error(root, value) -> None:
    if "$oid" in str(value):
        pytest.importorskip("bson")
    service = sqlite_store_with_value(root, value)

    for call in (
        lambda: service.get_key("bad", "k"),
        lambda: service.get_value("bad", "k"),
        lambda: service.list_values("bad"),
        lambda: service.compare_and_set_key("bad", "k", 1, 2),
    ):
        with pytest.raises(CorruptStoreError, match="a stored value is damaged"):
            call()


@pytest.mark.timeout(30)
def test_ttl_or_policy_update_of_a_damaged_key_changes_nothing(root) -> None:
    service = sqlite_store_with_value(root, "{oops")
    path = service.repo.store_path(None, "bad")

    with pytest.raises(CorruptStoreError):
        service.update_ttl("bad", "k", 100)
    with pytest.raises(CorruptStoreError):
        service.update_policy("bad", "k", "evict")

    with closing(sqlite3.connect(path)) as conn:
        row = conn.execute("SELECT expires_at, policy FROM keys").fetchone()
    assert row == (None, "persist")


@pytest.mark.timeout(30)
def test_json_malformed_oid_is_damage_skipped_by_sweep_and_clear_cache(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("bson")
    service = ExecutionStoreService(root=root, backend="json")
    service.set_key("bad", "k", 1.5)
    service.set_cache_key("good", "cached", 1)
    path = Path(service.repo.store_path(None, "bad"))
    damaged = edit_json_file(path, '"value": 1.5', '"value": {"$oid": "zz"}')

    with pytest.raises(CorruptStoreError):
        service.get_key("bad", "k")
    with caplog.at_level(logging.WARNING, logger="localstore"):
        service.sweep()
        service.clear_cache()

    assert service.list_keys("good") == []
    assert any(str(path) in record.getMessage() for record in caplog.records)
    assert path.read_bytes() == damaged


@pytest.mark.timeout(30)
@pytest.mark.parametrize("call", ["get_key", "get_value", "list_values", "compare"])
def test_a_value_damaged_by_hand_is_named_by_its_store_and_key(root, call) -> None:
    service = sqlite_store_with_value(root, '{"$bytes": "!!"}')
    calls = {
        "get_key": lambda: service.get_key("bad", "k"),
        "get_value": lambda: service.get_value("bad", "k"),
        "list_values": lambda: service.list_values("bad"),
        "compare": lambda: service.compare_and_set_key("bad", "k", 1, 2),
    }

    with pytest.raises(CorruptStoreError) as caught:
        calls[call]()

    assert str(caught.value).startswith(
        "key 'k' of store 'bad': a stored value is damaged: "
    )


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", ["sqlite", "json"])
@pytest.mark.parametrize(
    "typed", ["2024-01-01T05:30:00.000001+05:30", "2024-01-01T00:00:00.000001Z"]
)
def test_a_date_typed_with_an_offset_reads_as_naive_utc(root, backend, typed) -> None:
    service = ExecutionStoreService(root=root, backend=backend)
    service.set_key("fixture", "k", 1.5)
    tagged = json.dumps({"$date": typed})
    if backend == "sqlite":
        with closing(sqlite3.connect(service.repo.store_path(None, "fixture"))) as conn:
            conn.execute("UPDATE keys SET value = ?", (tagged,))
            conn.commit()
    else:
        path = Path(service.repo.store_path(None, "fixture"))
        edit_json_file(path, '"value": 1.5', f'"value": {tagged}')

    value = service.get_value("fixture", "k")

    assert value == dt.datetime(2024, 1, 1, 0, 0, 0, 1)
    assert value.tzinfo is None


@pytest.mark.timeout(30)
def test_store_metadata_damaged_by_hand_is_named_as_the_store_document(root) -> None:
    service = ExecutionStoreService(root=root)
    service.create_store("bad", metadata={"a": 1})
    with closing(sqlite3.connect(service.repo.store_path(None, "bad"))) as conn:
        conn.execute('UPDATE store_doc SET metadata = \'{"$bytes": "!!"}\'')
        conn.commit()

    with pytest.raises(CorruptStoreError) as caught:
        service.get_store("bad")

    assert str(caught.value).startswith(
        "the document of store 'bad': a stored value is damaged: "
    )


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "typed", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
)
def test_a_date_moved_past_the_years_1_to_9999_by_its_offset_is_damage(
    root, typed
) -> None:
    service = sqlite_store_with_value(root, json.dumps({"$date": typed}))

    with pytest.raises(CorruptStoreError, match="outside the years 1-9999"):
        service.get_value("bad", "k")


def _damage_store_doc(service: ExecutionStoreService, store: str, **columns) -> None:
    """Overwrite columns of a SQLite store's document, as a user might."""
    assignments = ", ".join(f"{name} = ?" for name in columns)
    with closing(sqlite3.connect(service.repo.store_path(None, store))) as conn:
        conn.execute(f"UPDATE store_doc SET {assignments}", [*columns.values()])
        conn.commit()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "columns",
    [{"policy": "bogus"}, {"created_at": "x"}, {"created_at": 1e30}],
    ids=["policy", "text-time", "huge-time"],
)
def test_a_store_document_damaged_by_hand_raises_corrupt_store_error(
    root, columns
) -> None:
    service = ExecutionStoreService(root=root)
    service.create_store("bad", metadata={"a": 1})
    _damage_store_doc(service, "bad", **columns)

    with pytest.raises(CorruptStoreError, match="the document of store 'bad'"):
        service.get_store("bad")


@pytest.mark.timeout(30)
def test_deleting_a_store_with_a_damaged_document_deletes_it_with_a_warning(
    root, caplog
) -> None:
    service = ExecutionStoreService(root=root)
    service.create_store("bad", metadata={"a": 1})
    service.set_key("bad", "k", 1)
    _damage_store_doc(service, "bad", policy="bogus")

    with caplog.at_level(logging.WARNING, logger="localstore"):
        deleted = service.delete_store("bad")

    assert (deleted.store_name, deleted.metadata) == ("bad", {})
    assert not service.has_store("bad")
    assert "the document of store 'bad'" in caplog.text


@pytest.mark.timeout(30)
def test_list_stores_global_leaves_out_a_damaged_store_document(root, caplog) -> None:
    service = ExecutionStoreService(root=root)
    service.create_store("bad", metadata={"a": 1})
    service.create_store("good", metadata={"b": 2})
    _damage_store_doc(service, "bad", metadata='{"$date": "nope"}')

    with caplog.at_level(logging.WARNING, logger="localstore"):
        documents = service.list_stores_global()

    assert [(d.store_name, d.metadata) for d in documents] == [("good", {"b": 2})]
    assert "leaving out store 'bad'" in caplog.text
