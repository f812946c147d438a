"""``localstore.cached``: memoizing a function's results in an execution store.

Each result is one key of the function's store, set with the ``"evict"`` policy,
so ``clear_cache`` removes it like any other cache entry. The key is the SHA-256
of a canonical JSON text (sorted dict keys, no spaces) of the cache version and
the call's arguments, bound to the function's parameters, so ``f(1, b=2)`` and
``f(b=2, a=1)`` share an entry. FiftyOne's ``execution_cache`` differs on
purpose in two ways: keyword arguments are part of the key, and a ``None``
result is served from the cache like any other.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import types
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from . import _codec
from ._backends import BACKENDS
from ._service import ExecutionStoreService
from ._validate import check_dataset_id, check_name, expiry, now_micros
from .errors import ArgumentTypeError, InvalidArgumentError, InvalidValueError

__all__ = ["CachedFunction", "cached"]

P = ParamSpec("P")
R = TypeVar("R")

#: Stands for "the dataset scope given to the decorator" in ``clear_cache``.
_DECORATOR_SCOPE: Any = object()


class CachedFunction(Generic[P, R]):
    """A function whose results are kept in an execution store; see :func:`cached`.

    Calling it returns the stored result for the same arguments while that is
    live, or calls the function and stores its result. Either way the result
    reads as stored: a tuple comes back as a list, a timezone-aware datetime as
    a naive one in UTC. Two threads or processes that miss at once both call the
    function; the last to finish writes the entry.
    """

    def __init__(
        self,
        func: Callable[P, R],
        *,
        ttl: float | None,
        store_name: str | None,
        dataset_id: Any,
        version: str | int | None,
        key_fn: Callable[..., Any] | None,
        root: str | os.PathLike[str] | None,
        collection_name: str | None,
        backend: str,
    ) -> None:
        _check_arguments(func, ttl, dataset_id, version, key_fn, backend)
        if collection_name is not None:
            check_name(collection_name, "collection_name")
        default_name = f"{func.__module__}.{func.__qualname__}"
        self.store_name = check_name(default_name if store_name is None else store_name)

        self._func = func
        self._ttl = ttl
        self._dataset_id = dataset_id
        self._version = version
        self._key_fn = key_fn
        self._root = root
        self._collection_name = collection_name
        self._backend = backend
        try:
            self._signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):  # some built-ins have no signature
            self._signature = None
        functools.update_wrapper(self, func)

    def __repr__(self) -> str:
        return f"<cached {self._func.__qualname__} in store {self.store_name!r}>"

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        """Bind to ``instance`` like a plain function, for use on methods."""
        if instance is None:
            return self
        return types.MethodType(self, instance)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = self.cache_key(*args, **kwargs)
        service = self._service(self._scope(args, kwargs))

        found = service.get_key(self.store_name, key)
        if found is not None:
            return found.value  # type: ignore[no-any-return]  # stored result of R

        result = self._func(*args, **kwargs)
        try:
            stored = service.set_key(
                self.store_name, key, result, ttl=self._ttl, policy="evict"
            )
        except InvalidValueError as exc:
            raise InvalidValueError(
                f"{self._func.__qualname__} returned a result that cannot be "
                f"cached: {exc}"
            ) from exc
        return stored.value  # type: ignore[no-any-return]  # as a hit returns it

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Return the key under which a call with these arguments is stored.

        :raises InvalidValueError: when the arguments (or what ``key_fn``
            returns) are not storable values.
        :raises TypeError: when the arguments do not fit the function.
        """
        if self._key_fn is not None:
            parts, what = self._key_fn(*args, **kwargs), "key_fn's result"
        elif self._signature is None:
            parts, what = {"args": args, "kwargs": kwargs}, "the arguments"
        else:
            bound = self._signature.bind(*args, **kwargs)
            bound.apply_defaults()
            parts, what = bound.arguments, "the arguments"

        try:
            text = _codec.encode({"version": self._version, "call": parts})
        except InvalidValueError as exc:
            raise InvalidValueError(
                f"{what} of {self._func.__qualname__} cannot be part of a cache key "
                f"({exc}); give cached() a key_fn that returns storable values"
            ) from exc
        canonical = json.dumps(
            json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        import hashlib  # imported late: it costs milliseconds at start-up

        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def clear_cache(self, dataset_id: Any = _DECORATOR_SCOPE) -> None:
        """Delete every stored result of this function in one context.

        :param dataset_id: the context to clear; by default the decorator's
            ``dataset_id``, which must then not be a callable.
        :raises InvalidArgumentError: when the decorator's scope is a callable
            and no ``dataset_id`` is given.
        """
        if dataset_id is _DECORATOR_SCOPE:
            if callable(self._dataset_id):
                raise InvalidArgumentError(
                    f"{self._func.__qualname__} picks its dataset per call; pass "
                    "clear_cache(dataset_id=...) to say which context to clear"
                )
            dataset_id = self._dataset_id
        with self._service(dataset_id) as service:
            service.clear_cache(self.store_name)

    def _scope(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Return the dataset id of a call's context."""
        if callable(self._dataset_id):
            return self._dataset_id(*args, **kwargs)
        return self._dataset_id

    def _service(self, dataset_id: Any) -> ExecutionStoreService:
        """Return a service for ``dataset_id``, on the root as of now.

        Built per call so that a changed ``$LOCALSTORE_ROOT`` (a test fixture's,
        say) takes effect; open store files are shared, so this costs little.
        """
        return ExecutionStoreService(
            dataset_id=dataset_id,
            collection_name=self._collection_name,
            root=self._root,
            backend=self._backend,
        )


@overload
def cached(func: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def cached(
    *,
    ttl: float | None = None,
    store_name: str | None = None,
    dataset_id: Any = None,
    version: str | int | None = None,
    key_fn: Callable[..., Any] | None = None,
    root: str | os.PathLike[str] | None = None,
    collection_name: str | None = None,
    backend: str = "sqlite",
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...


def cached(
    func: Callable[P, R] | None = None,
    /,
    *,
    ttl: float | None = None,
    store_name: str | None = None,
    dataset_id: Any = None,
    version: str | int | None = None,
    key_fn: Callable[..., Any] | None = None,
    root: str | os.PathLike[str] | None = None,
    collection_name: str | None = None,
    backend: str = "sqlite",
) -> CachedFunction[P, R] | Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Keep a function's results in an execution store, one key per set of arguments.

    Use it bare (``@cached``) or with arguments (``@cached(ttl=60)``). Arguments
    are checked when decorating; a result that is not a storable value raises
    at the call that returns it.

    :param ttl: seconds a result stays live; ``None`` keeps it until the cache is
        cleared.
    :param store_name: the store to keep results in; default
        ``"<module>.<qualname>"`` of the function.
    :param dataset_id: the context of the store: a dataset id, ``None`` for the
        global context, or a callable that takes the call's arguments and
        returns the dataset id.
    :param version: part of every key, so a new version misses every result
        stored under another; the old ones stay until the cache is cleared.
    :param key_fn: takes the call's arguments and returns a storable value that
        identifies them, instead of the arguments themselves (for a ``self`` or
        a ``ctx`` argument, say).
    :param root: see :class:`ExecutionStoreService`; ``None`` reads
        ``$LOCALSTORE_ROOT`` at each call.
    :param collection_name: see :class:`ExecutionStoreService`.
    :param backend: see :class:`ExecutionStoreService`.
    :raises ArgumentTypeError: for an argument of the wrong type.
    :raises InvalidArgumentError: for a TTL that is not positive, an empty
        store name or an unknown backend.
    """

    def decorate(function: Callable[P, R]) -> CachedFunction[P, R]:
        return CachedFunction(
            function,
            ttl=ttl,
            store_name=store_name,
            dataset_id=dataset_id,
            version=version,
            key_fn=key_fn,
            root=root,
            collection_name=collection_name,
            backend=backend,
        )

    if func is None:
        return decorate
    return decorate(func)


def _check_arguments(
    func: Any,
    ttl: Any,
    dataset_id: Any,
    version: Any,
    key_fn: Any,
    backend: Any,
) -> None:
    """Raise for a decorator argument that could never work."""
    if not callable(func) or isinstance(func, CachedFunction):
        raise ArgumentTypeError(
            f"cached() decorates a function, not {type(func).__name__} ({func!r})"
        )
    expiry(ttl, now_micros())
    if not callable(dataset_id):
        check_dataset_id(dataset_id)
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, (str, int))
    ):
        raise ArgumentTypeError(
            f"version must be a str, an int or None, not {type(version).__name__} "
            f"({version!r})"
        )
    try:
        _codec.encode(version)
    except InvalidValueError as exc:
        raise InvalidValueError(
            f"version cannot be part of a cache key: {exc}"
        ) from exc
    if key_fn is not None and not callable(key_fn):
        raise ArgumentTypeError(
            f"key_fn must be callable or None, not {type(key_fn).__name__}"
        )
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise InvalidArgumentError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}, not {backend!r}"
        )
