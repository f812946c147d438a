"""copy_root: every store of a root, copied between backends without loss."""

from __future__ import annotations

import datetime as dt
import errno
import logging
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localstore import (
    ArgumentTypeError,
    ExecutionStoreService,
    InvalidArgumentError,
    StoreIOError,
    copy_root,
)
from localstore._backends import open_backend
from localstore._validate import now_micros

DATASET = "66b1c0ffee000000000000aa"
LONG_DATASET = "d" * 400  # its directory name is shortened with a hash
COLLECTIONS = ["execution_store", "other"]


def _fill(root, backend):
    """Write stores of every kind into two collections and three contexts."""
    moment = dt.datetime(2024, 2, 29, 23, 59, 59, 123456)
    for collection in COLLECTIONS:
        for dataset_id in (None, DATASET, LONG_DATASET):
            with ExecutionStoreService(
                dataset_id=dataset_id,
                collection_name=collection,
                root=root,
                backend=backend,
            ) as service:
                service.create_store(
                    "with_doc", metadata={"raw": b"\x01", "when": moment, "x": math.nan}
                )
                service.set_key("with_doc", "typed", _typed_value(moment))
                service.set_key("with_doc", "twice", 1)
                service.set_key("with_doc", "twice", 2)  # updated_at after created_at
                service.set_key("with_doc", "ttl", "soon", ttl=3600)
                service.set_cache_key("with_doc", "cache", [1, 2])
                service.update_policy("with_doc", "twice", "evict")
                service.create_store("evict_doc", policy="evict")
                service.set_key("keys_only", "k", None)
                service.set_key("S" * 300, "long store name", True)


def _typed_value(moment):
    return {
        "bytes": b"\x00\xff",
        "datetime": moment,
        "nan": math.nan,
        "inf": -math.inf,
        "tuple": (1, (2, 3)),
        "tagged_lookalike": {"$date": "not a date"},
        "unicode": "caf\u00e9 \U0001f642",
        "big": -(2**63),
        "float": 0.1,
    }


def _snapshot(root, backend):
    """Return every store of the root as its backend dumps it, exactly."""
    now = now_micros()
    stores = {}
    for collection in COLLECTIONS:
        repo = open_backend(backend, root, collection)
        for context in repo.list_contexts():
            for store in repo.list_stores(context, now):
                stores[(collection, context, store)] = repo.dump_store(
                    context, store, now
                )
        repo.close()
    return stores


def test_sqlite_to_json_and_back_keeps_every_document_exactly(tmp_path):
    original, readable, again = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _fill(original, "sqlite")
    expected = _snapshot(original, "sqlite")

    to_json = copy_root(original, readable)
    to_sqlite = copy_root(
        readable, again, source_backend="json", target_backend="sqlite"
    )

    assert len(expected) == 2 * 3 * 4
    assert _snapshot(readable, "json") == expected
    assert _snapshot(again, "sqlite") == expected
    assert set(to_json) == set(to_sqlite) == set(expected)
    assert to_json[("other", DATASET, "with_doc")] == 4


def test_copied_values_read_back_with_their_types(tmp_path):
    _fill(tmp_path / "a", "sqlite")

    copy_root(tmp_path / "a", tmp_path / "b")
    service = ExecutionStoreService(
        dataset_id=LONG_DATASET, root=tmp_path / "b", backend="json"
    )
    value = service.get_key("with_doc", "typed").value
    metadata = service.get_store("with_doc").metadata

    assert value["bytes"] == b"\x00\xff"
    assert value["datetime"] == dt.datetime(2024, 2, 29, 23, 59, 59, 123456)
    assert math.isnan(value["nan"])
    assert value["inf"] == -math.inf
    assert value["tuple"] == [1, [2, 3]]
    assert value["tagged_lookalike"] == {"$date": "not a date"}
    assert value["big"] == -(2**63)
    assert metadata["raw"] == b"\x01"
    assert service.get_key("with_doc", "twice").policy == "evict"


def test_memory_stores_copy_to_json_files_and_back(tmp_path):
    _fill(tmp_path / "mem", "memory")
    expected = _snapshot(tmp_path / "mem", "memory")

    copy_root(tmp_path / "mem", tmp_path / "files", source_backend="memory")
    copy_root(
        tmp_path / "files",
        tmp_path / "mem2",
        source_backend="json",
        target_backend="memory",
    )

    assert _snapshot(tmp_path / "files", "json") == expected
    assert _snapshot(tmp_path / "mem2", "memory") == expected


def test_a_root_converts_in_place_to_another_backend(root):
    ExecutionStoreService(root=root).set_key("s", "k", 1)

    copy_root(root, root, source_backend="sqlite", target_backend="json")

    assert ExecutionStoreService(root=root, backend="json").get_key("s", "k").value == 1
    assert ExecutionStoreService(root=root).get_key("s", "k").value == 1


def test_replace_decides_whether_existing_target_keys_are_overwritten(tmp_path):
    ExecutionStoreService(root=tmp_path / "a").set_key("s", "k", "source")
    target = ExecutionStoreService(root=tmp_path / "b", backend="json")
    target.set_key("s", "k", "target")
    target.set_key("s", "only_in_target", 1)

    kept = copy_root(tmp_path / "a", tmp_path / "b", replace=False)
    value_after_keep = target.get_key("s", "k").value
    replaced = copy_root(tmp_path / "a", tmp_path / "b")

    assert kept == {("execution_store", None, "s"): 0}
    assert value_after_keep == "target"
    assert replaced == {("execution_store", None, "s"): 1}
    assert target.get_key("s", "k").value == "source"
    assert target.list_keys("s") == ["k", "only_in_target"]


def test_collections_limits_what_is_copied(tmp_path):
    _fill(tmp_path / "a", "sqlite")

    copied = copy_root(tmp_path / "a", tmp_path / "b", collections=["other"])

    assert {collection for collection, _, _ in copied} == {"other"}
    assert _snapshot(tmp_path / "b", "json").keys() == copied.keys()


def test_expired_keys_are_not_copied(tmp_path):
    service = ExecutionStoreService(root=tmp_path / "a")
    service.set_key("s", "gone", 1, ttl=0.01)
    service.set_key("s", "kept", 2)
    time.sleep(0.05)

    copy_root(tmp_path / "a", tmp_path / "b")

    assert ExecutionStoreService(root=tmp_path / "b", backend="json").list_keys(
        "s"
    ) == ["kept"]


@pytest.mark.parametrize("source_backend", ["sqlite", "json"])
def test_copying_a_missing_source_root_raises_naming_it(tmp_path, source_backend):
    missing = tmp_path / "missing"

    with pytest.raises(StoreIOError) as raised:
        copy_root(missing, tmp_path / "b", source_backend=source_backend)

    assert isinstance(raised.value, OSError)
    assert raised.value.errno == errno.ENOENT
    assert str(missing) in str(raised.value)
    assert not (tmp_path / "b").exists()
    assert copy_root(missing, tmp_path / "c", source_backend="memory") == {}


def test_a_damaged_source_store_is_left_out_with_a_warning(tmp_path, caplog):
    source = ExecutionStoreService(root=tmp_path / "a", backend="json")
    source.set_key("bad", "k", 1.5)
    source.set_key("good", "k", 2)
    path = Path(source.repo.store_path(None, "bad"))
    path.write_text(path.read_text().replace('"value": 1.5', '"value": 1e400'))

    with caplog.at_level(logging.WARNING, logger="localstore"):
        written = copy_root(
            tmp_path / "a",
            tmp_path / "b",
            source_backend="json",
            target_backend="sqlite",
        )

    assert written == {("execution_store", None, "good"): 1}
    assert ExecutionStoreService(root=tmp_path / "b").list_stores() == ["good"]
    assert any(str(path) in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("backend", ["json", "sqlite", "memory"])
def test_a_sqlite_value_damaged_by_hand_leaves_its_store_out_of_a_copy(
    tmp_path, caplog, backend
):
    import sqlite3

    source = ExecutionStoreService(root=tmp_path / "a")
    source.set_key("bad", "k", 1)
    source.set_key("bad", "k2", 2)
    source.set_key("good", "k", 2)
    conn = sqlite3.connect(source.repo.store_path(None, "bad"))
    with conn:
        conn.execute("UPDATE keys SET value = '{bad' WHERE key = 'k2'")
    conn.close()

    with caplog.at_level(logging.WARNING, logger="localstore"):
        written = copy_root(tmp_path / "a", tmp_path / "b", target_backend=backend)

    assert written == {("execution_store", None, "good"): 1}
    assert "key 'k2' of store 'bad'" in caplog.text


def test_copy_root_rejects_bad_arguments(root, tmp_path):
    with pytest.raises(InvalidArgumentError, match="same"):
        copy_root(root, root, source_backend="json", target_backend="json")
    with pytest.raises(InvalidArgumentError, match="backend"):
        copy_root(root, tmp_path / "b", target_backend="yaml")
    with pytest.raises(ArgumentTypeError):
        copy_root(root, tmp_path / "b", collections="execution_store")
    with pytest.raises(ArgumentTypeError):
        copy_root(root, tmp_path / "b", replace="yes")


@pytest.mark.timeout(60)
def test_readme_backends_example_runs(tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8")
    section = readme.split("\n## Backends\n", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```python\n(.*?)```", section, re.S)
    script = tmp_path / "example.py"
    script.write_text(block, "utf-8")

    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert '"store_name": "my_plugin"' in result.stdout
