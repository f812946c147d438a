"""OfflineContext: operator code calling ctx.store() runs without FiftyOne."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from localstore import (
    ArgumentTypeError,
    ExecutionStore,
    ExecutionStoreService,
    InvalidArgumentError,
    OfflineContext,
)
from localstore.pytest_plugin import DATASET_ID


def execute(ctx: Any) -> dict[str, Any]:
    """An operator's execute(), written against FiftyOne's ExecutionContext."""
    store = ctx.store("run_counter")
    runs = (store.get("runs") or 0) + 1
    store.set("runs", runs)
    store.set_cache("last_params", ctx.params, ttl=60)
    return {"runs": runs, "dataset": ctx.dataset_id}


def test_operator_code_runs_unchanged_and_keeps_state_between_runs(
    localstore_root: Path,
) -> None:
    with OfflineContext("dataset-1", params={"threshold": 0.5}) as ctx:
        results = [execute(ctx), execute(ctx)]

    assert results == [
        {"runs": 1, "dataset": "dataset-1"},
        {"runs": 2, "dataset": "dataset-1"},
    ]
    with ExecutionStoreService(dataset_id="dataset-1") as service:
        assert service.get_value("run_counter", "last_params") == {"threshold": 0.5}


def test_store_belongs_to_the_datasets_context_only(localstore_root: Path) -> None:
    with OfflineContext("dataset-1") as ctx:
        ctx.store("notes").set("k", "v")

    scoped = ExecutionStore.create("notes", dataset_id="dataset-1")
    other = ExecutionStore.create("notes", dataset_id="dataset-2")
    global_store = ExecutionStore.create("notes")

    assert scoped.get("k") == "v"
    assert other.has("k") is False
    assert global_store.has("k") is False


def test_no_dataset_id_means_the_global_context(localstore_root: Path) -> None:
    with OfflineContext() as ctx:
        ctx.store("notes").set("k", 1)
        dataset_id = ctx.dataset_id

    assert dataset_id is None
    assert ExecutionStore.create("notes").get("k") == 1


def test_object_id_and_its_hex_string_are_one_context(tmp_path: Path) -> None:
    bson = pytest.importorskip("bson")
    object_id = bson.ObjectId()

    with OfflineContext(object_id, root=tmp_path) as ctx:
        ctx.store("s").set("k", 1)
        dataset_id = ctx.dataset_id
    with OfflineContext(str(object_id), root=tmp_path) as same:
        value = same.store("s").get("k")

    assert dataset_id == str(object_id)
    assert value == 1


def test_default_root_is_localstore_root_and_nothing_is_written_until_a_set(
    localstore_root: Path,
) -> None:
    with OfflineContext("dataset-1") as ctx:
        store = ctx.store("lazy")
        listing = list(localstore_root.iterdir())
        root = ctx.root

    assert root == str(localstore_root)
    assert isinstance(store, ExecutionStore)
    assert store.store_name == "lazy"
    assert listing == []


def test_explicit_root_and_backend_are_used(tmp_path: Path, backend: str) -> None:
    with OfflineContext("d", root=tmp_path, backend=backend) as ctx:
        ctx.store("s").set("k", [1, 2])

    with ExecutionStoreService(dataset_id="d", root=tmp_path, backend=backend) as svc:
        assert svc.get_value("s", "k") == [1, 2]


def test_params_default_to_an_empty_dict_of_each_context() -> None:
    first, second = OfflineContext(), OfflineContext()

    first.params["x"] = 1

    assert second.params == {}


def test_fixture_context_has_the_documented_dataset_id(
    localstore_context: OfflineContext, localstore_root: Path
) -> None:
    localstore_context.store("s").set("k", 1)

    assert localstore_context.dataset_id == DATASET_ID
    assert localstore_context.root == str(localstore_root)
    with ExecutionStoreService(dataset_id=DATASET_ID) as service:
        assert service.get_value("s", "k") == 1


def test_repr_names_dataset_and_root(tmp_path: Path) -> None:
    ctx = OfflineContext("d", root=tmp_path)

    assert repr(ctx) == f"OfflineContext(dataset_id='d', root={str(tmp_path)!r})"


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"dataset_id": 42}, ArgumentTypeError, "dataset_id must be None"),
        ({"dataset_id": ""}, InvalidArgumentError, "dataset_id must not be empty"),
        ({"params": [1]}, ArgumentTypeError, "params must be a dict"),
        ({"backend": "nope"}, InvalidArgumentError, "backend must be one of"),
    ],
)
def test_bad_arguments_raise_and_create_nothing(
    arguments: dict[str, Any],
    error: type[Exception],
    message: str,
    localstore_root: Path,
) -> None:
    with pytest.raises(error, match=message):
        OfflineContext(**arguments)

    assert list(localstore_root.iterdir()) == []


def test_bad_store_name_raises(localstore_context: OfflineContext) -> None:
    with pytest.raises(InvalidArgumentError, match="store_name must not be empty"):
        localstore_context.store("")
    with pytest.raises(ArgumentTypeError, match="store_name must be a str"):
        localstore_context.store(3)  # type: ignore[arg-type]
