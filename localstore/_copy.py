"""Copying every store of a root from one backend to another, losslessly."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable

from ._backends import BACKENDS, open_backend
from ._layout import list_directory
from ._paths import decode_name, resolve_root
from ._transfer import copy_store
from ._validate import check_name, now_micros
from .errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    StoreIOError,
)

__all__ = ["copy_root"]

logger = logging.getLogger(__name__)


def copy_root(
    source_root: str | os.PathLike[str] | None,
    target_root: str | os.PathLike[str] | None,
    *,
    source_backend: str = "sqlite",
    target_backend: str = "json",
    collections: Iterable[str] | None = None,
    replace: bool = True,
) -> dict[tuple[str, str | None, str], int]:
    """Copy every store of a root into another root or backend, exactly.

    Each store's document and live keys arrive as they were: values, metadata,
    ``created_at``, ``updated_at``, ``expires_at`` and policies. Typical uses are
    SQLite to JSON for a readable test fixture, and JSON to SQLite for speed.
    Each store is copied in one step, so a reader of the target sees it whole
    or not at all; the copy as a whole is not one step. Expired keys are not
    copied.

    :param source_root: the root to read; ``None`` means the default root.
    :param target_root: the root to write; it may be the source root when the
        backends differ (their files sit side by side).
    :param collections: the collections to copy; ``None`` means every
        collection found in the source root (SQLite, JSON and memory sources
        only). A collection whose name is too long to be spelled out by its
        directory name is only found when named.
    :param replace: overwrite keys and documents that already exist in the
        target; with ``False`` they are kept and the source's are skipped. Other
        stores and keys of the target are left alone either way.
    :returns: the keys written per ``(collection, dataset_id, store_name)``, one
        entry for every store copied. A store that cannot be copied whole (a
        damaged file, value, time or policy, or a store busy beyond the timeout)
        is left out with a logged warning naming it, as ``list_stores`` leaves
        out damage.
    :raises InvalidArgumentError: for an unknown backend, a source that is the
        target, or no ``collections`` for a source that cannot list them.
    :raises StoreIOError: an :class:`OSError` with ``errno.ENOENT``, when the
        source root of a SQLite or JSON source does not exist (a mistyped path
        would otherwise copy nothing). A memory source needs no directory.
    """
    for backend in (source_backend, target_backend):
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise InvalidArgumentError(
                f"backend must be one of {', '.join(map(repr, BACKENDS))}, "
                f"not {backend!r}"
            )
    source_path, _ = resolve_root(source_root)
    target_path, _ = resolve_root(target_root)
    if (source_path, source_backend) == (target_path, target_backend):
        raise InvalidArgumentError(
            f"source and target are the same {source_backend!r} root {source_path!r}"
        )
    if not isinstance(replace, bool):
        raise ArgumentTypeError(f"replace must be a bool, not {replace!r}")
    if source_backend in ("sqlite", "json") and not os.path.exists(source_path):
        raise StoreIOError(
            errno.ENOENT,
            f"the source root {source_path} does not exist; nothing was copied",
        )
    names = _collections(source_path, source_backend, collections)

    written: dict[tuple[str, str | None, str], int] = {}
    for collection in names:
        source = open_backend(source_backend, source_path, collection)
        target = open_backend(target_backend, target_path, collection)
        try:
            for context in source.list_contexts():
                for store in source.list_stores(context, now_micros()):
                    count = copy_store(source, target, context, store, replace)
                    if count is not None:
                        written[(collection, context, store)] = count
        finally:
            source.close()
            target.close()
    logger.debug(
        "copied %d stores from %s to %s", len(written), source_path, target_path
    )
    return written


def _collections(
    root: str, backend: str, collections: Iterable[str] | None
) -> list[str]:
    """Return the collections to copy: the ones given, or every one found."""
    if collections is not None:
        if isinstance(collections, str):
            raise ArgumentTypeError(
                f"collections must be a list of names, not the str {collections!r}"
            )
        return [check_name(name, "collection name") for name in collections]
    if backend == "memory":
        from ._memory import list_collections

        return list_collections(root)
    if backend not in ("sqlite", "json"):
        raise InvalidArgumentError(
            f"name the collections to copy from a {backend!r} source: collections=[...]"
        )

    names = []
    for entry in sorted(list_directory(root)):
        if not os.path.isdir(os.path.join(root, entry)):
            continue
        name = decode_name(entry)
        if name is not None:
            names.append(name)
        elif "~" in entry:
            logger.warning(
                "skipping %s: a collection with a long name; name it in "
                "collections=[...] to copy it",
                os.path.join(root, entry),
            )
    return names
