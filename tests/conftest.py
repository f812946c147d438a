"""Shared fixtures: every behavioural test runs on every backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localstore import ExecutionStore, ExecutionStoreService
from localstore._service import BACKENDS

#: Backends that keep data in files, for tests that need several processes.
FILE_BACKENDS = [name for name in BACKENDS if name in ("sqlite", "json")]


@pytest.fixture(autouse=True)
def _isolated_default_root(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Point $LOCALSTORE_ROOT at a temporary directory, away from the user's root."""
    monkeypatch.setenv("LOCALSTORE_ROOT", str(tmp_path_factory.mktemp("default-root")))


@pytest.fixture(params=sorted(BACKENDS))
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
