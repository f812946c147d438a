"""The subcommands that only look: ``path``, ``ls``, ``keys``, ``get``, ``doctor``."""

from __future__ import annotations

import argparse
import os
from contextlib import suppress
from typing import Any, NamedTuple

from ._backend import Backend, KeyRecord, StoreRecord
from ._cli_common import (
    CommandError,
    WarningCounter,
    context_label,
    counting_warnings,
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
    """Print the stores of a context (or all) with key count, size and last update.

    A store or key that cannot be read is named on stderr and the rest are listed;
    the command then exits 1.
    """
    service = open_service(args)
    repo, now = service.repo, now_micros()
    contexts = repo.list_contexts() if args.all else [service.dataset_id]

    found = []
    with counting_warnings() as damaged:  # a listing skips damaged store files
        for context in contexts:
            for store in repo.list_stores(context, now):
                row = _store_row(repo, context, store, now, damaged)
                if row is not None:
                    found.append(row)

    if args.json:
        print_json(
            [{**row._asdict(), "updated_at": iso(row.updated_at)} for row in found]
        )
    elif found:
        _print_rows(found, every_context=args.all)
    elif not damaged.count:
        print("(no stores)")
    if damaged.count:
        what = plural(damaged.count, "store or key", "stores or keys")
        raise CommandError(f"{damaged.count} {what} could not be read")
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

    if args.backend not in ("sqlite", "json"):
        backend = args.backend
        args.parser.error(f"doctor checks store files; --backend {backend} has none")
    root, source = resolve_root(args.root)
    # A root that is a file (or lies under one) holds no stores, but is no healthy
    # root either: refuse it as every other command does.
    list_directory(root)
    if not os.path.exists(root):  # a mistyped --root is no healthy root
        raise CommandError(f"no root at {root}: nothing to check")
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


def _store_row(
    repo: Backend, context: str | None, store: str, now: int, damaged: WarningCounter
) -> _StoreRow | None:
    """Return the line of ``ls`` for a store, and warn of each record it cannot read.

    A key that cannot be read is counted, but its times are not; ``None`` for a
    store that cannot be read at all.
    """
    try:
        document, keys = repo.dump_store(context, store, now)
    except CorruptStoreError as exc:
        damaged.warn(f"leaving out a damaged store: {exc}")
        return None

    # Every value, time and policy, checked as reading it would check it.
    records: list[KeyRecord | StoreRecord] = [] if document is None else [document]
    readable = []
    for record in records + keys:
        try:
            document_fields(context, store, record)
        except CorruptStoreError as exc:
            where = f"{describe_context(context)}: " if context is not None else ""
            damaged.warn(f"{where}{exc}")
        else:
            readable.append(record)

    times = [record.updated_at or record.created_at for record in readable]
    updated_at = max((time for time in times if time is not None), default=None)
    size = _file_size(repo, context, store)
    return _StoreRow(context, store, len(keys), size, updated_at)


def _print_rows(found: list[_StoreRow], *, every_context: bool) -> None:
    """Print the lines of ``ls`` as a table; with a dataset column for ``--all``."""
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
    if every_context:
        header.insert(0, "DATASET")
        rows = [
            [context_label(f.dataset_id), *r] for f, r in zip(found, rows, strict=True)
        ]
    print_table(header, rows, numeric={"KEYS", "SIZE"})


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
