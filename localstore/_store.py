"""``ExecutionStore``: one named store, as a plugin sees it through ``ctx.store()``."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable

from ._service import ExecutionStoreService
from ._validate import check_name, check_policy
from .errors import ArgumentTypeError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._documents import KeyDocument
    from ._notify import ChangeEvent

__all__ = ["ExecutionStore"]


class ExecutionStore:
    """A key-value store of one name in one context.

    A thin layer over :class:`ExecutionStoreService` with FiftyOne's method
    names. Nothing is written until a key is set.

    :param default_policy: the policy of keys set without one, ``"persist"`` or
        ``"evict"``.
    """

    def __init__(
        self,
        store_name: str,
        store_service: ExecutionStoreService,
        default_policy: str = "persist",
    ) -> None:
        self.store_name = check_name(store_name)
        if not isinstance(store_service, ExecutionStoreService):
            raise ArgumentTypeError(
                "store_service must be an ExecutionStoreService, not "
                f"{type(store_service).__name__} ({store_service!r})"
            )
        self._service = store_service
        self._default_policy = check_policy(default_policy)

    @classmethod
    def create(
        cls,
        store_name: str,
        dataset_id: Any = None,
        default_policy: str = "persist",
        collection_name: str | None = None,
        *,
        root: str | os.PathLike[str] | None = None,
        backend: str = "sqlite",
    ) -> ExecutionStore:
        """Return the store ``store_name`` of a dataset's context (or the global one).

        The arguments after ``default_policy`` are those of
        :class:`ExecutionStoreService`.
        """
        service = ExecutionStoreService(
            dataset_id=dataset_id,
            collection_name=collection_name,
            root=root,
            backend=backend,
        )
        return cls(store_name, service, default_policy)

    def __repr__(self) -> str:
        return f"ExecutionStore({self.store_name!r}, {self._service!r})"

    @property
    def service(self) -> ExecutionStoreService:
        """The service this store works through."""
        return self._service

    def get(self, key: str) -> Any:
        """Return the key's value, or ``None`` if it is missing or expired.

        A stored ``None`` reads the same as a missing key; use :meth:`has`.
        """
        return self._service.get_value(self.store_name, key)

    def set(
        self, key: str, value: Any, ttl: float | None = None, policy: str | None = None
    ) -> None:
        """Set a key's value; ``policy=None`` uses the store's default policy.

        :param ttl: seconds until the key expires; ``None`` for never.
        """
        chosen = self._default_policy if policy is None else policy
        # Not set_key: it would read the key back into a KeyDocument, only for
        # this method to drop it.
        self._service._put_key(self.store_name, key, value, ttl, chosen)

    def set_cache(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Set a key with the ``"evict"`` policy, so :meth:`clear_cache` removes it."""
        self._service._put_key(self.store_name, key, value, ttl, "evict")

    def set_if_absent(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Set a key only if it has no live value; return whether it was set."""
        return self._service.set_key_if_absent(
            self.store_name, key, value, ttl=ttl, policy=self._default_policy
        )

    def compare_and_set(
        self, key: str, expected: Any, value: Any, ttl: float | None = None
    ) -> bool:
        """Set a live key to ``value`` only if it equals ``expected``, atomically."""
        return self._service.compare_and_set_key(
            self.store_name, key, expected, value, ttl=ttl, policy=self._default_policy
        )

    def delete(self, key: str) -> bool:
        """Delete a key; return whether it had a live value."""
        return self._service.delete_key(self.store_name, key)

    def has(self, key: str) -> bool:
        """Tell whether the key has a live value."""
        return self._service.has_key(self.store_name, key)

    def clear(self) -> None:
        """Delete the whole store: every key and its document."""
        self._service.delete_store(self.store_name)

    def clear_cache(self) -> None:
        """Delete this store's keys that have the ``"evict"`` policy or a TTL."""
        self._service.clear_cache(self.store_name)

    def update_ttl(self, key: str, new_ttl: float | None) -> KeyDocument | None:
        """Give a live key a new TTL in seconds from now, or none with ``None``.

        :returns: the updated key, or ``None`` if it is missing or expired.
        """
        return self._service.update_ttl(self.store_name, key, new_ttl)

    def update_policy(self, key: str, policy: str) -> KeyDocument | None:
        """Change a live key's policy to ``"persist"`` or ``"evict"``.

        :returns: the updated key, or ``None`` if it is missing or expired.
        """
        return self._service.update_policy(self.store_name, key, policy)

    def get_metadata(self, key: str) -> dict[str, dt.datetime | None] | None:
        """Return the key's ``created_at``, ``updated_at`` and ``expires_at``.

        :returns: a dict of naive UTC datetimes (``expires_at`` ``None`` without a
            TTL), or ``None`` if the key is missing or expired.
        """
        doc = self._service.get_key(self.store_name, key)
        if doc is None:
            return None
        return {
            "created_at": doc.created_at,
            "updated_at": doc.updated_at,
            "expires_at": doc.expires_at,
        }

    def list_keys(self) -> list[str]:
        """Return the store's live keys, sorted."""
        return self._service.list_keys(self.store_name)

    def list_values(
        self, key_prefix: str | None = None, exclude_fields: Iterable[str] | None = None
    ) -> list[Any]:
        """Return the live values in key order (see ``ExecutionStoreService``)."""
        return self._service.list_values(self.store_name, key_prefix, exclude_fields)

    def list_stores(self) -> list[str]:
        """Return the names of every store in this store's context."""
        return self._service.list_stores()

    def subscribe(self, callback: Callable[[ChangeEvent], object]) -> str:
        """Call ``callback`` with a :class:`~localstore.ChangeEvent` per changed key.

        See :meth:`ExecutionStoreService.subscribe`.

        :returns: the subscription id, for :meth:`unsubscribe`.
        """
        return self._service.subscribe(self.store_name, callback)

    def unsubscribe(self, subscription_id: str) -> bool:
        """End a subscription; return whether it existed."""
        return self._service.unsubscribe(subscription_id)
