"""Pushing a local root's stores into MongoDB, and pulling them back.

Each store travels whole: its document and its live keys, with values,
metadata, timestamps and policies as they are, so FiftyOne sees on MongoDB what
localstore saw locally. Writing the same stores again changes nothing, so a
push or pull that was interrupted can simply be run again. Stores and keys of
the target that the source lacks are left alone.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from ._backend import Backend
from ._backends import BACKENDS, DEFAULT_COLLECTION, open_backend
from ._export import check_records
from ._paths import decode_name, resolve_root
from ._validate import check_dataset_id, check_name, now_micros
from .errors import (
    ArgumentTypeError,
    CorruptStoreError,
    InvalidArgumentError,
    InvalidValueError,
    LockTimeoutError,
    StoreIOError,
)

__all__ = ["Progress", "copy_store", "pull", "push"]

logger = logging.getLogger(__name__)

#: Called after each store with its collection, dataset id, name and key count.
Progress = Callable[[str, str | None, str, int], None]

#: What a transfer wrote: keys per ``(collection, dataset_id, store_name)``.
Written = dict[tuple[str, str | None, str], int]


def push(
    uri: str,
    *,
    root: str | os.PathLike[str] | None = None,
    backend: str = "sqlite",
    database: str | None = None,
    collections: Iterable[str] | None = None,
    dataset_ids: Iterable[Any] | None = None,
    stores: Iterable[str] | None = None,
    replace: bool = True,
    progress: Progress | None = None,
    timeout: float = 10.0,
) -> Written:
    """Copy the stores of a local root into MongoDB, where FiftyOne reads them.

    :param uri: the MongoDB server, ``mongodb://...``.
    :param root: the local root; ``None`` means the default root.
    :param backend: the local backend, ``"sqlite"`` by default.
    :param database: the MongoDB database; default ``"fiftyone"``.
    :param collections: the collections to copy; ``None`` means every one found
        in a SQLite or JSON root, except those whose names are too long to be
        spelled out in a directory name. Each becomes the MongoDB collection of
        the same name.
    :param dataset_ids: only these contexts (``None`` in the list is the global
        one); ``None`` means all.
    :param stores: only stores with these names; ``None`` means all.
    :param replace: overwrite keys and store documents the target already has;
        with ``False`` the target's live ones are kept.
    :param progress: called after each store is copied.
    :param timeout: seconds to wait for the server, or for a local store that
        another process is writing.
    :returns: the keys written per ``(collection, dataset_id, store_name)``. A
        store that cannot be copied (damaged, busy beyond ``timeout``, or with a
        value MongoDB cannot hold) is left out with a warning on the
        ``localstore`` logger, and the others are copied.
    :raises InvalidArgumentError: for a bad URI, database or name.
    :raises StoreIOError: an :class:`OSError` with ``errno.ENOENT``, when the root
        of a SQLite or JSON backend does not exist (a mistyped path would
        otherwise push nothing and succeed). A memory root needs no directory.
    """
    _check_local(backend)
    if backend in ("sqlite", "json"):
        path, _ = resolve_root(root)
        if not os.path.exists(path):
            raise StoreIOError(
                errno.ENOENT, f"the root {path} does not exist; nothing was pushed"
            )
    names = _local_collections(root, backend, collections)
    return _transfer(
        lambda name: open_backend(backend, root, name, timeout=timeout),
        lambda name: open_backend(
            "mongodb", root, name, uri=uri, database=database, timeout=timeout
        ),
        names,
        _contexts(dataset_ids),
        _names(stores, "stores"),
        replace,
        progress,
    )


def pull(
    uri: str,
    *,
    root: str | os.PathLike[str] | None = None,
    backend: str = "sqlite",
    database: str | None = None,
    collections: Iterable[str] | None = None,
    dataset_ids: Iterable[Any] | None = None,
    stores: Iterable[str] | None = None,
    replace: bool = True,
    progress: Progress | None = None,
    timeout: float = 10.0,
) -> Written:
    """Copy stores from MongoDB into a local root; the reverse of :func:`push`.

    The arguments are those of :func:`push`, except that ``collections=None``
    means FiftyOne's ``"execution_store"`` only: which other collections of a
    MongoDB database hold stores cannot be told from the outside.

    :returns: the keys written per ``(collection, dataset_id, store_name)``.
    """
    _check_local(backend)
    names = _names(collections, "collections", "collection name")
    return _transfer(
        lambda name: open_backend(
            "mongodb", root, name, uri=uri, database=database, timeout=timeout
        ),
        lambda name: open_backend(backend, root, name, timeout=timeout),
        [DEFAULT_COLLECTION] if names is None else names,
        _contexts(dataset_ids),
        _names(stores, "stores"),
        replace,
        progress,
    )


def _transfer(
    open_source: Callable[[str], Backend],
    open_target: Callable[[str], Backend],
    collections: list[str],
    contexts: set[str | None] | None,
    stores: list[str] | None,
    replace: bool,
    progress: Progress | None,
) -> Written:
    """Copy the selected stores of each collection, one store at a time."""
    if not isinstance(replace, bool):
        raise ArgumentTypeError(f"replace must be a bool, not {replace!r}")
    opened = [(open_source(name), open_target(name)) for name in collections]

    written: Written = {}
    try:
        for source, target in opened:
            for context in source.list_contexts():
                if contexts is not None and context not in contexts:
                    continue
                names = source.list_stores(context, now_micros())
                for store in (
                    names if stores is None else sorted(set(names) & set(stores))
                ):
                    count = copy_store(source, target, context, store, replace)
                    if count is None:
                        continue
                    written[(source.collection, context, store)] = count
                    if progress is not None:
                        progress(source.collection, context, store, count)
    finally:
        for source, target in opened:
            source.close()
            target.close()
    logger.debug("transferred %d stores", len(written))
    return written


def copy_store(
    source: Backend, target: Backend, context: str | None, store: str, replace: bool
) -> int | None:
    """Copy one store; return its key count, or ``None`` if it was left out.

    A store that cannot be read or written whole is left out with a warning;
    an error of the connection itself (:class:`StoreIOError`) stops the copy.
    """
    now = now_micros()
    try:
        document, keys = source.dump_store(context, store, now)
        check_records(context, store, document, keys)
        return target.load_store(context, store, document, keys, now, replace=replace)
    except (CorruptStoreError, InvalidValueError, LockTimeoutError) as exc:
        logger.warning(
            "not copying store %r of collection %r, dataset_id %r: %s",
            store,
            source.collection,
            context,
            exc,
        )
        return None


def _check_local(backend: Any) -> None:
    """Raise unless ``backend`` names a local backend."""
    if backend == "mongodb" or not isinstance(backend, str) or backend not in BACKENDS:
        local = [name for name in BACKENDS if name != "mongodb"]
        raise InvalidArgumentError(
            f"backend must be a local backend, one of {', '.join(map(repr, local))}, "
            f"not {backend!r}"
        )


def _local_collections(
    root: str | os.PathLike[str] | None, backend: str, collections: Iterable[str] | None
) -> list[str]:
    """Return the collections given, or every one found under a root of files."""
    names = _names(collections, "collections", "collection name")
    if names is not None:
        return names
    if backend not in ("sqlite", "json"):
        raise InvalidArgumentError(
            f"name the collections to push from a {backend!r} root: collections=[...]"
        )
    path, _ = resolve_root(root)
    try:
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    except FileNotFoundError:
        return []
    found = [decode_name(entry.name) for entry in entries if entry.is_dir()]
    return [name for name in found if name is not None]


def _contexts(dataset_ids: Iterable[Any] | None) -> set[str | None] | None:
    """Return the selected contexts as the backend names them, or ``None`` for all."""
    if dataset_ids is None:
        return None
    if isinstance(dataset_ids, str) or not isinstance(dataset_ids, Iterable):
        raise ArgumentTypeError(
            f"dataset_ids must be a list of dataset ids, not {dataset_ids!r}"
        )
    return {check_dataset_id(dataset_id) for dataset_id in dataset_ids}


def _names(
    names: Iterable[str] | None, what: str, each: str = "store_name"
) -> list[str] | None:
    """Return a checked list of names, or ``None`` for all."""
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise ArgumentTypeError(f"{what} must be a list of names, not {names!r}")
    return [check_name(name, each) for name in names]
