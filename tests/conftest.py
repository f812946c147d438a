"""Shared fixtures: every behavioural test runs on every backend."""

from __future__ import annotations

import datetime as dt
import itertools
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pytest

from localstore import ExecutionStore, ExecutionStoreService
from localstore._backends import BACKENDS

#: Backends that keep data in files, for tests that need several processes.
FILE_BACKENDS = [name for name in BACKENDS if name in ("sqlite", "json")]

#: The MongoDB server the tests use (``.ci/run`` starts one); without it the
#: mongodb backend is left out of the ``backend`` fixture.
MONGODB_URI = os.environ.get("LOCALSTORE_MONGODB_URI", "")

#: The backends every behavioural test runs on.
TESTED_BACKENDS = sorted(name for name in BACKENDS if name != "mongodb" or MONGODB_URI)


def as_stored(value: Any, backend: str) -> Any:
    """Return ``value`` as ``backend`` keeps it (BSON dates keep milliseconds)."""
    if backend != "mongodb":
        return value
    if isinstance(value, dt.datetime):
        return value.replace(microsecond=value.microsecond - value.microsecond % 1000)
    if isinstance(value, list):
        return [as_stored(item, backend) for item in value]
    if isinstance(value, dict):
        return {key: as_stored(item, backend) for key, item in value.items()}
    return value


@pytest.fixture(autouse=True)
def _isolated_default_root(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Point $LOCALSTORE_ROOT at a temporary directory, away from the user's root."""
    monkeypatch.setenv("LOCALSTORE_ROOT", str(tmp_path_factory.mktemp("default-root")))


@pytest.fixture(scope="session")
def mongodb_client() -> Iterator[Any]:
    """A pymongo client of the test server, for tests that read it directly."""
    if not MONGODB_URI:
        pytest.skip("no MongoDB server: LOCALSTORE_MONGODB_URI is not set")
    pymongo = pytest.importorskip("pymongo")
    client = pymongo.MongoClient(MONGODB_URI, serverSelectionTimeoutMS=10_000)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _isolated_mongodb_database(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Give each test its own MongoDB database, dropped afterwards."""
    if not MONGODB_URI:
        yield
        return
    name = f"localstore_test_{os.getpid()}_{next(_DATABASE_NUMBERS)}"
    monkeypatch.setenv("LOCALSTORE_MONGODB_DATABASE", name)
    uses_mongodb = "mongodb" in request.node.nodeid
    client = request.getfixturevalue("mongodb_client") if uses_mongodb else None
    yield
    if client is not None:
        client.drop_database(name)


_DATABASE_NUMBERS = itertools.count()


@pytest.fixture(params=TESTED_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of a backend; tests using it run once per backend."""
    return str(request.param)


@pytest.fixture(params=FILE_BACKENDS)
def file_backend(request: pytest.FixtureRequest) -> str:
    """The name of a backend that keeps data in files (for multi-process tests)."""
    return str(request.param)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fresh, empty root directory."""
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def make_service(
    root: Path, backend: str
) -> Iterator[Callable[..., ExecutionStoreService]]:
    """Build services on the test's root and backend; closes them afterwards."""
    made: list[ExecutionStoreService] = []

    def make(dataset_id: Any = None, **kwargs: Any) -> ExecutionStoreService:
        kwargs.setdefault("root", root)
        kwargs.setdefault("backend", backend)
        service = ExecutionStoreService(dataset_id=dataset_id, **kwargs)
        made.append(service)
        return service

    yield make
    for service in made:
        service.close()


@pytest.fixture
def service(
    make_service: Callable[..., ExecutionStoreService],
) -> ExecutionStoreService:
    """A service in the global context on a fresh root."""
    return make_service()


@pytest.fixture
def store(service: ExecutionStoreService) -> ExecutionStore:
    """An ``ExecutionStore`` named ``"test_store"`` on the global service."""
    return ExecutionStore("test_store", service)


def files_under(path: Path) -> dict[str, bytes]:
    """Return every file below ``path`` with its bytes, for before/after comparisons."""
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.name.endswith(("-shm", ".lock"))
    }


def edit_json_file(path: Path, old: str, new: str) -> bytes:
    """Replace ``old`` with ``new`` in a store file, by hand; return the new bytes."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path.read_bytes()


#: Children in multi-process tests are forked, so they inherit the test's state.
FORK = multiprocessing.get_context("fork")

Start = Callable[..., BaseProcess]


@pytest.fixture
def start() -> Iterator[Start]:
    """Start forked children; kill and reap every one of them afterwards."""
    started: list[BaseProcess] = []

    def start_process(target: Callable[..., None], *args: Any) -> BaseProcess:
        process = FORK.Process(target=target, args=args, daemon=True)
        process.start()
        started.append(process)
        return process

    yield start_process
    for process in started:
        if process.is_alive():
            process.kill()
        process.join(10)


HOLD_LOCK = """
import sqlite3, sys, time
path, seconds = sys.argv[1], float(sys.argv[2])
if path.endswith(".json"):
    from filelock import FileLock
    lock = FileLock(path + ".lock")
    lock.acquire()
else:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
time.sleep(seconds)
"""


def hold_write_lock(
    service: ExecutionStoreService, store: str, seconds: float
) -> subprocess.Popen[str]:
    """Hold the store's write lock from another process for ``seconds``."""
    path = service.repo.store_path(None, store)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, path, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "held\n"
    return holder


def make_healthy_and_damaged_stores(root: str) -> str:
    """Make store "healthy" and store "damaged" (a page wrecked); return its path.

    The damaged file's header stays whole, so only a check of its pages (doctor's
    ``integrity_check``) finds the damage.
    """
    with ExecutionStoreService(root=root) as service:
        service.set_key("healthy", "key", "value")
        service.set_keys("damaged", {f"k{i}": "x" * 500 for i in range(50)})
        damaged = service.repo.store_path(None, "damaged")
    with open(damaged, "r+b") as file:
        file.seek(4096 * 3)
        file.write(b"\xff" * 200)
    return damaged
