"""What is particular to each backend: the JSON file, its locking, the shared memory."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from filelock import FileLock

from localstore import (
    CorruptStoreError,
    ExecutionStoreService,
    InvalidValueError,
    LockTimeoutError,
    StoreExistsError,
)
from localstore._backend import Backend, KeyRecord
from localstore._backends import BACKENDS, open_backend

POSIX = os.name == "posix"


def _backend_class(kind: str) -> type:
    module_name, class_name = BACKENDS[kind].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def _store_file(root, store="s", context_dir="@global", collection="execution_store"):
    return root / collection / context_dir / f"{store}.json"


def _read_file(root, store="s", context_dir="@global"):
    return json.loads(_store_file(root, store, context_dir).read_text("utf-8"))


def _run_python(code: str, timeout: float = 30) -> None:
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], check=True, timeout=timeout
    )


# Every backend -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_every_backend_implements_every_backend_method(kind):
    cls = _backend_class(kind)

    missing = sorted(
        name
        for name in Backend.__abstractmethods__
        if getattr(cls, name) is getattr(Backend, name)
    )

    assert missing == []
    assert not getattr(cls, "__abstractmethods__", frozenset())
    assert cls.kind == kind


@pytest.mark.parametrize("kind", ["json", "memory"])
def test_change_marker_changes_with_every_write_and_only_then(root, kind):
    repo = open_backend(kind, root)
    service = ExecutionStoreService(repo)
    assert repo.change_marker(None, "s") is None

    markers = []
    for i in range(20):
        service.set_key("s", "k", i)  # many writes within one clock tick
        markers.append(repo.change_marker(None, "s"))

    assert len(set(markers)) == len(markers)
    assert repo.change_marker(None, "s") == markers[-1]


def _is_one(text):
    return text == "1"


def _random_call(rng, now):
    """Return a random backend method name and its arguments, as the codec would."""
    context, store = rng.choice([None, "d1"]), rng.choice(["a", "b"])
    key, value = rng.choice(["x", "y", "z"]), str(rng.randint(0, 3))
    ttl_end = rng.choice([None, None, now + rng.choice([1, 100, 2_000_000])])
    policy = rng.choice(["persist", "evict"])
    record = KeyRecord(key, value, now - 5, now - 1, ttl_end, policy)
    where = (context, store)
    return rng.choice(
        [
            ("set_key", (*where, key, value, ttl_end, policy, now), {}),
            (
                "set_key",
                (*where, key, value, ttl_end, policy, now),
                {"only_if_absent": True},
            ),
            (
                "set_keys",
                (*where, [(key, value), ("y", value)], ttl_end, policy, now),
                {},
            ),
            (
                "compare_and_set_key",
                (*where, key, _is_one, value, ttl_end, policy, now),
                {},
            ),
            (
                "update_key",
                (*where, key, now),
                {"expires_at": ttl_end, "policy": None, "set_expiry": True},
            ),
            (
                "update_key",
                (*where, key, now),
                {"expires_at": None, "policy": policy, "set_expiry": False},
            ),
            ("delete_key", (*where, key, now), {}),
            ("get_key", (*where, key, now), {}),
            ("has_key", (*where, key, now), {}),
            ("list_items", (*where, now, rng.choice([None, "", "x"])), {}),
            ("list_keys", (*where, now), {}),
            ("count_keys", (*where, now), {}),
            ("create_store", (*where, rng.choice([None, '{"m":1}']), policy, now), {}),
            ("get_store", (*where, now), {}),
            ("delete_store", (*where, now), {}),
            ("clear_cache", (context, rng.choice([None, store]), now), {}),
            ("list_stores", (context, now), {}),
            ("dump_store", (*where, now), {}),
            (
                "load_store",
                (*where, None, [record], now),
                {"replace": rng.random() < 0.5},
            ),
        ]
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", range(8))
def test_backends_answer_random_call_sequences_alike(tmp_path, seed):
    backends = {
        kind: open_backend(kind, tmp_path) for kind in ("sqlite", "json", "memory")
    }
    rng = random.Random(seed)
    now = time.time_ns() // 1000 + 10**13  # ahead of the clock, so no call moves it on

    for step in range(150):
        now += rng.choice([0, 1, 1_000, 500_000])
        name, args, kwargs = _random_call(rng, now)
        answers = {}
        for kind, backend in backends.items():
            try:
                answers[kind] = getattr(backend, name)(*args, **kwargs)
            except StoreExistsError:
                answers[kind] = "StoreExistsError"
        if name == "clear_cache":  # counts differ: expired keys may be gone already
            continue

        assert answers["json"] == answers["sqlite"], (step, name, args)
        assert answers["memory"] == answers["sqlite"], (step, name, args)


# The JSON file -----------------------------------------------------------------------


@pytest.fixture
def json_service(root):
    with ExecutionStoreService(root=root, backend="json") as service:
        yield service


def test_json_file_is_strict_indented_json_with_sorted_keys(json_service, root):
    b = json_service.set_key("s", "b", {"zeta": 1, "alpha": [1, 2]}, ttl=60)
    a = json_service.set_key("s", "a", "caf\u00e9")

    text = _store_file(root).read_text("utf-8")

    def time(moment):
        return moment.isoformat(timespec="microseconds") + "Z"

    assert text == textwrap.dedent(f"""\
        {{
          "format": "localstore-store",
          "version": 1,
          "revision": 2,
          "store_name": "s",
          "dataset_id": null,
          "store": null,
          "keys": {{
            "a": {{
              "value": "caf\u00e9",
              "created_at": "{time(a.created_at)}",
              "updated_at": "{time(a.updated_at)}",
              "expires_at": null,
              "policy": "persist"
            }},
            "b": {{
              "value": {{"zeta": 1, "alpha": [1, 2]}},
              "created_at": "{time(b.created_at)}",
              "updated_at": "{time(b.updated_at)}",
              "expires_at": "{time(b.expires_at)}",
              "policy": "evict"
            }}
          }}
        }}
        """)
    json.loads(text, parse_constant=pytest.fail)  # strict JSON


def test_json_store_document_is_laid_out_like_the_keys(json_service, root):
    document = json_service.create_store("s", metadata={"owner": "me"})

    text = _store_file(root).read_text("utf-8")

    assert text.endswith(
        textwrap.dedent(f"""\
          "store": {{
            "metadata": {{"owner": "me"}},
            "created_at": "{document.created_at.isoformat(timespec="microseconds")}Z",
            "updated_at": null,
            "policy": "persist"
          }},
          "keys": {{}}
        }}
        """)
    )


def test_json_file_records_the_exact_store_name_and_dataset_id(root):
    name, dataset = "A" * 300, "66b1c0ffee000000000000aa"
    with ExecutionStoreService(
        dataset_id=dataset, root=root, backend="json"
    ) as service:
        service.create_store(name, metadata={"owner": "me"}, policy="evict")

    [path] = (root / "execution_store").rglob("*.json")
    tree = json.loads(path.read_text("utf-8"))

    assert "~" in path.name  # the file name is shortened with a hash
    assert (tree["store_name"], tree["dataset_id"]) == (name, dataset)
    assert tree["store"]["metadata"] == {"owner": "me"}
    assert tree["store"]["policy"] == "evict"
    assert tree["keys"] == {}


def test_tagged_values_round_trip_through_the_file(json_service, root):
    moment = dt.datetime(2024, 2, 29, 23, 59, 59, 123456)
    value = {
        "raw": b"\x00\xff",
        "when": moment,
        "nan": math.nan,
        "inf": math.inf,
        "ninf": -math.inf,
        "looks_tagged": {"$bytes": "not bytes"},
        "pair": (1, 2),
        "big": 2**63 - 1,
    }

    json_service.set_key("s", "k", value)
    stored = _read_file(root)["keys"]["k"]["value"]
    with ExecutionStoreService(root=root, backend="json") as fresh:
        back = fresh.get_key("s", "k").value

    assert stored["raw"] == {"$bytes": "AP8="}
    assert stored["when"] == {"$date": "2024-02-29T23:59:59.123456"}
    assert stored["nan"] == {"$float": "NaN"}
    assert stored["looks_tagged"] == {"$dict": [["$bytes", "not bytes"]]}
    assert back["raw"] == b"\x00\xff"
    assert back["when"] == moment
    assert math.isnan(back["nan"])
    assert back["inf"] == math.inf == -back["ninf"]
    assert back["looks_tagged"] == {"$bytes": "not bytes"}
    assert back["pair"] == [1, 2]
    assert back["big"] == 2**63 - 1


def test_json_file_times_are_exact_to_the_microsecond(json_service, root):
    document = json_service.set_key("s", "k", 1, ttl=3600)

    record = _read_file(root)["keys"]["k"]
    with ExecutionStoreService(root=root, backend="json") as fresh:
        back = fresh.get_key("s", "k")

    assert record["created_at"] == document.created_at.isoformat() + "Z"
    assert record["expires_at"] == document.expires_at.isoformat() + "Z"
    assert (back.created_at, back.updated_at, back.expires_at) == (
        document.created_at,
        document.updated_at,
        document.expires_at,
    )


def test_a_hand_written_json_store_is_read_as_a_fixture(root):
    path = _store_file(root, store="fixture")
    path.parent.mkdir(parents=True)
    record = {
        "value": {"threshold": 0.5},
        "created_at": "2024-01-02T03:04:05.000006Z",
        "updated_at": "2024-01-02T03:04:05.000006Z",
        "expires_at": None,
        "policy": "persist",
    }
    tree = {
        "format": "localstore-store",
        "version": 1,
        "revision": 1,
        "store_name": "fixture",
        "dataset_id": None,
        "store": None,
        "keys": {"settings": record},
    }
    path.write_text(json.dumps(tree, indent=2), "utf-8")

    with ExecutionStoreService(root=root, backend="json") as service:
        document = service.get_key("fixture", "settings")

    assert document.value == {"threshold": 0.5}
    assert document.created_at == dt.datetime(2024, 1, 2, 3, 4, 5, 6)


def test_expired_keys_leave_the_file_on_the_next_write(json_service, root):
    json_service.set_key("s", "short", 1, ttl=0.05)
    json_service.set_key("s", "kept", 2)
    time.sleep(0.1)

    assert json_service.list_keys("s") == ["kept"]
    assert "short" in _read_file(root)["keys"]  # a read does not write

    json_service.set_key("s", "other", 3)

    assert sorted(_read_file(root)["keys"]) == ["kept", "other"]


def test_deleting_a_store_or_its_last_key_removes_its_file(json_service, root):
    json_service.set_key("s", "k", 1)
    json_service.set_key("t", "k", 1)

    json_service.delete_store("s")
    json_service.delete_key("t", "k")

    assert not _store_file(root, "s").exists()
    assert not _store_file(root, "t").exists()
    assert json_service.list_stores() == []
    json_service.set_key("s", "k", 2)
    assert json_service.get_key("s", "k").value == 2


def test_writes_leave_no_temporary_files(json_service, root):
    for i in range(20):
        json_service.set_key("s", f"k{i}", i)
    json_service.delete_key("s", "k0")

    names = sorted(os.listdir(_store_file(root).parent))

    assert names == ["s.json", "s.json.lock"]


@pytest.mark.skipif(not POSIX, reason="POSIX file modes")
def test_json_files_and_directories_are_private(json_service, root):
    umask = os.umask(0o022)
    os.umask(umask)

    json_service.set_key("s", "k", 1)

    assert _store_file(root).stat().st_mode & 0o777 == 0o600
    assert _store_file(root).parent.stat().st_mode & 0o777 == 0o700
    assert os.umask(umask) == umask  # the library left the umask alone


# Damaged files -----------------------------------------------------------------------


def _edited(change):
    return lambda text: json.dumps(change(json.loads(text)))


DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "empty": lambda text: "",
    "not_an_object": lambda text: "[]",
    "keys_a_list": _edited(lambda tree: {**tree, "keys": list(tree["keys"].values())}),
    "missing_field": _edited(lambda tree: {**tree, "keys": {"k": {"value": 1}}}),
    "bad_policy": lambda text: text.replace('"persist"', '"forever"'),
    "bad_time": lambda text: text.replace('Z"', '"', 1),
    "other_store": lambda text: text.replace('"store_name": "s"', '"store_name": "t"'),
    "newer_version": lambda text: text.replace('"version": 1', '"version": 99'),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_json_file_raises_and_is_left_as_it_is(json_service, root, damage):
    json_service.set_key("s", "k", 1)
    path = _store_file(root)
    path.write_text(DAMAGE[damage](path.read_text("utf-8")), "utf-8")
    before = path.read_bytes()

    with pytest.raises(CorruptStoreError) as read_error:
        json_service.get_key("s", "k")
    with pytest.raises(CorruptStoreError):
        json_service.set_key("s", "k", 2)
    with pytest.raises(CorruptStoreError):
        json_service.delete_store("s")

    assert read_error.value.path == str(path)
    assert str(path) in str(read_error.value)
    assert path.read_bytes() == before


# Locking and atomic writes across processes ------------------------------------------


@pytest.mark.timeout(60)
def test_another_process_writing_in_between_is_never_overwritten(root, file_backend):
    # Process 1 (this one) keeps its service open and has read the store.
    service = ExecutionStoreService(root=root, backend=file_backend)
    service.set_key("s", "x", 1)
    assert service.list_keys("s") == ["x"]

    _run_python(f"""
        from localstore import ExecutionStoreService
        service = ExecutionStoreService(root={str(root)!r}, backend={file_backend!r})
        service.delete_key("s", "x")
        service.set_key("s", "y", 2)
    """)
    service.set_key("s", "z", 3)
    service.close()

    with ExecutionStoreService(root=root, backend=file_backend) as fresh:
        assert fresh.list_keys("s") == ["y", "z"]


@pytest.mark.timeout(30)
def test_a_held_store_lock_times_writers_out_but_not_readers(json_service, root):
    json_service.set_key("s", "k", 1)
    impatient = ExecutionStoreService(root=root, backend="json", timeout=0.2)

    with FileLock(str(_store_file(root)) + ".lock"):
        with pytest.raises(LockTimeoutError) as error:
            impatient.set_key("s", "k", 2)
        if POSIX:  # readers on Windows take the lock too
            assert impatient.get_key("s", "k").value == 1

    assert isinstance(error.value, TimeoutError)
    assert impatient.get_key("s", "k").value == 1


_WRITER = """
import sys
from localstore import ExecutionStoreService
service = ExecutionStoreService(root=sys.argv[1], backend="json")
i = 0
while True:
    i += 1
    service.set_key("s", "big", [i] * 50_000)
"""


@pytest.mark.timeout(60)
def test_readers_see_whole_values_while_another_process_writes(json_service):
    json_service.set_key("s", "big", [0] * 50_000)
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, json_service.root])
    try:
        seen = set()
        deadline = time.monotonic() + 30
        while len(seen) < 4 and time.monotonic() < deadline:
            value = json_service.get_key("s", "big").value
            assert value == [value[0]] * 50_000  # whole, from one write
            seen.add(value[0])
    finally:
        writer.kill()
        writer.wait()

    assert len(seen) == 4  # the writer replaced the file three times as we read


@pytest.mark.skipif(not POSIX, reason="SIGKILL")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("delay", [0.3, 0.6, 0.9])
def test_a_writer_killed_mid_write_leaves_the_old_or_the_new_file(json_service, delay):
    json_service.set_key("s", "big", [0] * 50_000)
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, json_service.root])
    time.sleep(delay)
    writer.send_signal(signal.SIGKILL)
    writer.wait()

    value = json_service.get_key("s", "big").value

    assert value == [value[0]] * 50_000  # whole, from one write
    json_service.set_key("s", "after", 1)  # the lock is free again
    assert json_service.list_keys("s") == ["after", "big"]


# The memory backend ------------------------------------------------------------------


def test_memory_stores_are_shared_by_services_of_one_root_and_collection(
    root, tmp_path
):
    scoped = ExecutionStoreService(dataset_id="d1", root=root, backend="memory")
    scoped.set_key("s", "k", 1)

    same = ExecutionStoreService(root=root, backend="memory")
    other_root = ExecutionStoreService(root=tmp_path / "other", backend="memory")
    other_collection = ExecutionStoreService(
        collection_name="other", root=root, backend="memory"
    )

    assert same.has_store_global("s")
    assert [(d.dataset_id, d.store_name) for d in same.list_stores_global()] == [
        ("d1", "s")
    ]
    assert (
        ExecutionStoreService(dataset_id="d1", root=root, backend="memory")
        .get_key("s", "k")
        .value
        == 1
    )
    assert not other_root.has_store_global("s")
    assert not other_collection.has_store_global("s")
    assert os.listdir(root) == []  # no files at all


def test_memory_values_are_copied_in_both_directions(root):
    service = ExecutionStoreService(root=root, backend="memory")
    value = {"items": [1, 2], "pair": (3, 4)}

    service.set_key("s", "k", value)
    value["items"].append(99)
    first = service.get_key("s", "k").value
    first["items"].append(100)

    assert service.get_key("s", "k").value == {"items": [1, 2], "pair": [3, 4]}
    with pytest.raises(InvalidValueError):
        service.set_key("s", "bad", {1, 2})
    assert service.list_keys("s") == ["k"]


def test_memory_stores_are_gone_in_another_process(root):
    ExecutionStoreService(root=root, backend="memory").set_key("s", "k", 1)

    _run_python(f"""
        from localstore import ExecutionStoreService
        service = ExecutionStoreService(root={str(root)!r}, backend="memory")
        assert service.list_stores() == [], service.list_stores()
    """)


def _json_store(tmp_path: Path) -> tuple[ExecutionStoreService, Path]:
    service = ExecutionStoreService(root=tmp_path, backend="json")
    service.set_key("p", "k", 1)
    service.set_key("other", "k", 2)
    return service, Path(service.repo.store_path(None, "p"))


@pytest.mark.parametrize(
    ("find", "replace"),
    [
        ('"value": 1', '"value": NaN'),
        ('"value": 1', '"value": {"$bytes": "!!"}'),
        ('"value": 1', '"value": {"$date": "yesterday"}'),
        ('"k":', '"__store__":'),
        ('"k":', '"":'),
    ],
)
def test_hand_damaged_json_value_raises_corrupt_store_error(tmp_path, find, replace):
    service, path = _json_store(tmp_path)
    text = path.read_text()
    assert find in text
    path.write_text(text.replace(find, replace, 1))
    damaged = path.read_bytes()

    with pytest.raises(CorruptStoreError):
        service.get_key("p", "k")
    with pytest.raises(CorruptStoreError, match="left as it is"):
        service.set_key("p", "k2", 1)

    assert service.get_key("other", "k").value == 2
    assert path.read_bytes() == damaged


@pytest.mark.parametrize("replace", ['"value": NaN', '"value": Infinity'])
def test_json_file_with_non_strict_json_is_not_rewritten(tmp_path, replace):
    service, path = _json_store(tmp_path)
    path.write_text(path.read_text().replace('"value": 1', replace, 1))
    damaged = path.read_bytes()

    with pytest.raises(CorruptStoreError, match="strict JSON"):
        service.set_key("p", "k2", 1)

    assert service.list_stores() == ["other"]
    assert path.read_bytes() == damaged


@pytest.mark.parametrize(
    "replace", ['"value": 18446744073709551616', '"value": {"$dict": [[1, 2]]}']
)
def test_json_write_refuses_to_carry_an_unstorable_hand_written_value(
    tmp_path, replace
):
    service, path = _json_store(tmp_path)
    path.write_text(path.read_text().replace('"value": 1', replace, 1))
    damaged = path.read_bytes()

    with pytest.raises(CorruptStoreError, match="under key 'k'"):
        service.set_key("p", "k2", 1)

    assert path.read_bytes() == damaged


def test_json_file_rewritten_after_a_reused_parse_holds_every_change(root):
    service = ExecutionStoreService(root=root, backend="json")
    service.set_keys("s", {"a": 1, "b": 2, "c": 3})
    service.set_key("s", "a", 1)  # a second write, from the parse kept after the first

    service.set_key("s", "a", "changed")
    service.update_ttl("s", "b", 3600)
    service.delete_key("s", "c")

    keys = _read_file(root)["keys"]
    assert sorted(keys) == ["a", "b"]
    assert keys["a"]["value"] == "changed"
    assert keys["b"]["value"] == 2
    assert keys["b"]["expires_at"] is not None


def test_json_value_loaded_without_a_check_is_refused_by_the_next_write(tmp_path):
    service, path = _json_store(tmp_path)
    now = time.time_ns() // 1000
    damaged = KeyRecord("bad", '{"$bytes":"!!"}', now, now, None, "persist")
    service.repo.load_store(None, "p", None, [damaged], now, replace=False)
    written = path.read_bytes()

    with pytest.raises(CorruptStoreError, match="under key 'bad'"):
        service.set_key("p", "k2", 1)

    assert path.read_bytes() == written


def test_json_write_failing_half_way_changes_nothing_readers_see(tmp_path):
    service, path = _json_store(tmp_path)
    assert service.get_value("p", "k") == 1
    now = time.time_ns() // 1000
    records = [
        KeyRecord("k", "5", now, now, None, "persist"),
        KeyRecord("k2", "not JSON", now, now, None, "persist"),
    ]
    before = path.read_bytes()

    with pytest.raises(ValueError, match="Expecting value"):
        service.repo.load_store(None, "p", None, records, now, replace=True)

    assert service.get_value("p", "k") == 1
    assert service.list_keys("p") == ["k"]
    assert path.read_bytes() == before


def test_json_writer_removes_temporary_files_of_killed_writers(tmp_path):
    service, path = _json_store(tmp_path)
    abandoned = Path(f"{path}.{'0' * 32}.tmp")
    abandoned.write_bytes(b"{half a file")
    unrelated = path.parent / "notes.tmp"
    unrelated.write_text("mine")

    service.set_key("p", "k", 3)

    assert not abandoned.exists()
    assert unrelated.read_text() == "mine"
    assert service.get_key("p", "k").value == 3


@pytest.mark.parametrize(
    "delete",
    [
        lambda service: service.delete_store("p"),
        lambda service: service.delete_key("p", "k"),
    ],
    ids=["delete_store", "delete_key"],
)
def test_json_deleting_a_store_removes_temporary_files_of_killed_writers(
    tmp_path, delete
):
    service, path = _json_store(tmp_path)
    abandoned = Path(f"{path}.{'0' * 32}.tmp")
    abandoned.write_bytes(b"{half a file")

    delete(service)

    assert not path.exists()
    assert not abandoned.exists()


def test_sqlite_creation_removes_temporary_files_of_killed_creators(tmp_path):
    service = ExecutionStoreService(root=tmp_path)
    service.set_key("first", "k", 1)
    directory = Path(service.repo.context_dir(None))
    abandoned = [directory / f"s.sqlite.{'a' * 32}.tmp{end}" for end in ("", "-wal")]
    for file in abandoned:
        file.write_bytes(b"half")

    service.set_key("second", "k", 2)

    assert not any(file.exists() for file in abandoned)
    assert service.get_key("first", "k").value == 1
