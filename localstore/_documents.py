"""The documents a service returns: :class:`KeyDocument` and :class:`StoreDocument`."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from ._validate import STORE_KEY

__all__ = ["STORE_KEY", "KeyDocument", "KeyPolicy", "StoreDocument", "utcnow"]

_EPOCH = dt.datetime(1970, 1, 1)


def utcnow() -> dt.datetime:
    """Return the current time as a naive UTC datetime, as FiftyOne stores times."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def to_datetime(micros: int | None) -> dt.datetime | None:
    """Convert microseconds since the Unix epoch to a naive UTC datetime."""
    if micros is None:
        return None
    return _EPOCH + dt.timedelta(microseconds=micros)


def to_micros(moment: dt.datetime) -> int:
    """Convert a naive UTC datetime to microseconds since the Unix epoch."""
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


class KeyPolicy(str, enum.Enum):
    """What :meth:`ExecutionStoreService.clear_cache` may remove.

    ``PERSIST`` keys stay until deleted (or until their TTL runs out); ``EVICT``
    keys are cache entries that ``clear_cache`` removes. Being a ``str`` enum,
    ``KeyPolicy.EVICT == "evict"`` is true.
    """

    PERSIST = "persist"
    EVICT = "evict"

    def __str__(self) -> str:
        return self.value


@dataclass
class KeyDocument:
    """One key of a store, with its value, timestamps and policy.

    Timestamps are naive ``datetime`` objects in UTC. ``expires_at`` is ``None``
    for a key without a TTL. ``dataset_id`` is ``None`` in the global context,
    otherwise the context's id as a string.
    """

    store_name: str
    key: str
    value: Any
    _id: Any = None
    dataset_id: str | None = None
    created_at: dt.datetime = field(default_factory=utcnow)
    updated_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    policy: KeyPolicy = KeyPolicy.PERSIST

    @staticmethod
    def get_expiration(ttl: float | None) -> dt.datetime | None:
        """Return the instant a TTL of ``ttl`` seconds from now ends, or ``None``."""
        if ttl is None:
            return None
        return utcnow() + dt.timedelta(seconds=ttl)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> KeyDocument:
        """Build a document from a dict of its fields.

        A missing or empty ``policy`` becomes ``"evict"`` when ``expires_at`` is
        set and ``"persist"`` otherwise.

        :raises ValueError: for an unknown policy.
        :raises TypeError: for a field the document does not have.
        """
        fields = dict(doc)
        raw = fields.pop("policy", None)
        if raw:
            policy = KeyPolicy(raw)
        else:
            policy = KeyPolicy.EVICT if fields.get("expires_at") else KeyPolicy.PERSIST
        return cls(**fields, policy=policy)

    def to_mongo_dict(self) -> dict[str, Any]:
        """Return the fields as a dict, without ``_id`` and with ``policy`` a str."""
        data = asdict(self)
        data.pop("_id", None)
        data["policy"] = str(self.policy.value)
        return data


@dataclass
class StoreDocument(KeyDocument):
    """The document that holds a store's metadata (its key is ``"__store__"``)."""

    key: str = STORE_KEY
    value: dict[str, Any] | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        """The store's metadata; ``{}`` when it has none."""
        return self.value or {}
