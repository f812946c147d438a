"""Checks on the arguments of the public API, run before anything is touched."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping

from ._codec import encode
from .errors import ArgumentTypeError, InvalidArgumentError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "STORE_KEY",
    "check_dataset_id",
    "check_fields",
    "check_key",
    "check_name",
    "check_policy",
    "check_timeout",
    "check_write",
    "expiry",
    "item_pairs",
    "write_timing",
]

#: The key under which FiftyOne keeps a store's own document; reserved here.
STORE_KEY = "__store__"

_POLICIES = {"persist": "persist", "evict": "evict"}
_MAX_TIMEOUT = 2_000_000.0  # SQLite's busy timeout is a 32-bit count of milliseconds
_LATEST = 253_402_300_799_000_000  # 9999-12-31 23:59:59 UTC in epoch microseconds


def check_name(name: Any, what: str = "store_name") -> str:
    """Return a store or collection name, or raise for one that cannot be used."""
    if not isinstance(name, str):
        raise ArgumentTypeError(
            f"{what} must be a str, not {type(name).__name__} ({name!r})"
        )
    if not name:
        raise InvalidArgumentError(f"{what} must not be empty")
    if not name.isascii():
        _check_encodable(name, what)
    # A str subclass is kept as the plain str it holds: documents and file names
    # must not carry the caller's class (nor call its __str__).
    return name if type(name) is str else str.__str__(name)


def check_key(key: Any) -> str:
    """Return a key, or raise for one that cannot be used (``"__store__"`` included)."""
    if type(key) is str and key.isascii() and key and key != STORE_KEY:
        return key  # the common case, checked without a further call
    checked = check_name(key, "key")
    if checked == STORE_KEY:
        raise InvalidArgumentError(
            f"the key {STORE_KEY!r} is reserved for the store's own document"
        )
    return checked


def check_store_key(store_name: Any, key: Any) -> tuple[str, str]:
    """Return a store name and a key, or raise for one that cannot be used."""
    # Plain ASCII names, the common case, pass without a call per name: the
    # calls would cost a single-key read a tenth of its time.
    if not (type(store_name) is str and store_name.isascii() and store_name):
        store_name = check_name(store_name)
    if not (type(key) is str and key.isascii() and key and key != STORE_KEY):
        key = check_key(key)
    return store_name, key


def check_dataset_id(dataset_id: Any) -> str | None:
    """Return the context key of a dataset id: ``None`` or its ``str`` form.

    A bson ``ObjectId`` and its hex string are the same context.
    """
    if dataset_id is None:
        return None
    kind = type(dataset_id)
    if kind.__name__ == "ObjectId" and kind.__module__.startswith("bson"):
        return str(dataset_id)
    if not isinstance(dataset_id, str):
        raise ArgumentTypeError(
            "dataset_id must be None, a str or a bson ObjectId, not "
            f"{kind.__name__} ({dataset_id!r})"
        )
    return check_name(dataset_id, "dataset_id")


def check_policy(policy: Any) -> str:
    """Return ``"persist"`` or ``"evict"``, or raise for anything else."""
    if not isinstance(policy, str):
        raise ArgumentTypeError(
            f"policy must be 'persist' or 'evict', not {type(policy).__name__} "
            f"({policy!r})"
        )
    try:
        # A KeyPolicy is a str subclass: slicing gives its plain str value.
        return _POLICIES[policy if type(policy) is str else policy[:]]
    except KeyError:
        raise InvalidArgumentError(
            f"policy must be 'persist' or 'evict', not {policy!r}"
        ) from None


def expiry(ttl: Any, now: int, what: str = "ttl") -> int | None:
    """Return when a TTL of ``ttl`` seconds from ``now`` ends, in epoch microseconds.

    ``None`` means no expiry. A TTL is an int or a float greater than 0, not a
    bool, NaN or an infinity.
    """
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise ArgumentTypeError(
            f"{what} must be a number of seconds (int or float), not "
            f"{type(ttl).__name__} ({ttl!r})"
        )
    if not math.isfinite(ttl) or ttl <= 0:
        raise InvalidArgumentError(
            f"{what} must be a finite number of seconds greater than 0, not {ttl!r}"
        )
    # Compared in seconds first: ttl * 1e6 can overflow to infinity (1e308).
    if (
        ttl > (_LATEST - now) / 1_000_000
        or (expires_at := now + max(1, round(ttl * 1_000_000))) > _LATEST
    ):
        raise InvalidArgumentError(
            f"{what} of {ttl!r} seconds ends after the year 9999, the last one a "
            "datetime can hold"
        )
    return expires_at


def check_timeout(timeout: Any) -> float:
    """Return a lock timeout in seconds: a finite number from 0 to 2,000,000."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ArgumentTypeError(
            f"timeout must be a number of seconds, not {type(timeout).__name__} "
            f"({timeout!r})"
        )
    if not 0 <= timeout <= _MAX_TIMEOUT:  # also false for NaN
        raise InvalidArgumentError(
            f"timeout must be from 0 to {_MAX_TIMEOUT:.0f} seconds, not {timeout!r}"
        )
    return float(timeout)


def now_micros() -> int:
    """Return the current time in microseconds since the Unix epoch (UTC)."""
    return time.time_ns() // 1000


def _check_encodable(text: str, what: str) -> None:
    """Raise if ``text`` holds a lone surrogate, which no file or database can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(
            f"{what} {text!r} holds a lone surrogate and is not valid Unicode"
        ) from None


def check_write(
    store_name: Any, key: Any, value: Any, ttl: Any, policy: Any
) -> tuple[str, str, str, int, int | None, str]:
    """Check a key's write and encode its value, before anything is touched.

    :returns: the store, key, value text, the time now, the expiry and policy.
    """
    if not (
        type(store_name) is str
        and store_name.isascii()
        and store_name
        and type(key) is str
        and key.isascii()
        and key
        and key != STORE_KEY
    ):  # check_store_key's test, inline
        store_name, key = check_store_key(store_name, key)
    # A policy given as a str, the common case, is checked without a call:
    # calls cost a small write as much as the check of its value.
    checked = _POLICIES.get(policy) if type(policy) is str else None
    if checked is None:
        checked = check_policy(policy)
    text = encode(value)
    now = time.time_ns() // 1000
    if ttl is None:
        return store_name, key, text, now, None, checked
    return store_name, key, text, now, expiry(ttl, now), "evict"


def write_timing(ttl: Any, policy: str) -> tuple[int, int | None, str]:
    """Return the time now, when a key set now with ``ttl`` expires, and its policy.

    A TTL makes the key evictable, whatever policy was asked for.
    """
    now = now_micros()
    if ttl is None:  # most keys: no call to make
        return now, None, policy
    return now, expiry(ttl, now), "evict"


def item_pairs(items: Any) -> list[tuple[Any, Any]]:
    """Return ``set_keys``' items as a list of pairs, or raise for another shape."""
    if isinstance(items, Mapping):
        return list(items.items())
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ArgumentTypeError(
            f"items must be a mapping or (key, value) pairs, not {type(items).__name__}"
        )
    pairs = list(items)
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ArgumentTypeError(f"items must be (key, value) pairs; got {pair!r}")
    return pairs


def check_fields(fields: Iterable[str] | None) -> frozenset[str]:
    """Return ``exclude_fields`` as a set, or raise if it is not names."""
    if fields is None:
        return frozenset()
    if isinstance(fields, str) or not isinstance(fields, Iterable):
        raise ArgumentTypeError(
            f"exclude_fields must be a list of field names, not {fields!r}"
        )
    names = frozenset(fields)
    for name in names:
        if not isinstance(name, str):
            raise ArgumentTypeError(f"exclude_fields holds {name!r}, not a str")
    return names
