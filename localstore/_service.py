"""The execution store service: FiftyOne's API over a local backend."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping
from time import time_ns

from . import _codec, _collection, _log
from ._backend import Backend, KeyRecord
from ._backends import choose_backend
from ._records import damaged_value, key_document, store_document, stored_value
from ._validate import (
    STORE_KEY,
    check_dataset_id,
    check_fields,
    check_key,
    check_name,
    check_policy,
    check_store_key,
    check_write,
    expiry,
    item_pairs,
    now_micros,
    write_timing,
)
from .errors import ArgumentTypeError, CorruptStoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._documents import KeyDocument, StoreDocument
    from ._notify import ChangeEvent

__all__ = ["ExecutionStoreService"]


class ExecutionStoreService:
    """Stores of keys in one context (a dataset, or the global one), kept locally.

    Names, arguments and return types follow FiftyOne's
    ``ExecutionStoreService``, so plugin code runs unchanged on either. Every
    method is safe to call from several threads and processes at once, and a
    second service on the same root sees each write as soon as it returns.
    Expired keys are absent from every read, count and listing.

    :param repo: a :class:`~localstore._backend.Backend` to use instead of one
        chosen by ``root``, ``backend`` and ``collection_name``.
    :param dataset_id: the dataset whose stores to use: a ``str`` or a bson
        ``ObjectId`` (the same context as its hex string); ``None`` is global.
    :param collection_name: a separate namespace under the root; default
        ``"execution_store"``.
    :param root: the directory that holds every store; default
        ``$LOCALSTORE_ROOT``, else the user data directory.
    :param backend: ``"sqlite"`` (default), ``"json"``, ``"memory"`` or
        ``"mongodb"`` (needs pymongo; see the README's MongoDB section).
    :param timeout: seconds to wait for another writer before raising
        :class:`~localstore.errors.LockTimeoutError`.
    :param uri: the MongoDB server, for ``backend="mongodb"`` only.
    :param database: the MongoDB database, for ``backend="mongodb"`` only; default
        ``"fiftyone"``.
    :raises ArgumentTypeError: for a ``dataset_id`` of another type.
    """

    def __init__(
        self,
        repo: Backend | None = None,
        dataset_id: Any = None,
        collection_name: str | None = None,
        *,
        root: str | os.PathLike[str] | None = None,
        backend: str = "sqlite",
        timeout: float = 10.0,
        uri: str | None = None,
        database: str | None = None,
    ) -> None:
        self._context = check_dataset_id(dataset_id)
        self._repo = choose_backend(
            repo,
            root,
            collection_name,
            backend,
            timeout=timeout,
            uri=uri,
            database=database,
        )

    def __repr__(self) -> str:
        return (
            f"ExecutionStoreService(dataset_id={self._context!r}, "
            f"collection_name={self._repo.collection!r}, root={self._repo.root!r}, "
            f"backend={self._repo.kind!r})"
        )

    def __enter__(self) -> ExecutionStoreService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def dataset_id(self) -> str | None:
        """The context's dataset id as a ``str``, or ``None`` for the global one."""
        return self._context

    @property
    def collection_name(self) -> str:
        """The collection (namespace under the root) this service uses."""
        return self._repo.collection

    @property
    def root(self) -> str:
        """The absolute root directory."""
        return self._repo.root

    @property
    def repo(self) -> Backend:
        """The backend that stores the keys."""
        return self._repo

    def close(self) -> None:
        """Close open files; the service stays usable and reopens them on demand."""
        self._repo.close()

    # Stores ------------------------------------------------------------------------

    def create_store(
        self,
        store_name: str,
        metadata: dict[str, Any] | None = None,
        policy: str = "persist",
    ) -> StoreDocument:
        """Create a store's document, with optional metadata.

        A store also comes into being implicitly when its first key is set;
        calling this for such a store attaches the metadata.

        :param metadata: a dict of storable values, or ``None``.
        :param policy: ``"evict"`` lets :meth:`clear_cache` remove the document.
        :raises StoreExistsError: when the store already has a document.
        """
        store = check_name(store_name)
        if metadata is not None and not isinstance(metadata, dict):
            raise ArgumentTypeError(
                f"metadata must be a dict or None, not {type(metadata).__name__}"
            )
        policy = check_policy(policy)
        text = None if metadata is None else _codec.encode(metadata)
        record = self._repo.create_store(
            self._context, store, text, policy, now_micros()
        )
        return store_document(store, record, self._context)

    def get_store(self, store_name: str) -> StoreDocument | None:
        """Return the store's document, or ``None`` if the store does not exist.

        A store that has keys but no document gets a document with metadata
        ``{}``.
        """
        store = check_name(store_name)
        record = self._repo.get_store(self._context, store, now_micros())
        return None if record is None else store_document(store, record, self._context)

    def list_stores(self) -> list[str]:
        """Return the names of the context's stores, sorted."""
        return self._repo.list_stores(self._context, now_micros())

    def count_stores(self) -> int:
        """Return the number of stores in the context."""
        return len(self.list_stores())

    def has_store(self, store_name: str) -> bool:
        """Tell whether the store has a document or a live key in this context."""
        store = check_name(store_name)
        return self._repo.has_store(self._context, store, now_micros())

    def delete_store(self, store_name: str) -> StoreDocument | None:
        """Delete a store, its keys and its document, in this context.

        :returns: the store's document as it was, or ``None`` if it did not exist.
        """
        store = check_name(store_name)
        record = self._repo.delete_store(self._context, store, now_micros())
        _tell_subscribers(self._repo, self._context, store)
        if record is None:
            return None
        try:
            return store_document(store, record, self._context)
        except CorruptStoreError as exc:
            # The store is gone (deleting is how damage is cleared); only its
            # document could not be read back, so a blank one stands for it.
            from ._documents import StoreDocument

            _log.warning(__name__, "deleted a damaged store: %s", exc)
            return StoreDocument(store_name=store, dataset_id=self._context)

    # Keys ----------------------------------------------------------------------------

    def set_key(
        self,
        store_name: str,
        key: str,
        value: Any,
        ttl: float | None = None,
        policy: str = "persist",
    ) -> KeyDocument:
        """Set a key's value, creating the store if needed.

        Every call defines the key anew: value, ``updated_at``, expiry (``ttl``
        seconds from now, or none when ``ttl`` is ``None``) and policy (``"evict"``
        when a TTL is given). ``created_at`` is kept while the key stays live.

        :param value: a storable value (see the README); it is copied.
        :param ttl: seconds until the key expires, an int or float > 0.
        :returns: the key as stored (a tuple reads back as a list, and so on).
        :raises InvalidValueError: for a value that cannot be stored.
        """
        store, record = self._set(
            store_name, key, value, ttl, policy, only_if_absent=False
        )
        assert record is not None
        _tell_subscribers(self._repo, self._context, store)
        return key_document(store, record, self._context)

    def set_cache_key(
        self, store_name: str, key: str, value: Any, ttl: float | None = None
    ) -> KeyDocument:
        """Set a key with the ``"evict"`` policy, so :meth:`clear_cache` removes it."""
        return self.set_key(store_name, key, value, ttl=ttl, policy="evict")

    def set_key_if_absent(
        self,
        store_name: str,
        key: str,
        value: Any,
        ttl: float | None = None,
        policy: str = "persist",
    ) -> bool:
        """Set a key only if it has no live value; atomic across processes.

        :returns: whether this call set the key.
        """
        store, record = self._set(
            store_name, key, value, ttl, policy, only_if_absent=True
        )
        _tell_subscribers(self._repo, self._context, store)
        return record is not None

    def compare_and_set_key(
        self,
        store_name: str,
        key: str,
        expected: Any,
        value: Any,
        ttl: float | None = None,
        policy: str = "persist",
    ) -> bool:
        """Set a live key to ``value`` only if it now equals ``expected``.

        The comparison (``==`` on the value as stored, so ``(1, 2)`` matches
        ``[1, 2]``) and the write are one atomic step across threads and
        processes. A missing or expired key never matches.

        :returns: whether this call set the key.
        """
        store = check_name(store_name)
        key = check_key(key)
        policy = check_policy(policy)
        wanted = _codec.normalize(expected, "expected")
        text = _codec.encode(value)
        now, expires_at, policy = write_timing(ttl, policy)

        def matches(current: str) -> bool:
            return bool(stored_value(current, store, key) == wanted)

        record = self._repo.compare_and_set_key(
            self._context, store, key, matches, text, expires_at, policy, now
        )
        _tell_subscribers(self._repo, self._context, store)
        return record is not None

    def set_keys(
        self,
        store_name: str,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        ttl: float | None = None,
        policy: str = "persist",
    ) -> None:
        """Set many keys in one step: all are written, or none.

        Much faster than one :meth:`set_key` per key. Not part of FiftyOne's API.

        :param items: a mapping of key to value, or ``(key, value)`` pairs.
        """
        store, policy = check_name(store_name), check_policy(policy)
        encoded = [
            (check_key(key), _codec.encode(value)) for key, value in item_pairs(items)
        ]
        now, expires_at, policy = write_timing(ttl, policy)
        if encoded:
            self._repo.set_keys(self._context, store, encoded, expires_at, policy, now)
            _tell_subscribers(self._repo, self._context, store)

    def has_key(self, store_name: str, key: str) -> bool:
        """Tell whether the key has a live value."""
        # check_store_key's test of plain names, and the time, inline: each call
        # costs a read a twentieth of its time.
        if not (
            type(store_name) is str
            and store_name.isascii()
            and store_name
            and type(key) is str
            and key.isascii()
            and key
            and key != STORE_KEY
        ):
            store_name, key = check_store_key(store_name, key)
        return self._repo.has_key(self._context, store_name, key, time_ns() // 1000)

    def get_key(self, store_name: str, key: str) -> KeyDocument | None:
        """Return the key, or ``None`` if it is missing or expired."""
        store, key = check_store_key(store_name, key)
        record = self._repo.get_key(self._context, store, key, time_ns() // 1000)
        return None if record is None else key_document(store, record, self._context)

    def get_value(self, store_name: str, key: str, default: Any = None) -> Any:
        """Return the key's value, or ``default`` if it is missing or expired.

        Quicker than :meth:`get_key` when the timestamps are not needed. Not
        part of FiftyOne's API.
        """
        if not (
            type(store_name) is str
            and store_name.isascii()
            and store_name
            and type(key) is str
            and key.isascii()
            and key
            and key != STORE_KEY
        ):  # has_key's test, inline
            store_name, key = check_store_key(store_name, key)
        text = self._repo.get_value(self._context, store_name, key, time_ns() // 1000)
        # stored_value's work, inline: a call costs a read a hundredth of its time.
        try:
            return default if text is None else _codec.decode(text)
        except CorruptStoreError as exc:
            raise damaged_value(exc, store_name, key) from exc

    def delete_key(self, store_name: str, key: str) -> bool:
        """Delete a key; return whether it had a live value."""
        store, key = check_store_key(store_name, key)
        deleted = self._repo.delete_key(self._context, store, key, time_ns() // 1000)
        _tell_subscribers(self._repo, self._context, store)
        return deleted

    def update_ttl(
        self, store_name: str, key: str, new_ttl: float | None
    ) -> KeyDocument | None:
        """Give a live key a new TTL (seconds from now), or none with ``None``.

        The policy and ``updated_at`` stay as they are.

        :returns: the updated key, or ``None`` if it is missing or expired.
        """
        store, key = check_store_key(store_name, key)
        now = now_micros()
        expires_at = expiry(new_ttl, now, "new_ttl")
        return self._update_key(store, key, now, expires_at, None, set_expiry=True)

    def update_policy(
        self, store_name: str, key: str, policy: str
    ) -> KeyDocument | None:
        """Change a live key's policy to ``"persist"`` or ``"evict"``.

        :returns: the updated key, or ``None`` if it is missing or expired.
        """
        store, key = check_store_key(store_name, key)
        policy = check_policy(policy)
        return self._update_key(
            store, key, now_micros(), None, policy, set_expiry=False
        )

    def list_keys(self, store_name: str) -> list[str]:
        """Return the store's live keys, sorted."""
        store = check_name(store_name)
        return self._repo.list_keys(self._context, store, now_micros())

    def list_values(
        self,
        store_name: str,
        key_prefix: str | None = None,
        exclude_fields: Iterable[str] | None = None,
    ) -> list[Any]:
        """Return the values of the store's live keys, in key order.

        :param key_prefix: only keys starting with this literal, case-sensitive
            string; ``None`` or ``""`` for all.
        :param exclude_fields: top-level fields to leave out of dict values (the
            stored values are not changed).
        :returns: the values; ``None`` values are kept.
        """
        store = check_name(store_name)
        if key_prefix is not None and not isinstance(key_prefix, str):
            raise ArgumentTypeError(
                f"key_prefix must be a str or None, not {type(key_prefix).__name__}"
            )
        excluded = check_fields(exclude_fields)
        items = self._repo.list_items(self._context, store, now_micros(), key_prefix)
        values = [stored_value(text, store, key) for key, text in items]
        if excluded:
            values = [
                {k: v for k, v in value.items() if k not in excluded}
                if isinstance(value, dict)
                else value
                for value in values
            ]
        return values

    def count_keys(self, store_name: str) -> int:
        """Return the number of live keys in the store."""
        store = check_name(store_name)
        return self._repo.count_keys(self._context, store, now_micros())

    def clear_cache(self, store_name: str | None = None) -> None:
        """Delete cache entries in this context: one store's, or every store's.

        Removes keys whose policy is ``"evict"`` or that have a TTL, and store
        documents created with ``policy="evict"``.
        """
        store = None if store_name is None else check_name(store_name)
        self._repo.clear_cache(self._context, store, now_micros())
        _tell_subscribers(self._repo, self._context, store)

    def cleanup(self) -> None:
        """Delete every store of this context, keys and documents alike."""
        now = now_micros()
        for store in self._repo.list_stores(self._context, now):
            try:
                self._repo.delete_store(self._context, store, now)
            except CorruptStoreError as exc:  # damage list_stores could not see
                _log.warning(__name__, "not deleting a damaged store: %s", exc)
        _tell_subscribers(self._repo, self._context, None)

    def sweep(self) -> dict[tuple[str | None, str], int]:
        """Delete expired keys for good, in every context of this collection.

        Reads never return expired keys anyway; this frees their space for new keys. Not
        part of FiftyOne's API. A damaged store, or one another process keeps busy
        for longer than the timeout, is left out with a warning on the
        ``localstore`` logger.

        :returns: keys deleted per ``(dataset_id, store_name)``, zeros left out.
        """
        return self._repo.sweep(now_micros())

    # Subscriptions -------------------------------------------------------------------

    def subscribe(
        self, store_name: str, callback: Callable[[ChangeEvent], object]
    ) -> str:
        """Call ``callback`` with a :class:`~localstore.ChangeEvent` per changed key.

        Changes made in this process arrive before the writing call returns,
        on the writer's thread; changes made by other processes arrive within a
        second, on a background thread. A callback that raises is logged and
        stays subscribed. Only this service's context is watched.

        :returns: the subscription id, for :meth:`unsubscribe`.
        :raises ArgumentTypeError: if ``callback`` is not callable.
        """
        store = check_name(store_name)
        from . import _notify  # imported late: it starts threads

        return _notify.subscribe(self._repo, self._context, store, callback)

    def unsubscribe(self, subscription_id: str) -> bool:
        """End a subscription of this process; return whether it existed."""
        from . import _notify

        return _notify.unsubscribe(subscription_id)

    # Across contexts ------------------------------------------------------------------

    def has_store_global(self, store_name: str) -> bool:
        """Tell whether the store exists in any context of this collection."""
        return _collection.has_store(self._repo, check_name(store_name), now_micros())

    def list_stores_global(self) -> list[StoreDocument]:
        """Return one document per store and context, key-only stores included."""
        return _collection.list_stores(self._repo, now_micros())

    def count_stores_global(self) -> int:
        """Return the number of (store, context) pairs in this collection."""
        return _collection.count_stores(self._repo, now_micros())

    def delete_store_global(self, store_name: str) -> int:
        """Delete the store in every context; return how many contexts had it."""
        store = check_name(store_name)
        return _collection.delete_store(
            self._repo, store, now_micros(), _tell_subscribers
        )

    # Helpers ---------------------------------------------------------------------

    def _update_key(
        self,
        store: str,
        key: str,
        now: int,
        expires_at: int | None,
        policy: str | None,
        *,
        set_expiry: bool,
    ) -> KeyDocument | None:
        """Change a live key's expiry and/or policy; return it as it then is."""
        # A key that could not be returned (a value damaged by hand) must be
        # refused before it is changed: read it as a document first.
        current = self._repo.get_key(self._context, store, key, now)
        if current is None:
            return None
        key_document(store, current, self._context)
        record = self._repo.update_key(
            self._context,
            store,
            key,
            now,
            expires_at=expires_at,
            policy=policy,
            set_expiry=set_expiry,
        )
        return None if record is None else key_document(store, record, self._context)

    def _put_key(
        self, store_name: str, key: str, value: Any, ttl: float | None, policy: str
    ) -> None:
        """Set a key and return nothing (``ExecutionStore.set``): a little quicker."""
        store, key, text, now, expires_at, policy = check_write(
            store_name, key, value, ttl, policy
        )
        self._repo.put_key(self._context, store, key, text, expires_at, policy, now)
        if "localstore._notify" in sys.modules:  # _tell_subscribers' test, inline
            _tell_subscribers(self._repo, self._context, store)

    def _set(
        self,
        store_name: str,
        key: str,
        value: Any,
        ttl: float | None,
        policy: str,
        *,
        only_if_absent: bool,
    ) -> tuple[str, KeyRecord | None]:
        """Validate, encode and write one key; return the checked store name too."""
        store, key, text, now, expires_at, policy = check_write(
            store_name, key, value, ttl, policy
        )
        record = self._repo.set_key(
            self._context,
            store,
            key,
            text,
            expires_at,
            policy,
            now,
            only_if_absent=only_if_absent,
        )
        return store, record


def _tell_subscribers(repo: Backend, context: str | None, store: str | None) -> None:
    """Let this process's subscribers of ``store`` (``None``: all) see a write."""
    # subscribe() imports _notify, so until then nobody in this process listens
    # and a write pays one dict lookup.
    notify = sys.modules.get("localstore._notify")
    if notify is not None:
        notify.store_changed(repo, context, store)
