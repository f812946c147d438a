"""pytest fixtures that give each test its own empty localstore root.

pytest loads this module by itself once localstore is installed (through the
``pytest11`` entry point), so a test only names the fixture it needs:

``localstore_root``
    A fresh, empty directory (a :class:`pathlib.Path`), also set as
    ``$LOCALSTORE_ROOT`` for the test, so code that builds its own service or
    calls ``ExecutionStore.create`` stores there too.
``localstore_service``
    An :class:`~localstore.ExecutionStoreService` of the global context on that
    root, closed after the test.
``localstore_store``
    The :class:`~localstore.ExecutionStore` named ``"test_store"`` of that
    service.
``localstore_context``
    An :class:`~localstore.OfflineContext` on that root whose ``dataset_id`` is
    :data:`DATASET_ID`, for operator code that calls ``ctx.store(name)``.

Roots come from pytest's ``tmp_path_factory``, so tests run in parallel
(pytest-xdist) never share one, and none reaches the user's real root. Setting
the ini option ``localstore_isolate = true`` gives every test a fresh
``$LOCALSTORE_ROOT``, whether it names a fixture or not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from localstore import ExecutionStore, ExecutionStoreService, OfflineContext

__all__ = [
    "DATASET_ID",
    "localstore_context",
    "localstore_root",
    "localstore_service",
    "localstore_store",
]

#: The dataset id of the ``localstore_context`` fixture (the form of an ObjectId).
DATASET_ID = "0123456789abcdef01234567"

_ISOLATE = "localstore_isolate"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``localstore_isolate`` ini option."""
    parser.addini(
        _ISOLATE,
        "give every test a fresh $LOCALSTORE_ROOT, not only those using a fixture",
        type="bool",
        default=False,
    )


@pytest.fixture
def localstore_root(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Return a fresh, empty root directory, set as ``$LOCALSTORE_ROOT``."""
    root = tmp_path_factory.mktemp("localstore-root")
    monkeypatch.setenv("LOCALSTORE_ROOT", str(root))
    return root


@pytest.fixture
def localstore_service(localstore_root: Path) -> Iterator[ExecutionStoreService]:
    """Return a service of the global context on the test's root."""
    from localstore import ExecutionStoreService

    with ExecutionStoreService(root=localstore_root) as service:
        yield service


@pytest.fixture
def localstore_store(localstore_service: ExecutionStoreService) -> ExecutionStore:
    """Return the store ``"test_store"`` of the global context on the test's root."""
    from localstore import ExecutionStore

    return ExecutionStore("test_store", localstore_service)


@pytest.fixture
def localstore_context(localstore_root: Path) -> Iterator[OfflineContext]:
    """Return an offline operator context of dataset :data:`DATASET_ID`."""
    from localstore import OfflineContext

    with OfflineContext(DATASET_ID, root=localstore_root) as context:
        yield context


@pytest.fixture(autouse=True)
def _localstore_isolate(request: pytest.FixtureRequest) -> None:
    """Give the test a fresh root when the ``localstore_isolate`` option is set."""
    if request.config.getini(_ISOLATE):
        request.getfixturevalue("localstore_root")
