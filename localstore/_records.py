"""The documents the service returns, made from the records a backend returns.

:mod:`._documents` is imported on the first call, not with this module:
dataclasses costs milliseconds that a process which only gets and sets values
need not pay.
"""

from __future__ import annotations

from . import _codec
from ._backend import KeyRecord, StoreRecord
from .errors import CorruptStoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._documents import KeyDocument, StoreDocument

__all__ = ["damaged_value", "key_document", "store_document", "stored_value"]


def stored_value(text: str, store: str, key: str | None) -> Any:
    """Decode a key's stored value text (``key=None``: the store document's metadata).

    :raises CorruptStoreError: for damage, naming the store and key.
    """
    try:
        return _codec.decode(text)
    except CorruptStoreError as exc:
        raise damaged_value(exc, store, key) from exc


def damaged_value(
    exc: CorruptStoreError, store: str, key: str | None
) -> CorruptStoreError:
    """Return the error for a value found damaged, naming its store and key."""
    what = "the document" if key is None else f"key {key!r}"
    return CorruptStoreError(f"{what} of store {store!r}: {exc}", exc.path)


def key_document(store: str, record: KeyRecord, context: str | None) -> KeyDocument:
    """Turn a backend record into the document the API returns."""
    from ._documents import KeyDocument, KeyPolicy, to_datetime

    try:
        times = [to_datetime(t) for t in record[2:5]]
        policy = KeyPolicy(record.policy)
    except (TypeError, ValueError, OverflowError, KeyError) as exc:
        # Only a file edited by hand holds such a record.
        raise CorruptStoreError(
            f"key {record.key!r} of store {store!r} is damaged: {exc!r}"
        ) from exc
    return KeyDocument(
        store_name=store,
        key=record.key,
        value=stored_value(record.value, store, record.key),
        dataset_id=context,
        created_at=times[0],  # type: ignore[arg-type]  # a record always has one
        updated_at=times[1],
        expires_at=times[2],
        policy=policy,
    )


def store_document(
    store: str, record: StoreRecord, context: str | None
) -> StoreDocument:
    """Turn a backend store record into a :class:`StoreDocument`."""
    from ._documents import KeyPolicy, StoreDocument, to_datetime

    try:
        created_at, updated_at = map(to_datetime, record[1:3])
        policy = KeyPolicy(record.policy)
    except (TypeError, ValueError, OverflowError, KeyError) as exc:
        # Only a file edited by hand holds such a record.
        raise CorruptStoreError(
            f"the document of store {store!r} is damaged: {exc!r}"
        ) from exc
    metadata = record.metadata
    return StoreDocument(
        store_name=store,
        value=None if metadata is None else stored_value(metadata, store, None),
        dataset_id=context,
        created_at=created_at,  # type: ignore[arg-type]  # a record always has one
        updated_at=updated_at,
        policy=policy,
    )
