"""The subcommands that only look: ``path``, ``ls``, ``keys``, ``get``, ``doctor``."""

from __future__ import annotations

import argparse
import os
from contextlib import suppress
from typing import Any, NamedTuple

from ._backend import Backend, KeyRecord, StoreRecord
from ._cli_common import (
    CommandError,
    context_label,
    open_service,
    plural,
    print_json,
    print_table,
    printable,
    require_store,
)
from ._documents import to_datetime
from ._export import FIELDS, document_fields, escape_surrogates, iso, to_json
from ._layout import list_directory
from ._paths import resolve_root
from ._state import describe_context
from ._validate import now_micros
from .errors import CorruptStoreError

__all__ = ["run_doctor", "run_get", "run_keys", "run_ls", "run_path"]

_SOURCES = {
    "argument": "from --root",
    "environment": "from $LOCALSTORE_ROOT",
    "default": "the user data directory",
}


def run_path(args: argparse.Namespace) -> int:
    """Print the root directory and where its location came from."""
    root, source = resolve_root(args.root)
    if args.json:
        print_json({"root": root, "source": source})
    else:
        print(f"{root}  ({_SOURCES[source]})")
    return 0


class _StoreRow(NamedTuple):
    """One line of ``ls``."""

    dataset_id: str | None
    store_name: str
    keys: int
    size: int | None
    updated_at: int | None


def run_ls(args: argparse.Namespace) -> int:
    """Print the stores of a context (or all) with key count, size and last update."""
    service = open_service(args)
    repo, now = service.repo, now_micros()
    contexts = repo.list_contexts() if args.all else [service.dataset_id]

    found = []
    for context in contexts:
        for store in repo.list_stores(context, now):
            document, keys = repo.dump_store(context, store, now)
            size = _file_size(repo, context, store)
            updated_at = _last_update(store, document, keys)
            found.append(_StoreRow(context, store, len(keys), size, updated_at))

    if args.json:
        print_json(
            [{**row._asdict(), "updated_at": iso(row.updated_at)} for row in found]
        )
        return 0
    if not found:
        print("(no stores)")
        return 0
    header = ["STORE", "KEYS", "SIZE", "UPDATED (UTC)"]
    rows = [
        [
            row.store_name,
            str(row.keys),
            _human_size(row.size),
            _human_time(row.updated_at),
        ]
        for row in found
    ]
    if args.all:
        header.insert(0, "DATASET")
        rows = [
            [context_label(f.dataset_id), *r] for f, r in zip(found, rows, strict=True)
        ]
    print_table(header, rows, numeric={"KEYS", "SIZE"})
    return 0


def run_keys(args: argparse.Namespace) -> int:
    """Print the live keys of a store, optionally only those with a prefix."""
    service = open_service(args)
    require_store(service, args.store)

    keys = service.list_keys(args.store)
    if args.prefix:
        keys = [key for key in keys if key.startswith(args.prefix)]

    if args.json:
        print_json(keys)
    else:
        for key in keys:
            print(printable(key))
    return 0


def run_get(args: argparse.Namespace) -> int:
    """Print a key's value as JSON, with its timestamps and policy on request."""
    service = open_service(args)
    context = service.dataset_id
    record = service.repo.get_key(context, args.store, args.key, now_micros())
    if record is None:
        require_store(service, args.store)
        where = f"store {args.store!r} of {describe_context(context)}"
        raise CommandError(f"no key {args.key!r} in {where}")

    fields = document_fields(context, args.store, record)
    if args.json and args.meta:
        print_json(fields)
    elif args.meta:
        fields["value"] = to_json(fields["value"])
        fields["dataset_id"] = context_label(context)
        print_table(None, [[f"{name}:", _text(fields[name])] for name in FIELDS])
    else:
        print(escape_surrogates(to_json(fields["value"])))
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    """Check every store file under the root; exit 1 when something is wrong."""
    from ._doctor import examine_root  # imported late: only this command needs it

    root, source = resolve_root(args.root)
    # A root that is a file (or lies under one) holds no stores, but is no healthy
    # root either: refuse it as every other command does.
    list_directory(root)
    checked, problems = examine_root(root)

    if args.json:
        found = [{"path": path, "problem": problem} for path, problem in problems]
        print_json({"root": root, "checked": checked, "problems": found})
    else:
        print(f"root {root}  ({_SOURCES[source]})")
        print(f"{checked} store {plural(checked, 'file')} checked")
        for path, problem in problems:
            print(f"problem: {path}: {problem}")
        print(f"{len(problems) or 'no'} {plural(len(problems), 'problem')} found")
    return 1 if problems else 0


# Helpers ------------------------------------------------------------------------------


def _file_size(repo: Backend, context: str | None, store: str) -> int | None:
    """Return the bytes a store takes on disk, or ``None`` for a backend without files.

    SQLite's write-ahead log is counted too: until a checkpoint, recent writes
    live there and not in the store file.
    """
    store_path = getattr(repo, "store_path", None)
    if store_path is None:
        return None
    path = store_path(context, store)
    size = 0
    for name in (path, path + "-wal"):
        with suppress(FileNotFoundError):  # no WAL when no connection is open
            size += os.stat(name).st_size
    return size


def _last_update(
    store: str, document: StoreRecord | None, keys: list[KeyRecord]
) -> int | None:
    """Return when a store's document or one of its live keys was last written.

    :raises CorruptStoreError: for a timestamp that localstore never writes.
    """
    times = [record.updated_at or record.created_at for record in keys]
    if document is not None:
        times.append(document.updated_at or document.created_at)
    try:
        latest = max(times, default=None)
        to_datetime(latest)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CorruptStoreError(
            f"store {store!r} holds a damaged timestamp: {exc}"
        ) from exc
    return latest


def _human_time(micros: int | None) -> str:
    """Format epoch microseconds for a table, to the second."""
    moment = to_datetime(micros)
    return "-" if moment is None else moment.isoformat(sep=" ", timespec="seconds")


def _human_size(size: int | None) -> str:
    """Format a byte count for a table."""
    if size is None:
        return "-"
    if size < 1024:
        return f"{size} B"
    scaled, unit = size / 1024, "KiB"
    for larger in ("MiB", "GiB"):
        if scaled < 1024:
            break
        scaled, unit = scaled / 1024, larger
    return f"{scaled:.1f} {unit}"


def _text(value: Any) -> str:
    """Show a field of ``get --meta`` as text; ``-`` for none."""
    return "-" if value is None else str(value)
