"""The JSON store file: reading, checking and writing the text of one store.

A store file looks like this (strict JSON, two-space indents, keys sorted, each
value on one line)::

    {
      "format": "localstore-store",
      "version": 1,
      "revision": 3,
      "store_name": "my_plugin",
      "dataset_id": null,
      "store": null,
      "keys": {
        "settings": {
          "value": {"threshold": 0.5, "raw": {"$bytes": "AAE="}},
          "created_at": "2026-01-02T03:04:05.123456Z",
          "updated_at": "2026-01-02T03:04:05.123456Z",
          "expires_at": null,
          "policy": "persist"
        }
      }
    }

``store`` holds the store's own document (``metadata``, ``created_at``,
``updated_at``, ``policy``) or ``null``. Values are the codec's JSON, tags
included, and keep their own field order, as MongoDB and the SQLite backend keep
it; times are UTC with microseconds, so they round-trip exactly. ``revision``
counts the writes of the file and sits near the top, where
:func:`read_revision` finds it in the first bytes of the file.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from typing import Any

from ._backend import StoreRecord
from ._documents import STORE_KEY, to_datetime, to_micros
from ._state import Entry, StoreState
from .errors import CorruptStoreError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "FileState",
    "parse",
    "read_names",
    "read_revision",
    "render",
]

FORMAT = "localstore-store"
FORMAT_VERSION = 1

_REVISION = re.compile(rb'"revision": (\d+)')
_POLICIES = ("persist", "evict")
_ENTRY_FIELDS = frozenset(("value", "created_at", "updated_at", "expires_at", "policy"))
_DOCUMENT_FIELDS = frozenset(("metadata", "created_at", "updated_at", "policy"))

#: How many distinct times the parse and format caches keep.
_TIMES_CACHED = 65_536

# The codec's own settings, so a value's text reads back byte for byte.
_dump_value = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":")
).encode

# The same with spaces after separators, for values laid out in the file.
_dump_inline = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=False
).encode


class FileState(StoreState):
    """A store as read from its file; values are held as parsed JSON.

    Entries never change in place (a write replaces them), so two states may
    share them. Two per-key notes ride along, each valid only while the key
    still holds the very object it names: :attr:`checked`, the values already
    found storable, and :attr:`lines`, each entry's text in the last file
    rendered from this state.
    """

    __slots__ = ("checked", "lines", "revision")

    def __init__(
        self,
        document: StoreRecord | None = None,
        keys: dict[str, Entry] | None = None,
        revision: int = 0,
    ) -> None:
        super().__init__(document, keys)
        self.revision = revision  # 0: the file does not exist yet
        self.checked: dict[str, Any] = {}
        self.lines: dict[str, tuple[Entry, str]] = {}

    def copy(self) -> FileState:
        """Return a copy to change, leaving this state as it is."""
        state = FileState(self.document, dict(self.keys), self.revision)
        # Both are replaced whole, never changed, so the copy may share them.
        state.checked = self.checked
        state.lines = self.lines
        return state

    @staticmethod
    def value_from_text(text: str) -> Any:
        """Parse a value's JSON text into the tree the file embeds."""
        return json.loads(text)

    @staticmethod
    def value_to_text(value: Any) -> str:
        """Write a value's tree back as the codec's compact JSON text.

        :raises CorruptStoreError: without a path, for a number that JSON reads
            but cannot write (``1e400`` parses as infinity): only a file edited
            by hand holds one, and the backend names the file.
        """
        try:
            return _dump_value(value)
        except ValueError as exc:
            raise CorruptStoreError(
                f"a value holds a number beyond JSON's range: {exc}"
            ) from exc


class _ShapeError(ValueError):
    """A store file's JSON does not have the layout of a store file."""


def parse(raw: bytes, path: str, context: str | None, store: str) -> FileState:
    """Return the state a store file holds, checking all of it.

    :raises CorruptStoreError: naming ``path``, for text that is not JSON or
        JSON that is not the file of this store.
    """
    try:
        tree = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise CorruptStoreError(
            f"{path} is not valid JSON ({exc}); it was left as it is", path
        ) from exc
    try:
        return _state_from_json(tree, context, store)
    except _ShapeError as exc:
        raise CorruptStoreError(
            f"{path} is not a readable localstore store file: {exc}; it was left "
            "as it is",
            path,
        ) from exc


def _reject_constant(name: str) -> Any:
    """Refuse NaN and Infinity, which strict JSON lacks (values carry them as tags)."""
    raise ValueError(f"{name} is not strict JSON")


def render(state: FileState, context: str | None, store: str) -> bytes:
    """Return the file that holds a state, as UTF-8."""
    return _state_to_json(state, context, store).encode("utf-8")


def read_names(raw: bytes) -> tuple[str, str | None] | None:
    """Return the store name and dataset id a file records, or ``None``."""
    try:
        tree = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(tree, dict):
        return None
    name, context = tree.get("store_name"), tree.get("dataset_id")
    if not isinstance(name, str) or not isinstance(context, (str, type(None))):
        return None
    return name, context


def read_revision(head: bytes) -> int | None:
    """Return the revision written near the top of a file, from its first bytes."""
    match = _REVISION.search(head)
    return None if match is None else int(match[1])


def _state_from_json(tree: Any, context: str | None, store: str) -> FileState:
    """Turn a store file's parsed JSON into a state, checking its shape."""
    if not isinstance(tree, dict) or tree.get("format") != FORMAT:
        raise _ShapeError(f'it lacks "format": "{FORMAT}"')
    version = tree.get("version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise _ShapeError(
            f"its format version is {version!r}; this localstore reads up to "
            f"{FORMAT_VERSION}"
        )
    if tree.get("store_name") != store or tree.get("dataset_id") != context:
        raise _ShapeError(
            f"it records store {tree.get('store_name')!r} of dataset_id "
            f"{tree.get('dataset_id')!r}, not store {store!r} of {context!r}"
        )
    revision = tree.get("revision")
    if type(revision) is not int or revision < 1:
        raise _ShapeError(f'"revision" is {revision!r}, not an int >= 1')
    keys = tree.get("keys")
    if not isinstance(keys, dict):
        raise _ShapeError('"keys" is not an object')
    if STORE_KEY in keys or "" in keys:
        raise _ShapeError(f'"keys" holds {STORE_KEY!r} or "", which are not keys')
    entries = {key: _entry_from_json(raw, key) for key, raw in keys.items()}
    return FileState(_document_from_json(tree.get("store")), entries, revision)


def _entry_from_json(raw: Any, key: str) -> Entry:
    """Check and convert one key's record."""
    where = f"key {key!r}"
    _check_fields(raw, _ENTRY_FIELDS, where)
    expires_at = raw["expires_at"]
    return Entry(
        raw["value"],
        _micros(raw["created_at"], where),
        _micros(raw["updated_at"], where),
        None if expires_at is None else _micros(expires_at, where),
        _policy(raw["policy"], where),
    )


def _document_from_json(raw: Any) -> StoreRecord | None:
    """Check and convert the store's own document, if it has one."""
    if raw is None:
        return None
    where = '"store"'
    _check_fields(raw, _DOCUMENT_FIELDS, where)
    metadata, updated_at = raw["metadata"], raw["updated_at"]
    if metadata is not None and not isinstance(metadata, dict):
        raise _ShapeError(f"{where} has metadata that is not an object or null")
    try:
        text = None if metadata is None else _dump_value(metadata)
    except ValueError as exc:  # a number out of range, such as 1e400
        raise _ShapeError(f"{where} has damaged metadata: {exc}") from exc
    return StoreRecord(
        text,
        _micros(raw["created_at"], where),
        None if updated_at is None else _micros(updated_at, where),
        _policy(raw["policy"], where),
        has_document=True,
    )


def _check_fields(raw: Any, fields: frozenset[str], where: str) -> None:
    """Raise unless ``raw`` is an object with exactly ``fields``."""
    if type(raw) is not dict or raw.keys() != fields:
        raise _ShapeError(f"{where} is not an object of {', '.join(sorted(fields))}")


def _micros(text: Any, where: str) -> int:
    """Read a time written by :func:`_timestamp`."""
    micros = _parse_time(text) if type(text) is str else None
    if micros is None:
        raise _ShapeError(
            f"{where} has the time {text!r}, not YYYY-MM-DDTHH:MM:SS.ffffffZ"
        )
    return micros


# Every read parses every time in the file, and every write formats them again;
# the same times come back call after call, so both conversions are cached.
@functools.lru_cache(maxsize=_TIMES_CACHED)
def _parse_time(text: str) -> int | None:
    """Parse an ISO 8601 UTC time ending in ``Z``; ``None`` if it is not one."""
    if not text.endswith("Z"):
        return None
    try:
        moment = dt.datetime.fromisoformat(text[:-1])
    except ValueError:
        return None
    return to_micros(moment) if moment.tzinfo is None else None


def _policy(value: Any, where: str) -> str:
    """Check a policy field."""
    if value not in _POLICIES:
        raise _ShapeError(f"{where} has the policy {value!r}, not 'persist' or 'evict'")
    return str(value)


@functools.lru_cache(maxsize=_TIMES_CACHED)
def _timestamp(micros: int) -> str:
    """Write microseconds since the epoch as an exact ISO 8601 UTC time."""
    moment = to_datetime(micros)
    assert moment is not None
    return moment.isoformat(timespec="microseconds") + "Z"


def _state_to_json(state: FileState, context: str | None, store: str) -> str:
    """Return a store's file text, laid out as the module docstring shows.

    The layout is written out here rather than by ``json.dumps(indent=2)``,
    whose pure-Python encoder made writing a 1,000-key store five times slower;
    each value is one call of the C encoder and one line.
    """
    entries = ",\n".join(_entry_lines(state))
    keys = f"{{\n{entries}\n  }}" if entries else "{}"
    return (
        "{\n"
        f'  "format": "{FORMAT}",\n'
        f'  "version": {FORMAT_VERSION},\n'
        f'  "revision": {state.revision},\n'
        f'  "store_name": {_dump_inline(store)},\n'
        f'  "dataset_id": {_dump_inline(context)},\n'
        f'  "store": {_document_to_json(state.document)},\n'
        f'  "keys": {keys}\n'
        "}\n"
    )


def _entry_lines(state: FileState) -> list[str]:
    """Return each key's record as the file holds it, sorted by key.

    An entry the state's last file already held reuses its text: a write
    changes a few keys, and encoding all the others again cost more than the
    rest of the write.
    """
    lines: dict[str, tuple[Entry, str]] = {}
    for key in sorted(state.keys):
        entry = state.keys[key]
        known = state.lines.get(key)
        if known is not None and known[0] is entry:
            lines[key] = known
        else:
            lines[key] = (entry, _entry_to_json(key, entry))
    state.lines = lines
    return [text for _, text in lines.values()]


def _document_to_json(document: StoreRecord | None) -> str:
    """Return the store's own document as the file holds it."""
    if document is None:
        return "null"
    metadata = (
        "null"
        if document.metadata is None
        else _dump_inline(json.loads(document.metadata))
    )
    return (
        "{\n"
        f'    "metadata": {metadata},\n'
        f'    "created_at": {_time_to_json(document.created_at)},\n'
        f'    "updated_at": {_time_to_json(document.updated_at)},\n'
        f'    "policy": "{document.policy}"\n'
        "  }"
    )


def _entry_to_json(key: str, entry: Entry) -> str:
    """Return one key's record as the file holds it."""
    return (
        f"    {_dump_inline(key)}: {{\n"
        f'      "value": {_dump_inline(entry.value)},\n'
        f'      "created_at": {_time_to_json(entry.created_at)},\n'
        f'      "updated_at": {_time_to_json(entry.updated_at)},\n'
        f'      "expires_at": {_time_to_json(entry.expires_at)},\n'
        f'      "policy": "{entry.policy}"\n'
        "    }"
    )


def _time_to_json(micros: int | None) -> str:
    """Return a time, or ``null``, as JSON."""
    return "null" if micros is None else f'"{_timestamp(micros)}"'
