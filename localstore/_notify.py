"""Subscriptions: calling back with every change to the keys of a store.

A write made through any service of this process reaches the subscribers of its
store before the write returns: the service calls :func:`store_changed`. Writes
made by other processes are noticed by one background thread per process, which
polls the backend's cheap :meth:`~localstore._backend.Backend.change_marker` of
each watched store every :data:`POLL_INTERVAL` seconds. The thread starts with
the first subscription and is stopped and joined with the last.

Either way a change is found by reading the store's live keys and comparing them
with the previous reading, so an event tells what is different now, not which
call made it: setting a key to the value it already has sends nothing, several
writes of another process between two polls may arrive as one event, and a key
that expires is reported as deleted only when the store next changes.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from . import _codec
from ._backend import Backend
from ._validate import now_micros
from .errors import ArgumentTypeError

__all__ = ["POLL_INTERVAL", "ChangeEvent", "store_changed", "subscribe", "unsubscribe"]

logger = logging.getLogger(__name__)

#: Seconds between two looks for changes made by other processes.
POLL_INTERVAL = 0.2

#: What happened to a key: it was added, given another value, or removed.
Operation = Literal["insert", "update", "delete"]

#: The watched store: backend kind, root, collection, context and store name.
_WatchKey = tuple[str, str, str, str | None, str]


@dataclass(frozen=True)
class ChangeEvent:
    """One change to a key, as a subscriber's callback receives it.

    :param store_name: the store whose key changed.
    :param dataset_id: the store's context: a dataset id, or ``None`` for global.
    :param key: the key that changed.
    :param operation: ``"insert"``, ``"update"`` or ``"delete"``.
    :param value: the key's new value (a copy); ``None`` for a deletion.
    """

    store_name: str
    dataset_id: str | None
    key: str
    operation: Operation
    value: Any = None


#: What :meth:`subscribe` accepts; its return value is ignored.
Callback = Callable[[ChangeEvent], object]


class _Watch:
    """One watched store: its subscribers and its live keys as last read."""

    def __init__(self, repo: Backend, context: str | None, store: str) -> None:
        self.repo = repo
        self.context = context
        self.store = store
        self.callbacks: dict[str, Callback] = {}

        # Held while reading and comparing, so two threads never report one
        # change twice; callbacks run after it is released.
        self.lock = threading.Lock()
        self.marker = repo.change_marker(context, store)
        self.items = dict(repo.list_items(context, store, now_micros(), None))

    def poll(self) -> list[ChangeEvent]:
        """Return the changes since the last reading, if the marker moved."""
        if self.repo.change_marker(self.context, self.store) == self.marker:
            return []
        return self.refresh()

    def refresh(self) -> list[ChangeEvent]:
        """Read the store again and return how it differs from the last reading."""
        with self.lock:
            # The marker is read first: a write that lands between the two reads
            # moves it again, so the next poll reads the store once more.
            marker = self.repo.change_marker(self.context, self.store)
            now = now_micros()
            items = dict(self.repo.list_items(self.context, self.store, now, None))
            events = self._compare(self.items, items)
            self.marker, self.items = marker, items
        return events

    def _compare(self, old: dict[str, str], new: dict[str, str]) -> list[ChangeEvent]:
        """Return the events that turn the reading ``old`` into ``new``, by key."""
        events = []
        for key in sorted(old.keys() | new.keys()):
            before, after = old.get(key), new.get(key)
            if before == after:
                continue
            if after is None:
                operation: Operation = "delete"
            else:
                operation = "insert" if before is None else "update"
            value = None if after is None else _codec.decode(after)
            events.append(ChangeEvent(self.store, self.context, key, operation, value))
        return events


class _Watcher(threading.Thread):
    """The background thread that looks for changes made by other processes."""

    def __init__(self, registry: _Registry) -> None:
        super().__init__(name="localstore-watcher", daemon=True)
        self.registry = registry
        self.stopping = threading.Event()

    def run(self) -> None:
        """Poll every watched store until told to stop."""
        logger.debug("watcher started")
        while not self.stopping.wait(POLL_INTERVAL):
            for watch in self.registry.current_watches():
                # A store that cannot be read now (a removed root, a busy file)
                # is tried again at the next poll.
                _read_and_deliver(watch, watch.poll)
        logger.debug("watcher stopped")


class _Registry:
    """The process's subscriptions, by watched store, and its watcher thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.watches: dict[_WatchKey, _Watch] = {}
        self.owners: dict[str, _WatchKey] = {}
        self.watcher: _Watcher | None = None

    def current_watches(self) -> list[_Watch]:
        """Return the watched stores as of now."""
        with self.lock:
            return list(self.watches.values())


_registry = _Registry()


def _forget_inherited_subscriptions() -> None:
    """In a forked child, start with no subscriptions: the watcher was not copied."""
    global _registry
    _registry = _Registry()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited_subscriptions)


def subscribe(repo: Backend, context: str | None, store: str, callback: Any) -> str:
    """Call ``callback`` with a :class:`ChangeEvent` for each change to a store.

    :returns: the subscription id, for :func:`unsubscribe`.
    :raises ArgumentTypeError: if ``callback`` is not callable.
    """
    if not callable(callback):
        raise ArgumentTypeError(
            f"callback must be callable, not {type(callback).__name__} ({callback!r})"
        )
    key = (repo.kind, repo.root, repo.collection, context, store)
    subscription_id = str(uuid.uuid4())

    registry = _registry
    with registry.lock:
        watch = registry.watches.get(key)
        if watch is None:
            watch = _Watch(repo, context, store)
            registry.watches[key] = watch
        watch.callbacks[subscription_id] = callback
        registry.owners[subscription_id] = key
        if registry.watcher is None:
            registry.watcher = _Watcher(registry)
            registry.watcher.start()
    return subscription_id


def unsubscribe(subscription_id: Any) -> bool:
    """End a subscription; return whether it existed.

    The last subscription's end stops the watcher thread and waits for it.

    :raises ArgumentTypeError: if ``subscription_id`` is not a ``str``.
    """
    if not isinstance(subscription_id, str):
        raise ArgumentTypeError(
            "subscription_id must be a str, not "
            f"{type(subscription_id).__name__} ({subscription_id!r})"
        )
    stopped = None

    registry = _registry
    with registry.lock:
        key = registry.owners.pop(subscription_id, None)
        if key is None:
            return False
        watch = registry.watches[key]
        del watch.callbacks[subscription_id]
        if not watch.callbacks:
            del registry.watches[key]
        if not registry.watches and registry.watcher is not None:
            stopped, registry.watcher = registry.watcher, None
            stopped.stopping.set()

    # Joined outside the lock, which the watcher takes; a callback that ends
    # the last subscription runs on the watcher itself, which then just exits.
    if stopped is not None and stopped is not threading.current_thread():
        stopped.join()
    return True


def store_changed(repo: Backend, context: str | None, store: str | None) -> None:
    """Tell the subscribers of ``store`` (``None``: every store of the context).

    Called by the service after each write. Errors are logged, not raised: the
    write itself succeeded.
    """
    registry = _registry
    if not registry.watches:
        return
    wanted = (repo.kind, repo.root, repo.collection, context)
    with registry.lock:
        watches = [
            watch
            for key, watch in registry.watches.items()
            if key[:4] == wanted and (store is None or key[4] == store)
        ]

    for watch in watches:
        _read_and_deliver(watch, watch.refresh)


def _read_and_deliver(watch: _Watch, read: Callable[[], list[ChangeEvent]]) -> None:
    """Read a watched store's changes and deliver them; log a store that fails."""
    try:
        events = read()
    except Exception:
        logger.exception(
            "could not read store %r of context %r for subscribers",
            watch.store,
            watch.context,
        )
        return
    _deliver(watch, events)


def _deliver(watch: _Watch, events: list[ChangeEvent]) -> None:
    """Call each current subscriber of ``watch`` with each event, logging failures."""
    if not events:
        return
    with _registry.lock:
        callbacks = list(watch.callbacks.items())

    for event in events:
        for subscription_id, callback in callbacks:
            if subscription_id not in watch.callbacks:
                continue  # ended by an earlier callback
            try:
                callback(event)
            except Exception:
                logger.exception(
                    "subscriber %s of store %r raised on %s of key %r",
                    subscription_id,
                    event.store_name,
                    event.operation,
                    event.key,
                )
