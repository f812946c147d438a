"""The MongoDB backend against a real mongod: FiftyOne's layout, atomicity, push/pull.

The behavioural suite runs on this backend through the ``backend`` fixture; these
tests read the raw documents with pymongo to check what FiftyOne would see, and
race real processes. They need ``$LOCALSTORE_MONGODB_URI`` (``.ci/run`` starts a
server); each test gets its own database (see ``conftest.py``).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localstore import (
    ExecutionStoreService,
    InvalidArgumentError,
    InvalidValueError,
    StoreIOError,
)
from localstore._backends import open_backend
from localstore._transfer import pull, push
from localstore._validate import now_micros

from .conftest import MONGODB_URI

if not MONGODB_URI:
    pytest.skip(
        "no MongoDB server: set LOCALSTORE_MONGODB_URI (.ci/run starts one)",
        allow_module_level=True,
    )
bson = pytest.importorskip("bson")

DATASET = "66b1c0ffee66b1c0ffee0001"
FIELDS = [
    "_id",
    "store_name",
    "key",
    "dataset_id",
    "value",
    "created_at",
    "updated_at",
    "expires_at",
    "policy",
]


@pytest.fixture
def raw(mongodb_client):
    """The test database's ``execution_store`` collection, read with pymongo."""
    return mongodb_client[os.environ["LOCALSTORE_MONGODB_DATABASE"]]["execution_store"]


@pytest.fixture
def mongo(root):
    """A mongodb service in the context of the dataset ``DATASET``."""
    with ExecutionStoreService(dataset_id=DATASET, root=root, backend="mongodb") as s:
        yield s


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


# Layout -----------------------------------------------------------------------------


def test_key_document_has_fiftyones_fields_and_native_values(mongo, raw):
    value = {
        "list": [1, 2.5, None],
        "bytes": b"\x00\x01",
        "when": dt.datetime(2024, 1, 2),
    }

    mongo.set_key("s", "k", value, ttl=60)

    doc = raw.find_one({"key": "k"})
    assert sorted(doc) == sorted(FIELDS)
    assert doc["store_name"] == "s"
    assert doc["dataset_id"] == bson.ObjectId(DATASET)
    assert doc["value"] == value
    assert doc["policy"] == "evict"
    assert doc["created_at"] == doc["updated_at"]
    assert doc["expires_at"] - doc["created_at"] == dt.timedelta(seconds=60)


def test_store_document_is_keyed_store_with_metadata_as_value(mongo, raw):
    mongo.create_store("s", metadata={"owner": "me"}, policy="evict")

    doc = raw.find_one({"store_name": "s"})
    assert sorted(doc) == sorted(FIELDS)
    assert doc["key"] == "__store__"
    assert doc["value"] == {"owner": "me"}
    assert doc["updated_at"] is None
    assert doc["expires_at"] is None
    assert doc["policy"] == "evict"


def test_collection_has_fiftyones_indexes(mongo, raw):
    mongo.set_key("s", "k", 1)

    indexes = {index["name"]: index for index in raw.list_indexes()}
    unique = indexes["unique_store_index"]
    assert list(unique["key"].items()) == [
        ("store_name", 1),
        ("key", 1),
        ("dataset_id", 1),
    ]
    assert unique["unique"] is True
    assert indexes["expires_at"]["expireAfterSeconds"] == 0
    for name in ("store_name", "key", "dataset_id", "policy", "updated_at"):
        assert name in indexes


@pytest.mark.parametrize(
    ("dataset_id", "stored"),
    [
        (None, None),
        ("plain-name", "plain-name"),
        (DATASET.upper(), DATASET.upper()),
        (DATASET, bson.ObjectId(DATASET)),
    ],
)
def test_dataset_id_is_an_object_id_only_for_lowercase_hex(
    root, raw, dataset_id, stored
):
    service = ExecutionStoreService(dataset_id=dataset_id, root=root, backend="mongodb")

    service.set_key("s", "k", 1)

    assert raw.find_one({"key": "k"})["dataset_id"] == stored
    assert service.repo.list_contexts() == [None if stored is None else str(stored)]


def test_object_id_and_its_hex_string_are_one_context(root):
    by_id = ExecutionStoreService(
        dataset_id=bson.ObjectId(DATASET), root=root, backend="mongodb"
    )
    by_hex = ExecutionStoreService(dataset_id=DATASET, root=root, backend="mongodb")

    by_id.set_key("s", "k", "v")

    assert by_hex.get_key("s", "k").value == "v"


def test_keys_with_dollars_and_dots_are_stored_as_data(mongo, raw):
    value = {"$bytes": "not bytes", "a.b": {"$oid": 1}, "": "$notafield"}

    mongo.set_key("s", "k", value)

    assert raw.find_one({"key": "k"})["value"] == value
    assert mongo.get_key("s", "k").value == value


def test_timestamps_are_cut_to_milliseconds_and_read_back_alike(mongo, raw):
    written = mongo.set_key("s", "k", 1, ttl=10)

    read = mongo.get_key("s", "k")

    assert written.created_at.microsecond % 1000 == 0
    assert read.created_at == written.created_at == raw.find_one()["created_at"]
    assert read.expires_at == written.expires_at


# Reading what FiftyOne wrote ---------------------------------------------------------


def _fiftyone_doc(key, value, *, expires_at=None, policy="persist", **fields):
    now = _utcnow().replace(microsecond=0)
    doc = {
        "store_name": "s",
        "key": key,
        "value": value,
        "dataset_id": bson.ObjectId(DATASET),
        "created_at": now,
        "updated_at": now,
        "expires_at": expires_at,
        "policy": policy,
    }
    doc.update(fields)
    return doc


def test_documents_written_like_fiftyone_are_read(mongo, raw):
    mongo.set_key("s", "first", 0)  # creates the indexes
    raw.insert_many(
        [
            _fiftyone_doc("__store__", {"version": 2}, updated_at=None),
            _fiftyone_doc("k", {"n": bson.Int64(7)}),
        ]
    )

    assert mongo.get_key("s", "k").value == {"n": 7}
    assert mongo.get_store("s").metadata == {"version": 2}
    assert mongo.list_keys("s") == ["first", "k"]


def test_global_documents_without_dataset_id_are_in_the_global_context(root, raw):
    service = ExecutionStoreService(root=root, backend="mongodb")
    service.count_keys("s")  # creates the indexes
    doc = _fiftyone_doc("k", "old")
    del doc["dataset_id"]  # as FiftyOne's versions of 2024 wrote global keys
    raw.insert_one(doc)

    assert service.get_key("s", "k").value == "old"
    assert [(d.store_name, d.dataset_id) for d in service.list_stores_global()] == [
        ("s", None)
    ]


def test_missing_policy_follows_expiry_as_in_fiftyone(mongo, raw):
    later = _utcnow() + dt.timedelta(hours=1)
    raw.insert_one(_fiftyone_doc("k", 1, expires_at=later))
    raw.update_one({"key": "k"}, {"$unset": {"policy": ""}})

    assert mongo.get_key("s", "k").policy == "evict"


def test_expired_document_is_absent_before_the_ttl_monitor_deletes_it(mongo, raw):
    earlier = _utcnow() - dt.timedelta(seconds=5)
    raw.insert_one(_fiftyone_doc("k", 1, expires_at=earlier, policy="evict"))

    assert mongo.get_key("s", "k") is None
    assert mongo.list_keys("s") == []
    assert mongo.count_keys("s") == 0
    assert mongo.list_stores() == []
    assert raw.count_documents({}) == 1
    assert mongo.set_key_if_absent("s", "k", 2) is True
    assert raw.find_one({"key": "k"})["value"] == 2


def test_value_of_a_type_localstore_cannot_hold_raises_corrupt_store(mongo, raw):
    from localstore import CorruptStoreError

    raw.insert_one(_fiftyone_doc("k", bson.Decimal128("1.5")))

    with pytest.raises(CorruptStoreError, match="'k'"):
        mongo.get_key("s", "k")


# Bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"uri": "http://127.0.0.1"}, "uri must be"),
        ({"uri": "mongodb://127.0.0.1", "database": "has.dot"}, "database"),
        ({"uri": "mongodb://127.0.0.1", "database": ""}, "database"),
        ({"uri": "mongodb://127.0.0.1", "collection_name": "system.x"}, "system."),
        ({"uri": "mongodb://127.0.0.1", "collection_name": "a$b"}, "collection_name"),
    ],
)
def test_bad_connection_arguments_raise_before_anything_is_written(
    root, options, message
):
    with pytest.raises(InvalidArgumentError, match=message):
        ExecutionStoreService(root=root, backend="mongodb", **options)


def test_uri_for_a_local_backend_raises(root):
    with pytest.raises(InvalidArgumentError, match="'mongodb' only"):
        ExecutionStoreService(root=root, uri=MONGODB_URI)


@pytest.mark.timeout(30)
def test_unreachable_server_raises_store_io_error_without_the_password(root):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"mongodb://user:s3cret@127.0.0.1:{port}/"
    service = ExecutionStoreService(root=root, backend="mongodb", uri=uri, timeout=0.5)

    with pytest.raises(StoreIOError) as raised:
        service.get_key("s", "k")

    assert "s3cret" not in str(raised.value)
    assert "127.0.0.1" in str(raised.value)


@pytest.mark.timeout(60)
def test_value_too_large_as_bson_raises_and_writes_nothing(mongo, raw):
    zeros = [0] * 2_000_000  # about 4 MB of JSON, about 26 MB of BSON

    with pytest.raises(InvalidValueError, match="BSON"):
        mongo.set_key("s", "k", zeros)

    assert raw.count_documents({}) == 0


# Atomicity across processes ---------------------------------------------------------

_RACER = """
import os, sys, time
from localstore import ExecutionStoreService
service = ExecutionStoreService(backend="mongodb", dataset_id=sys.argv[2])
service.get_key("s", "warm-up")
open(sys.argv[1] + f"-ready-{os.getpid()}", "w").close()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.001)
if sys.argv[3] == "absent":
    print(service.set_key_if_absent("s", "lock", os.getpid()))
else:
    for _ in range(int(sys.argv[4])):
        while True:
            current = service.get_key("s", "n").value
            if service.compare_and_set_key("s", "n", current, current + 1):
                break
    print("done")
"""


def _race(tmp_path: Path, count: int, *args: str) -> list[str]:
    """Start ``count`` racers, release them at once and return their outputs."""
    go = tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(go), DATASET, *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    while len(list(tmp_path.glob("go-ready-*"))) < count:
        time.sleep(0.01)  # until every racer has imported and connected
    go.touch()
    return [racer.communicate(timeout=60)[0].strip() for racer in racers]


@pytest.mark.timeout(120)
def test_set_key_if_absent_racing_in_six_processes_has_one_winner(mongo, raw, tmp_path):
    outcomes = _race(tmp_path, 6, "absent")

    assert sorted(outcomes) == ["False"] * 5 + ["True"]
    assert raw.count_documents({"key": "lock"}) == 1


@pytest.mark.timeout(120)
def test_compare_and_set_from_four_processes_loses_no_increment(mongo, tmp_path):
    mongo.set_key("s", "n", 0)

    outcomes = _race(tmp_path, 4, "cas", "50")

    assert outcomes == ["done"] * 4
    assert mongo.get_key("s", "n").value == 200


# Push and pull ----------------------------------------------------------------------

_VALUES = {
    "nested": {"list": [1, 2.5, None, True], "text": "héllo", "$odd": {"a.b": 1}},
    "bytes": b"\x00\xff",
    "when": dt.datetime(2024, 2, 29, 12, 30, 0, 123000),
    "nan_free": [float("inf"), -1.0],
    "oid": bson.ObjectId(DATASET),
}


def _fill(root: Path) -> None:
    """Write stores in three contexts, with metadata, TTLs and both policies."""
    for dataset_id in (None, DATASET, "plain"):
        service = ExecutionStoreService(dataset_id=dataset_id, root=root)
        service.create_store("a", metadata={"owner": dataset_id}, policy="evict")
        service.set_keys("a", _VALUES)
        service.set_key("a", "cached", [1], ttl=3600)
        service.set_cache_key("b", "entry", "x")


def _snapshot(repo, contexts=(None, DATASET, "plain")):
    """Every store of every context, as dumped, timestamps cut to milliseconds."""
    now = now_micros()

    def ms(value):
        return None if value is None else value - value % 1000

    result = {}
    for context in contexts:
        for store in repo.list_stores(context, now):
            document, keys = repo.dump_store(context, store, now)
            if document is not None:
                document = document._replace(
                    created_at=ms(document.created_at),
                    updated_at=ms(document.updated_at),
                )
            result[(context, store)] = (
                document,
                [
                    k._replace(
                        created_at=ms(k.created_at),
                        updated_at=ms(k.updated_at),
                        expires_at=ms(k.expires_at),
                    )
                    for k in keys
                ],
            )
    return result


def test_push_then_pull_into_a_new_root_loses_nothing(tmp_path, mongodb_client):
    source, target = tmp_path / "source", tmp_path / "target"
    _fill(source)

    pushed = push(MONGODB_URI, root=source)
    pulled = pull(MONGODB_URI, root=target)

    assert pushed == pulled
    assert len(pushed) == 6
    assert pushed[("execution_store", DATASET, "a")] == len(_VALUES) + 1
    assert _snapshot(open_backend("sqlite", target)) == _snapshot(
        open_backend("sqlite", source)
    )


def test_pushed_stores_read_as_fiftyone_documents(tmp_path, raw):
    _fill(tmp_path)

    push(MONGODB_URI, root=tmp_path)

    doc = raw.find_one({"key": "when", "dataset_id": bson.ObjectId(DATASET)})
    assert doc["value"] == _VALUES["when"]
    assert raw.count_documents({"key": "__store__"}) == 3
    assert raw.count_documents({}) == 3 * (1 + len(_VALUES) + 1 + 1)


def test_push_and_pull_twice_change_nothing(tmp_path, raw):
    _fill(tmp_path / "source")
    push(MONGODB_URI, root=tmp_path / "source")
    first = sorted(raw.find({}), key=lambda d: d["_id"])
    pull(MONGODB_URI, root=tmp_path / "target")
    pulled = _snapshot(open_backend("sqlite", tmp_path / "target"))

    push(MONGODB_URI, root=tmp_path / "source")
    pull(MONGODB_URI, root=tmp_path / "target")

    assert sorted(raw.find({}), key=lambda d: d["_id"]) == first
    assert _snapshot(open_backend("sqlite", tmp_path / "target")) == pulled


def test_push_copies_only_the_selected_contexts_and_stores(tmp_path, raw):
    _fill(tmp_path)
    seen = []

    written = push(
        MONGODB_URI,
        root=tmp_path,
        dataset_ids=[DATASET, None],
        stores=["b"],
        progress=lambda *args: seen.append(args),
    )

    assert sorted(written, key=str) == sorted(
        [("execution_store", None, "b"), ("execution_store", DATASET, "b")], key=str
    )
    assert sorted(seen, key=str) == sorted(
        [("execution_store", None, "b", 1), ("execution_store", DATASET, "b", 1)],
        key=str,
    )
    assert sorted(raw.distinct("store_name")) == ["b"]


def test_push_without_replace_keeps_the_targets_keys(tmp_path, mongo):
    _fill(tmp_path)
    mongo.set_key("a", "nested", "kept")

    written = push(MONGODB_URI, root=tmp_path, dataset_ids=[DATASET], replace=False)

    assert mongo.get_key("a", "nested").value == "kept"
    assert mongo.get_key("a", "bytes").value == _VALUES["bytes"]
    assert written[("execution_store", DATASET, "a")] == len(_VALUES)


def test_push_to_a_bad_uri_raises_and_writes_nothing(tmp_path):
    _fill(tmp_path)

    with pytest.raises(InvalidArgumentError, match="uri"):
        push("localhost:27017", root=tmp_path)


def test_push_from_a_root_that_does_not_exist_raises_naming_it(tmp_path):
    missing = tmp_path / "no-such-root"

    with pytest.raises(StoreIOError, match="no-such-root does not exist"):
        push(MONGODB_URI, root=missing, collections=["execution_store"])

    assert not missing.exists()


def test_pull_into_a_root_that_does_not_exist_yet_makes_it(tmp_path, root):
    ExecutionStoreService(root=root, backend="mongodb").set_key("s", "k", 1)
    target = tmp_path / "new" / "root"

    pull(MONGODB_URI, root=target)

    assert ExecutionStoreService(root=target).get_value("s", "k") == 1


# Command line -----------------------------------------------------------------------


def test_cli_push_from_a_root_that_does_not_exist_exits_1_naming_it(tmp_path, capsys):
    from localstore._cli import main

    missing = tmp_path / "typo"

    status = main(["--root", str(missing), "push", "--to", MONGODB_URI])

    out, err = capsys.readouterr()
    assert status == 1
    assert out == ""
    assert f"the root {missing} does not exist" in err


def test_cli_push_then_pull_reports_progress_and_a_summary(tmp_path, capsys):
    from localstore._cli import main

    _fill(tmp_path / "source")

    pushed = main(["push", "--to", MONGODB_URI, "--root", str(tmp_path / "source")])
    push_out, push_err = capsys.readouterr()
    pulled = main(
        [
            "pull",
            "b",
            "--from",
            MONGODB_URI,
            "--root",
            str(tmp_path / "target"),
            "--dataset",
            DATASET,
            "--json",
        ]
    )
    pull_out, _ = capsys.readouterr()

    assert pushed == pulled == 0
    assert push_out == "pushed 21 keys in 6 stores\n"  # 3 x (6 in a, 1 in b)
    assert f"pushed execution_store/{DATASET}/a: 6 keys" in push_err
    assert "pushed execution_store/(global)/b: 1 key\n" in push_err
    assert json.loads(pull_out)["copied"] == [
        {
            "collection": "execution_store",
            "dataset_id": DATASET,
            "store_name": "b",
            "keys": 1,
        }
    ]
    target = ExecutionStoreService(dataset_id=DATASET, root=tmp_path / "target")
    assert target.list_stores() == ["b"]
    assert target.get_key("b", "entry").policy == "evict"


def test_cli_push_from_the_mongodb_backend_fails_with_one_line(tmp_path, capsys):
    from localstore._cli import main

    status = main(
        ["push", "--to", MONGODB_URI, "--root", str(tmp_path), "--backend", "mongodb"]
    )

    assert status == 1
    assert capsys.readouterr().err.startswith("localstore: backend must be a local")


def test_cli_push_leaves_out_a_store_mongodb_cannot_hold_and_exits_1(
    tmp_path, capsys, raw
):
    from localstore._cli import main

    service = ExecutionStoreService(root=tmp_path, backend="json")
    service.set_key("a_ok", "k", 1)
    service.set_key("b_big", "big", list(range(1_500_000)))  # 16 MB JSON, more as BSON
    service.set_key("c_ok", "k", 1)
    args = ["--root", str(tmp_path), "--backend", "json", "push", "--to", MONGODB_URI]

    status = main(args)

    out, err = capsys.readouterr()
    assert status == 1
    assert out == "pushed 2 keys in 2 stores\n"
    warning = "localstore: warning: not copying store 'b_big' of collection"
    assert warning in err
    assert "key 'big': value is" in err
    assert err.endswith("localstore: 1 store left out\n")
    assert sorted(raw.distinct("store_name")) == ["a_ok", "c_ok"]


@pytest.mark.parametrize("command", ["push", "pull"])
def test_cli_push_or_pull_of_a_store_that_is_not_there_exits_1(
    tmp_path, capsys, command
):
    from localstore._cli import main

    ExecutionStoreService(root=tmp_path).set_key("real", "k", 1)
    direction = "--to" if command == "push" else "--from"

    status = main(["--root", str(tmp_path), command, "nosuch", direction, MONGODB_URI])

    assert status == 1
    assert "localstore: no store 'nosuch' in the " in capsys.readouterr().err


@pytest.mark.parametrize("command", ["push", "pull"])
def test_cli_push_or_pull_waits_for_a_server_as_long_as_the_timeout(
    tmp_path, capsys, command
):
    import socket

    from localstore._cli import main

    with socket.socket() as probe:  # a port on which nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ExecutionStoreService(root=tmp_path).set_key("real", "k", 1)
    direction = "--to" if command == "push" else "--from"
    uri = f"mongodb://127.0.0.1:{port}"
    args = ["--root", str(tmp_path), "--timeout", "0.5", command, direction, uri]

    status = main(args)

    assert status == 1
    assert "no MongoDB server answered within 0.5 s" in capsys.readouterr().err


def test_a_policy_mongodb_holds_that_is_not_persist_or_evict_is_damage(mongo, raw):
    from localstore import CorruptStoreError

    mongo.set_key("s", "k", 1)
    mongo.set_key("s", "fine", 2)
    raw.update_one({"store_name": "s", "key": "k"}, {"$set": {"policy": "bogus"}})

    with pytest.raises(CorruptStoreError, match="policy 'bogus'"):
        mongo.get_key("s", "k")
    assert mongo.get_key("s", "fine").value == 2


def test_cli_push_names_the_key_of_a_value_damaged_by_hand(tmp_path, capsys, raw):
    import sqlite3

    from localstore._cli import main

    service = ExecutionStoreService(root=tmp_path)
    service.set_keys("b", {"k1": 1, "k2": 2})
    service.set_key("c", "k", 3)
    conn = sqlite3.connect(service.repo.store_path(None, "b"))
    with conn:
        conn.execute("UPDATE keys SET value = '{bad' WHERE key = 'k2'")
    conn.close()

    status = main(["--root", str(tmp_path), "push", "--to", MONGODB_URI])

    err = capsys.readouterr().err
    assert status == 1
    assert "not copying store 'b'" in err
    assert "key 'k2' of store 'b': a stored value is damaged" in err
    assert raw.distinct("store_name") == ["c"]


def test_cli_sweep_dry_run_leaves_out_a_damaged_store_and_counts_the_rest(
    root, capsys, raw
):
    from localstore._cli import main

    service = ExecutionStoreService(root=root, backend="mongodb")
    for store in ("a", "bad"):
        service.set_key(store, "gone", 1, ttl=1e-3)
    time.sleep(0.01)
    raw.update_one({"store_name": "bad"}, {"$set": {"created_at": None}})

    status = main(["--backend", "mongodb", "--json", "sweep", "--dry-run"])

    out, err = capsys.readouterr()
    assert status == 1
    counted = json.loads(out)
    assert [s["store_name"] for s in counted["stores"]] == ["a"]
    assert counted["left_out"] == 1
    assert "not counting store 'bad'" in err


# Transactions on a replica set ------------------------------------------------------


@pytest.fixture(scope="module")
def replica_set_uri(tmp_path_factory):
    """A one-member replica set of its own, run by the mongod ``.ci/run`` fetched."""
    binary = os.environ.get("LOCALSTORE_MONGOD")
    if not binary:
        pytest.skip("no mongod binary to start a replica set: LOCALSTORE_MONGOD unset")
    spec = importlib.util.spec_from_file_location(
        "mongod_script", Path(__file__).parent.parent / "scripts" / "mongod.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    process, port = script.start(
        Path(binary), tmp_path_factory.mktemp("replica-set") / "db", replica_set="rs0"
    )
    yield f"mongodb://127.0.0.1:{port}/?replicaSet=rs0"
    script.stop(process.pid)
    process.wait(timeout=30)


def _refuse_key(uri: str, key: str) -> None:
    """Make the server reject documents with ``key``, as a schema validator does."""
    import pymongo

    with pymongo.MongoClient(uri) as client:
        client[os.environ["LOCALSTORE_MONGODB_DATABASE"]].create_collection(
            "execution_store",
            validator={
                "$jsonSchema": {"properties": {"key": {"not": {"enum": [key]}}}}
            },
        )


@pytest.mark.timeout(120)
def test_set_keys_on_a_replica_set_writes_all_or_nothing(root, replica_set_uri):
    _refuse_key(replica_set_uri, "refused")
    service = ExecutionStoreService(root=root, backend="mongodb", uri=replica_set_uri)

    with pytest.raises(StoreIOError, match="validation"):
        service.set_keys("s", {"a": 1, "refused": 2, "c": 3})
    service.set_keys("t", {"a": 1, "c": 3})

    assert service.list_keys("s") == []
    assert service.list_keys("t") == ["a", "c"]


@pytest.mark.timeout(120)
def test_set_keys_on_a_standalone_server_keeps_what_was_written(root):
    _refuse_key(MONGODB_URI, "refused")
    service = ExecutionStoreService(root=root, backend="mongodb")

    with pytest.raises(StoreIOError, match="validation"):
        service.set_keys("s", {"a": 1, "refused": 2, "c": 3})

    assert service.list_keys("s") == ["a", "c"]  # README, Known limitations


@pytest.mark.timeout(120)
def test_push_and_pull_through_a_replica_set_lose_nothing(tmp_path, replica_set_uri):
    _fill(tmp_path / "source")

    push(replica_set_uri, root=tmp_path / "source")
    pull(replica_set_uri, root=tmp_path / "target")

    assert _snapshot(open_backend("sqlite", tmp_path / "target")) == _snapshot(
        open_backend("sqlite", tmp_path / "source")
    )
