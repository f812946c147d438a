"""The public API has FiftyOne's names and parameters, so plugin code runs on both."""

from __future__ import annotations

import inspect

import pytest

import localstore
from localstore import ExecutionStore, ExecutionStoreService

# Positional parameters as FiftyOne documents them (FIFTYONE.md sections 3 and 9).
SERVICE_METHODS = {
    "create_store": ["store_name", "metadata", "policy"],
    "get_store": ["store_name"],
    "list_stores": [],
    "count_stores": [],
    "has_store": ["store_name"],
    "delete_store": ["store_name"],
    "set_key": ["store_name", "key", "value", "ttl", "policy"],
    "set_cache_key": ["store_name", "key", "value", "ttl"],
    "has_key": ["store_name", "key"],
    "get_key": ["store_name", "key"],
    "delete_key": ["store_name", "key"],
    "update_ttl": ["store_name", "key", "new_ttl"],
    "update_policy": ["store_name", "key", "policy"],
    "list_keys": ["store_name"],
    "list_values": ["store_name", "key_prefix", "exclude_fields"],
    "count_keys": ["store_name"],
    "clear_cache": ["store_name"],
    "cleanup": [],
    "has_store_global": ["store_name"],
    "list_stores_global": [],
    "count_stores_global": [],
    "delete_store_global": ["store_name"],
    "set_key_if_absent": ["store_name", "key", "value", "ttl"],
    "compare_and_set_key": ["store_name", "key", "expected", "value", "ttl"],
}

STORE_METHODS = {
    "get": ["key"],
    "set": ["key", "value", "ttl", "policy"],
    "set_cache": ["key", "value", "ttl"],
    "set_if_absent": ["key", "value", "ttl"],
    "compare_and_set": ["key", "expected", "value", "ttl"],
    "delete": ["key"],
    "has": ["key"],
    "clear": [],
    "clear_cache": [],
    "update_ttl": ["key", "new_ttl"],
    "update_policy": ["key", "policy"],
    "get_metadata": ["key"],
    "list_keys": [],
    "list_values": ["key_prefix", "exclude_fields"],
    "list_stores": [],
}


def _positional(func) -> list[str]:
    return [
        p.name
        for p in inspect.signature(func).parameters.values()
        if p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in ("self", "cls")
    ]


@pytest.mark.parametrize(("name", "params"), SERVICE_METHODS.items())
def test_service_methods_take_fiftyones_parameters(name, params):
    assert _positional(getattr(ExecutionStoreService, name))[: len(params)] == params


@pytest.mark.parametrize(("name", "params"), STORE_METHODS.items())
def test_store_methods_take_fiftyones_parameters(name, params):
    assert _positional(getattr(ExecutionStore, name))[: len(params)] == params


def test_constructors_take_fiftyones_parameters():
    assert _positional(ExecutionStoreService.__init__)[:3] == [
        "repo",
        "dataset_id",
        "collection_name",
    ]
    assert _positional(ExecutionStore.__init__) == [
        "store_name",
        "store_service",
        "default_policy",
    ]
    assert _positional(ExecutionStore.create) == [
        "store_name",
        "dataset_id",
        "default_policy",
        "collection_name",
    ]


def test_every_exported_name_exists():
    for name in localstore.__all__:
        assert hasattr(localstore, name), name


def test_every_error_derives_from_localstore_error():
    errors = [
        getattr(localstore, name)
        for name in localstore.__all__
        if name.endswith("Error") and name != "LocalStoreError"
    ]

    assert errors
    assert all(issubclass(error, localstore.LocalStoreError) for error in errors)
    assert all(
        len(error.__mro__) > 4 for error in errors
    )  # each also has a built-in base


def test_errors_survive_pickling_as_a_process_pool_sends_them():
    import pickle

    errors = [
        localstore.LockTimeoutError("timed out", "/tmp/x/.lock"),
        localstore.CorruptStoreError("damaged", "/tmp/x.sqlite"),
        localstore.InvalidValueError("bad value"),
    ]

    copies = [pickle.loads(pickle.dumps(error)) for error in errors]

    assert [type(copy) for copy in copies] == [type(error) for error in errors]
    assert [str(copy) for copy in copies] == [str(error) for error in errors]
    assert copies[0].path == "/tmp/x/.lock"
    assert copies[1].path == "/tmp/x.sqlite"
