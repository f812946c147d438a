"""The backends by name, and choosing and opening the one a service uses."""

from __future__ import annotations

import importlib
import os

from ._backend import Backend
from ._paths import resolve_root
from ._validate import check_name, check_timeout
from .errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["BACKENDS", "DEFAULT_COLLECTION", "choose_backend", "open_backend"]

#: The collection used when ``collection_name`` is not given, as in FiftyOne.
DEFAULT_COLLECTION = "execution_store"

#: The backends ``backend=`` accepts, as ``module:class`` to import on first use.
BACKENDS = {
    "sqlite": "localstore._sqlite:SQLiteBackend",
    "json": "localstore._json:JSONBackend",
    "memory": "localstore._memory:MemoryBackend",
    "mongodb": "localstore._mongodb:MongoBackend",
}


def open_backend(
    backend: str = "sqlite",
    root: str | os.PathLike[str] | None = None,
    collection_name: str | None = None,
    *,
    timeout: float = 10.0,
    uri: str | None = None,
    database: str | None = None,
) -> Backend:
    """Return a backend of kind ``backend`` for a root and collection.

    :param root: the directory of all stores; ``None`` means ``$LOCALSTORE_ROOT``
        or else the user data directory.
    :param uri: for ``"mongodb"`` only: the server's URI; default
        ``$LOCALSTORE_MONGODB_URI``, else ``mongodb://localhost:27017``.
    :param database: for ``"mongodb"`` only: the database; default
        ``$LOCALSTORE_MONGODB_DATABASE``, else ``"fiftyone"``.
    :raises InvalidArgumentError: for an unknown backend name, or ``uri`` or
        ``database`` given for another backend.
    """
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise InvalidArgumentError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}, not {backend!r}"
        )
    timeout = check_timeout(timeout)
    options = {}
    if uri is not None or database is not None:
        if backend != "mongodb":
            raise InvalidArgumentError(
                f"uri and database apply to backend 'mongodb' only, not {backend!r}"
            )
        options = {"uri": uri, "database": database}
    collection = check_name(
        DEFAULT_COLLECTION if collection_name is None else collection_name,
        "collection_name",
    )
    path, _ = resolve_root(root)
    module_name, class_name = BACKENDS[backend].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    instance: Backend = cls(path, collection, timeout=float(timeout), **options)
    return instance


def choose_backend(
    repo: Backend | None,
    root: str | os.PathLike[str] | None,
    collection_name: str | None,
    backend: str,
    *,
    timeout: float,
    uri: str | None,
    database: str | None,
) -> Backend:
    """Return ``repo``, or else a backend opened with :func:`open_backend`.

    :raises ArgumentTypeError: for a ``repo`` that is not a :class:`Backend`.
    :raises InvalidArgumentError: for ``repo`` given with ``root`` or another
        collection.
    """
    if repo is None:
        return open_backend(
            backend,
            root,
            collection_name,
            timeout=timeout,
            uri=uri,
            database=database,
        )
    if not isinstance(repo, Backend):
        raise ArgumentTypeError(
            f"repo must be a localstore Backend, not {type(repo).__name__}"
        )
    if root is not None or collection_name not in (None, repo.collection):
        raise InvalidArgumentError("give either repo or root/collection_name, not both")
    return repo
