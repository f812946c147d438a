"""The subcommands that change stores or copy them: from ``set`` to ``push``/``pull``.

The format of export files is :mod:`localstore._export`'s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import suppress

from . import _codec, _log
from ._backend import Backend, KeyRecord, StoreRecord
from ._cli_common import (
    CommandError,
    context_label,
    counting_warnings,
    open_service,
    plural,
    print_json,
    print_table,
    require_store,
    show_progress,
)
from ._export import decode_value, document_line, read_lines
from ._paths import decode_name, resolve_root
from ._state import describe_context
from ._validate import now_micros
from .errors import CorruptStoreError, InvalidArgumentError, LockTimeoutError

__all__ = [
    "run_clear_cache",
    "run_export",
    "run_import",
    "run_push_or_pull",
    "run_rm",
    "run_set",
    "run_sweep",
]


def run_set(args: argparse.Namespace) -> int:
    """Set a key to a JSON value given as an argument or on standard input."""
    text = sys.stdin.read() if args.value == "-" else args.value
    try:
        value = decode_value(text)
        _codec.encode(value)
    except ValueError as exc:  # InvalidValueError is a ValueError too
        hint = ""
        # Text that does not start as JSON does was most likely meant as a string.
        starts_as_json = text.lstrip()[:1] in set('{["-0123456789')
        if isinstance(exc.__cause__, json.JSONDecodeError) and not starts_as_json:
            hint = """; a string needs quotes, as in '"text"'"""
        message = str(exc)
        if message.startswith(("value ", "value[")):  # the codec's value['a'][0]
            message = message.removeprefix("value")
        else:
            message = " " + message
        args.parser.error(f"VALUE{message}{hint}")

    service = open_service(args)
    service.set_key(args.store, args.key, value, ttl=args.ttl, policy=args.policy)
    return 0


def run_rm(args: argparse.Namespace) -> int:
    """Delete keys of a store, or the whole store when no key is given."""
    service = open_service(args)
    context = describe_context(service.dataset_id)
    if not args.keys:
        if service.delete_store(args.store) is None:
            raise CommandError(f"no store {args.store!r} in {context}")
        return 0

    # Check every key first, so that a mistyped one deletes nothing (another
    # process may still delete a key in between: then that key is reported).
    # A key named twice is deleted once.
    require_store(service, args.store)
    keys = list(dict.fromkeys(args.keys))
    where = f"store {args.store!r} of {context}"
    missing = [key for key in keys if not service.has_key(args.store, key)]
    if missing:
        raise CommandError(f"no key {', '.join(map(repr, missing))} in {where}")
    gone = [key for key in keys if not service.delete_key(args.store, key)]
    if gone:
        raise CommandError(f"no key {', '.join(map(repr, gone))} in {where}")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    """Delete expired keys for good in every collection and context under the root."""
    counts: list[tuple[str, str | None, str, int]] = []
    # A damaged store, or one busy beyond the timeout, is left out with a warning.
    with counting_warnings() as left_out:
        for collection in show_progress(_collections(args), "sweeping collection"):
            service = open_service(args, collection=collection)
            if args.dry_run:
                found = _count_expired(service.repo, now_micros())
            else:
                found = service.sweep()
            counts += [
                (collection, context, store, count)
                for (context, store), count in sorted(found.items(), key=_by_context)
            ]
    total = sum(count for *_, count in counts)

    if args.json:
        stores = [
            {"collection": c, "dataset_id": d, "store_name": s, "expired": n}
            for c, d, s, n in counts
        ]
        print_json(
            {
                "dry_run": args.dry_run,
                "stores": stores,
                "total": total,
                "left_out": left_out.count,
            }
        )
    else:
        if counts:
            rows = [[c, context_label(d), s, str(n)] for c, d, s, n in counts]
            print_table(
                ["COLLECTION", "DATASET", "STORE", "EXPIRED"], rows, {"EXPIRED"}
            )
        verb = "would be deleted" if args.dry_run else "deleted"
        print(f"{total} expired {plural(total, 'key')} {verb}")
    if left_out.count:
        skipped = f"{left_out.count} {plural(left_out.count, 'store')}"
        print(f"localstore: {skipped} left out (see above)", file=sys.stderr)
        return 1
    return 0


def run_clear_cache(args: argparse.Namespace) -> int:
    """Delete the cache entries of a context, or of one store of it."""
    service = open_service(args)
    if args.store is not None:
        require_store(service, args.store)

    # The service's clear_cache returns None, as FiftyOne's does; the backend counts.
    deleted = service.repo.clear_cache(service.dataset_id, args.store, now_micros())

    if args.json:
        print_json({"deleted": deleted})
    else:
        print(f"{deleted} cache {plural(deleted, 'entry', 'entries')} deleted")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Write the stores of a context as JSON Lines, to a file or standard output."""
    service = open_service(args)
    context, repo = service.dataset_id, service.repo
    for store in args.stores:
        require_store(service, store)
    # Without store names, a damaged store is left out and the rest exported;
    # a store named on the command line must be exported whole or not at all.
    with counting_warnings() as left_out:  # a listing skips damaged stores
        stores = list(dict.fromkeys(args.stores)) or service.list_stores()

    def lines() -> Iterator[bytes]:
        for store in show_progress(stores, "exporting store"):
            try:
                yield from _store_lines(repo, context, store)
            except CorruptStoreError as exc:
                if args.stores:
                    raise
                left_out.warn(f"leaving out a damaged store: {exc}")

    if args.output is None:
        sys.stdout.flush()
        sys.stdout.buffer.writelines(lines())
        sys.stdout.buffer.flush()
    else:
        _write_file(args.output, lines())
    if left_out.count:
        damaged = f"{left_out.count} damaged {plural(left_out.count, 'store')}"
        raise CommandError(f"the export lacks {damaged}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    """Load an export file, skipping (or with --replace overwriting) existing keys."""
    if args.dataset is not None:
        args.parser.error(
            "--dataset does not apply to import: each line of an export names its "
            "own context"
        )

    name = "standard input" if args.file == "-" else args.file
    try:
        if args.file == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as file:
                data = file.read()
    except OSError as exc:
        raise CommandError(f"cannot read {name}: {exc.strerror or exc}") from exc

    # Every line is checked before anything is written.
    try:
        groups = read_lines(data)
    except InvalidArgumentError as exc:
        args.parser.error(f"{name} {exc}")

    repo, now = open_service(args).repo, now_micros()
    imported = skipped = expired = 0
    for (context, store), (document, keys) in show_progress(
        list(groups.items()), "importing store"
    ):
        live = [k for k in keys if k.expires_at is None or k.expires_at > now]
        written = repo.load_store(
            context, store, document, live, now, replace=args.replace
        )
        imported += written
        skipped += len(live) - written
        expired += len(keys) - len(live)

    if args.json:
        summary = {"stores": len(groups), "imported": imported, "skipped": skipped}
        print_json({**summary, "expired": expired})
        return 0
    print(
        f"{imported} {plural(imported, 'key')} imported into {len(groups)} "
        f"{plural(len(groups), 'store')}"
    )
    if skipped:
        kept = f"{skipped} existing {plural(skipped, 'key')} kept"
        print(f"{kept} (--replace overwrites)")
    if expired:
        print(f"{expired} expired {plural(expired, 'key')} left out")
    return 0


def run_push_or_pull(args: argparse.Namespace) -> int:
    """Copy stores between the root and a MongoDB collection, in one direction."""
    from ._transfer import pull, push

    pushing = args.command == "push"
    verb = "pushed" if pushing else "pulled"
    if args.dataset is not None and args.only_global:
        args.parser.error("give --dataset or --global, not both")
    contexts = [args.dataset] if args.dataset is not None or args.only_global else None

    def progress(collection: str, context: str | None, store: str, count: int) -> None:
        where = f"{collection}/{context_label(context)}/{store}"
        print(f"{verb} {where}: {count} {plural(count, 'key')}", file=sys.stderr)

    # A store that cannot be copied whole is left out with a warning.
    with counting_warnings() as left_out:
        written = (push if pushing else pull)(
            args.uri,
            root=args.root,
            backend=args.backend,
            database=args.database,
            collections=[args.collection],
            dataset_ids=contexts,
            stores=args.stores or None,
            replace=not args.keep,
            progress=progress,
            timeout=args.timeout,
        )
    found = {store for _, _, store in written}
    missing = [store for store in dict.fromkeys(args.stores) if store not in found]
    stores, keys = len(written), sum(written.values())
    if args.json:
        copied = [
            {"collection": c, "dataset_id": d, "store_name": s, "keys": n}
            for (c, d, s), n in written.items()
        ]
        print_json({"stores": stores, "keys": keys, "copied": copied})
    else:
        count = f"{keys} {plural(keys, 'key')} in {stores} {plural(stores, 'store')}"
        print(f"{verb} {count}")
    if left_out.count:
        skipped = f"{left_out.count} {plural(left_out.count, 'store')}"
        print(f"localstore: {skipped} left out", file=sys.stderr)
        return 1
    if missing:
        source = "the MongoDB collection" if not pushing else "the root"
        names = ", ".join(map(repr, missing))
        print(f"localstore: no store {names} in {source}", file=sys.stderr)
        return 1
    return 0


# Helpers ------------------------------------------------------------------------------


def _collections(args: argparse.Namespace) -> list[str]:
    """Return every collection under the root, and the one named by --collection.

    A backend without files (memory, MongoDB) has only the one named.
    """
    if getattr(open_service(args).repo, "store_path", None) is None:
        return [args.collection]
    root, _ = resolve_root(args.root)
    names = {args.collection}
    with suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(root):
            name = decode_name(entry.name)
            if name is not None and entry.is_dir():
                names.add(name)
    return sorted(names)


#: 0001-01-01 in epoch microseconds: the earliest time every backend can query.
_EARLIEST = -62_135_596_800_000_000


def _count_expired(repo: Backend, now: int) -> dict[tuple[str | None, str], int]:
    """Count expired keys per (context, store) without deleting any.

    A backend returns the keys that are live at the ``now`` it is given; at the
    earliest time there is every stored key is, so such a dump holds them all.
    """
    counts = {}
    for context in repo.list_contexts():
        for store in repo.list_stores(context, _EARLIEST):
            try:
                _, keys = repo.dump_store(context, store, _EARLIEST)
            except (CorruptStoreError, LockTimeoutError) as exc:  # as sweep() does
                _log.warning(__name__, "not counting store %r: %s", store, exc)
                continue
            # A time edited by hand into something else is never expired, as
            # for the sweep itself (SQLite orders text after every number).
            expired = sum(
                1
                for key in keys
                if isinstance(key.expires_at, int) and key.expires_at <= now
            )
            if expired:
                counts[(context, store)] = expired
    return counts


def _store_lines(repo: Backend, context: str | None, store: str) -> list[bytes]:
    """Return the export lines of a store, its document first.

    :raises CorruptStoreError: for a damaged store file or value; no line is
        returned then, so a store is exported whole or not at all.
    """
    document, keys = repo.dump_store(context, store, now_micros())
    records: list[KeyRecord | StoreRecord] = [] if document is None else [document]
    records += keys
    return [
        document_line(context, store, record).encode() + b"\n" for record in records
    ]


def _by_context(item: tuple[tuple[str | None, str], int]) -> tuple[str, str, str]:
    """Sort key: the global context first, then datasets and stores by name."""
    (context, store), _ = item
    return ("" if context is None else "1", context or "", store)


def _write_file(path: str, chunks: Iterable[bytes]) -> None:
    """Write a file through a temporary one, so a failed export leaves no half file."""
    directory, name = os.path.split(os.path.abspath(path))
    try:
        # Named after the file it becomes: an export killed part way leaves it.
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{name}.", suffix=".localstore-tmp", dir=directory
        )
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.writelines(chunks)
        os.replace(temporary, path)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
