"""An offline stand-in for the part of an operator's context that reaches the store."""

from __future__ import annotations

import os
from typing import Any

from ._service import ExecutionStoreService
from ._store import ExecutionStore
from .errors import ArgumentTypeError

__all__ = ["OfflineContext"]


class OfflineContext:
    """What operator code sees as ``ctx`` when it uses the store, with no FiftyOne.

    ``ctx.store(name)`` returns the :class:`ExecutionStore` ``name`` of the
    dataset's context, as FiftyOne's ``ExecutionContext.store`` does, so an
    operator's ``execute(ctx)`` runs unchanged in a unit test or a script.
    Nothing is written until a key is set.

    :param dataset_id: the dataset the operator runs on: a ``str`` or a bson
        ``ObjectId``; ``None`` uses the global context.
    :param params: what the operator reads as ``ctx.params``; default ``{}``.
    :param root: the directory that holds every store; default
        ``$LOCALSTORE_ROOT``, else the user data directory.
    :param collection_name: see :class:`ExecutionStoreService`.
    :param backend: see :class:`ExecutionStoreService`.
    :raises ArgumentTypeError: for a ``dataset_id`` of another type, or
        ``params`` that is not a dict.
    """

    def __init__(
        self,
        dataset_id: Any = None,
        *,
        params: dict[str, Any] | None = None,
        root: str | os.PathLike[str] | None = None,
        collection_name: str | None = None,
        backend: str = "sqlite",
    ) -> None:
        if params is not None and not isinstance(params, dict):
            raise ArgumentTypeError(
                f"params must be a dict or None, not {type(params).__name__}"
            )
        self.params: dict[str, Any] = {} if params is None else params
        self._service = ExecutionStoreService(
            dataset_id=dataset_id,
            collection_name=collection_name,
            root=root,
            backend=backend,
        )

    def __repr__(self) -> str:
        return f"OfflineContext(dataset_id={self.dataset_id!r}, root={self.root!r})"

    def __enter__(self) -> OfflineContext:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def dataset_id(self) -> str | None:
        """The dataset's id as a ``str``, or ``None`` for the global context."""
        return self._service.dataset_id

    @property
    def root(self) -> str:
        """The absolute root directory the stores are kept under."""
        return self._service.root

    @property
    def service(self) -> ExecutionStoreService:
        """The service of the dataset's context, for checks a test wants to make."""
        return self._service

    def store(self, store_name: str) -> ExecutionStore:
        """Return the store ``store_name`` of the dataset's context.

        :raises InvalidArgumentError: for an empty name.
        :raises ArgumentTypeError: for a name that is not a ``str``.
        """
        return ExecutionStore(store_name, self._service)

    def close(self) -> None:
        """Close open store files; the context stays usable."""
        self._service.close()
