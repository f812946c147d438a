"""A backend's whole collection at once: a store name in every context.

The service validates names and reads the clock; these loops only call the
backend, once per context.
"""

from __future__ import annotations

from collections.abc import Callable

from . import _log
from ._backend import Backend
from ._records import store_document
from .errors import CorruptStoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._documents import StoreDocument

__all__ = ["count_stores", "delete_store", "has_store", "list_stores"]

#: Told of each store deleted, with the backend, its context and its name.
Deleted = Callable[[Backend, str | None, str], None]


def has_store(repo: Backend, store: str, now: int) -> bool:
    """Tell whether ``store`` exists in any context."""
    return any(repo.has_store(context, store, now) for context in repo.list_contexts())


def list_stores(repo: Backend, now: int) -> list[StoreDocument]:
    """Return one document per store and context, key-only stores included."""
    documents = []
    for context in repo.list_contexts():
        for store in repo.list_stores(context, now):
            # A backend that checks what it reads (MongoDB) raises in get_store,
            # one that does not (SQLite) in store_document: damage either way.
            try:
                record = repo.get_store(context, store, now)
                if record is None:
                    continue
                documents.append(store_document(store, record, context))
            except CorruptStoreError as exc:  # as list_stores leaves out damage
                _log.warning(
                    __name__, "leaving out store %r of %r: %s", store, context, exc
                )
    return documents


def count_stores(repo: Backend, now: int) -> int:
    """Return the number of (store, context) pairs."""
    return sum(len(repo.list_stores(context, now)) for context in repo.list_contexts())


def delete_store(repo: Backend, store: str, now: int, deleted: Deleted) -> int:
    """Delete ``store`` in every context; return how many contexts had it.

    ``deleted`` is called for each of them as soon as its store is gone.
    """
    count = 0
    for context in repo.list_contexts():
        if repo.delete_store(context, store, now) is not None:
            count += 1
            deleted(repo, context, store)
    return count
