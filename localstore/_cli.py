"""The ``localstore`` command: look inside stores and tidy them from a terminal.

Each subcommand is a few calls on :class:`ExecutionStoreService` or its backend;
this module parses arguments and prints. Exit status: 0 on success, 1 when a
store or key is missing or the library raises :class:`LocalStoreError`, 2 for
bad arguments or bad JSON (argparse's convention), 130 on Ctrl-C. The format
of export files is :mod:`localstore._export`'s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, NamedTuple, TypeVar

from . import _codec
from ._backend import Backend, KeyRecord, StoreRecord
from ._documents import to_datetime
from ._export import FIELDS, decode_value, document_line, iso, read_lines, to_json
from ._paths import decode_name, resolve_root
from ._service import BACKENDS, DEFAULT_COLLECTION, ExecutionStoreService
from ._validate import (
    check_dataset_id,
    check_key,
    check_name,
    expiry,
    now_micros,
)
from .errors import InvalidArgumentError, LocalStoreError

__all__ = ["main"]

_T = TypeVar("_T")

_SOURCES = {
    "argument": "from --root",
    "environment": "from $LOCALSTORE_ROOT",
    "default": "the user data directory",
}


class CommandError(LocalStoreError):
    """A store, key or file named on the command line is missing or unusable."""


# Subcommands -----------------------------------------------------------------------


def _path(args: argparse.Namespace) -> int:
    """Print the root directory and where its location came from."""
    root, source = resolve_root(args.root)
    if args.json:
        _print_json({"root": root, "source": source})
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


def _ls(args: argparse.Namespace) -> int:
    """Print the stores of a context (or all) with key count, size and last update."""
    service = _service(args)
    repo, now = service.repo, now_micros()
    contexts = repo.list_contexts() if args.all else [service.dataset_id]

    found = []
    for context in contexts:
        for store in repo.list_stores(context, now):
            document, keys = repo.dump_store(context, store, now)
            size = _file_size(repo, context, store)
            updated_at = _last_update(document, keys)
            found.append(_StoreRow(context, store, len(keys), size, updated_at))

    if args.json:
        _print_json(
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
            [_context_label(f.dataset_id), *r] for f, r in zip(found, rows, strict=True)
        ]
    _print_table(header, rows, numeric={"KEYS", "SIZE"})
    return 0


def _keys(args: argparse.Namespace) -> int:
    """Print the live keys of a store, optionally only those with a prefix."""
    service = _service(args)
    _require_store(service, args.store)

    keys = service.list_keys(args.store)
    if args.prefix:
        keys = [key for key in keys if key.startswith(args.prefix)]

    if args.json:
        _print_json(keys)
    else:
        for key in keys:
            print(_printable(key))
    return 0


def _get(args: argparse.Namespace) -> int:
    """Print a key's value as JSON, with its timestamps and policy on request."""
    service = _service(args)
    context = service.dataset_id
    record = service.repo.get_key(context, args.store, args.key, now_micros())
    if record is None:
        _require_store(service, args.store)
        where = f"store {args.store!r} of {_describe_context(context)}"
        raise CommandError(f"no key {args.key!r} in {where}")

    line = document_line(context, args.store, record)
    fields = json.loads(line)
    if args.json and args.meta:
        _print_json(fields)
    elif args.meta:
        fields["value"] = to_json(fields["value"])
        fields["dataset_id"] = _context_label(context)
        _print_table(None, [[f"{name}:", _text(fields[name])] for name in FIELDS])
    else:
        print(to_json(fields["value"]))
    return 0


def _set(args: argparse.Namespace) -> int:
    """Set a key to a JSON value given as an argument or on standard input."""
    text = sys.stdin.read() if args.value == "-" else args.value
    try:
        value = decode_value(text)
        _codec.encode(value)
    except (ValueError, TypeError) as exc:
        args.parser.error(
            f"VALUE is not a storable JSON value ({exc}); a string needs quotes, "
            """as in '"text"'"""
        )

    service = _service(args)
    service.set_key(args.store, args.key, value, ttl=args.ttl, policy=args.policy)
    return 0


def _rm(args: argparse.Namespace) -> int:
    """Delete keys of a store, or the whole store when no key is given."""
    service = _service(args)
    where = f"store {args.store!r} of {_describe_context(service.dataset_id)}"
    if not args.keys:
        if service.delete_store(args.store) is None:
            raise CommandError(f"no {where}")
        return 0

    # Check every key first, so that a mistyped one deletes nothing (another
    # process may still delete a key in between: then that key is reported).
    _require_store(service, args.store)
    missing = [key for key in args.keys if not service.has_key(args.store, key)]
    if missing:
        raise CommandError(f"no key {', '.join(map(repr, missing))} in {where}")
    gone = [key for key in args.keys if not service.delete_key(args.store, key)]
    if gone:
        raise CommandError(f"no key {', '.join(map(repr, gone))} in {where}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    """Delete expired keys for good in every collection and context under the root."""
    counts: list[tuple[str, str | None, str, int]] = []
    for collection in _progress(_collections(args), "sweeping collection"):
        service = _service(args, collection=collection)
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
        _print_json({"dry_run": args.dry_run, "stores": stores, "total": total})
        return 0
    if counts:
        rows = [[c, _context_label(d), s, str(n)] for c, d, s, n in counts]
        _print_table(["COLLECTION", "DATASET", "STORE", "EXPIRED"], rows, {"EXPIRED"})
    verb = "would be deleted" if args.dry_run else "deleted"
    print(f"{total} expired {_plural(total, 'key')} {verb}")
    return 0


def _clear_cache(args: argparse.Namespace) -> int:
    """Delete the cache entries of a context, or of one store of it."""
    service = _service(args)
    if args.store is not None:
        _require_store(service, args.store)

    # The service's clear_cache returns None, as FiftyOne's does; the backend counts.
    deleted = service.repo.clear_cache(service.dataset_id, args.store, now_micros())

    if args.json:
        _print_json({"deleted": deleted})
    else:
        print(f"{deleted} cache {_plural(deleted, 'entry', 'entries')} deleted")
    return 0


def _export(args: argparse.Namespace) -> int:
    """Write the stores of a context as JSON Lines, to a file or standard output."""
    service = _service(args)
    context, repo = service.dataset_id, service.repo
    for store in args.stores:
        _require_store(service, store)
    with _counting_warnings() as left_out:  # a listing skips damaged stores
        stores = list(dict.fromkeys(args.stores)) or service.list_stores()

    def lines() -> Iterator[bytes]:
        for store in _progress(stores, "exporting store"):
            document, keys = repo.dump_store(context, store, now_micros())
            if document is not None:
                yield document_line(context, store, document).encode() + b"\n"
            for record in keys:
                yield document_line(context, store, record).encode() + b"\n"

    if args.output is None:
        sys.stdout.flush()
        sys.stdout.buffer.writelines(lines())
        sys.stdout.buffer.flush()
    else:
        _write_file(args.output, lines())
    if left_out.count:
        raise CommandError(f"the export lacks {left_out.count} damaged store(s)")
    return 0


class _WarningCounter(logging.Handler):
    """Print localstore's warnings on stderr, as the command's own, and count them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        print(f"localstore: warning: {record.getMessage()}", file=sys.stderr)


@contextmanager
def _counting_warnings() -> Iterator[_WarningCounter]:
    """Count the warnings localstore logs inside the block."""
    counter = _WarningCounter()
    logger = logging.getLogger("localstore")
    logger.addHandler(counter)
    try:
        yield counter
    finally:
        logger.removeHandler(counter)


def _import(args: argparse.Namespace) -> int:
    """Load an export file, skipping (or with --replace overwriting) existing keys."""
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

    repo, now = _service(args).repo, now_micros()
    imported = skipped = expired = 0
    for (context, store), (document, keys) in _progress(
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
        _print_json({**summary, "expired": expired})
        return 0
    print(
        f"{imported} {_plural(imported, 'key')} imported into {len(groups)} "
        f"{_plural(len(groups), 'store')}"
    )
    if skipped:
        kept = f"{skipped} existing {_plural(skipped, 'key')} kept"
        print(f"{kept} (--replace overwrites)")
    if expired:
        print(f"{expired} expired {_plural(expired, 'key')} left out")
    return 0


def _push_or_pull(args: argparse.Namespace) -> int:
    """Copy stores between the root and a MongoDB collection, in one direction."""
    from ._transfer import pull, push

    pushing = args.command == "push"
    verb = "pushed" if pushing else "pulled"
    if args.dataset is not None and args.only_global:
        args.parser.error("give --dataset or --global, not both")
    contexts = [args.dataset] if args.dataset is not None or args.only_global else None

    def progress(collection: str, context: str | None, store: str, count: int) -> None:
        where = f"{collection}/{_context_label(context)}/{store}"
        print(f"{verb} {where}: {count} {_plural(count, 'key')}", file=sys.stderr)

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
    )
    stores, keys = len(written), sum(written.values())
    if args.json:
        copied = [
            {"collection": c, "dataset_id": d, "store_name": s, "keys": n}
            for (c, d, s), n in written.items()
        ]
        _print_json({"stores": stores, "keys": keys, "copied": copied})
    else:
        count = f"{keys} {_plural(keys, 'key')} in {stores} {_plural(stores, 'store')}"
        print(f"{verb} {count}")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    """Check every store file under the root; exit 1 when something is wrong."""
    from ._doctor import examine_root  # imported late: only this command needs it

    root, source = resolve_root(args.root)
    checked, problems = examine_root(root)

    if args.json:
        found = [{"path": path, "problem": problem} for path, problem in problems]
        _print_json({"root": root, "checked": checked, "problems": found})
    else:
        print(f"root {root}  ({_SOURCES[source]})")
        print(f"{checked} store {_plural(checked, 'file')} checked")
        for path, problem in problems:
            print(f"problem: {path}: {problem}")
        print(f"{len(problems) or 'no'} {_plural(len(problems), 'problem')} found")
    return 1 if problems else 0


# Files ------------------------------------------------------------------------------


def _write_file(path: str, chunks: Iterable[bytes]) -> None:
    """Write a file through a temporary one, so a failed export leaves no half file."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=".localstore-", dir=directory)
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


# Helpers ------------------------------------------------------------------------------


def _service(
    args: argparse.Namespace, *, collection: str | None = None
) -> ExecutionStoreService:
    """Open the service the global options select, or that of another collection.

    :func:`main` closes it when the command ends.
    """
    service = ExecutionStoreService(
        dataset_id=args.dataset,
        collection_name=collection or args.collection,
        root=args.root,
        backend=args.backend,
    )
    args.opened.append(service)
    return service


def _require_store(service: ExecutionStoreService, store: str) -> None:
    """Raise :class:`CommandError` unless the store exists in the context."""
    if not service.has_store(store):
        raise CommandError(
            f"no store {store!r} in {_describe_context(service.dataset_id)}"
        )


def _collections(args: argparse.Namespace) -> list[str]:
    """Return every collection under the root, and the one named by --collection.

    A backend without files (memory, MongoDB) has only the one named.
    """
    if getattr(_service(args).repo, "store_path", None) is None:
        return [args.collection]
    root, _ = resolve_root(args.root)
    names = {args.collection}
    with suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(root):
            name = decode_name(entry.name)
            if name is not None and entry.is_dir():
                names.add(name)
    return sorted(names)


def _count_expired(repo: Backend, now: int) -> dict[tuple[str | None, str], int]:
    """Count expired keys per (context, store) without deleting any.

    A backend returns the keys that are live at the ``now`` it is given; at the
    epoch every stored key is, so a dump at 0 also holds the expired ones.
    """
    counts = {}
    for context in repo.list_contexts():
        for store in repo.list_stores(context, 0):
            _, keys = repo.dump_store(context, store, 0)
            expired = sum(
                1
                for key in keys
                if key.expires_at is not None and key.expires_at <= now
            )
            if expired:
                counts[(context, store)] = expired
    return counts


def _by_context(item: tuple[tuple[str | None, str], int]) -> tuple[str, str, str]:
    """Sort key: the global context first, then datasets and stores by name."""
    (context, store), _ = item
    return ("" if context is None else "1", context or "", store)


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


def _last_update(document: StoreRecord | None, keys: list[KeyRecord]) -> int | None:
    """Return when a store's document or one of its live keys was last written."""
    times = [record.updated_at or record.created_at for record in keys]
    if document is not None:
        times.append(document.updated_at or document.created_at)
    return max(times, default=None)


def _progress(items: Sequence[_T], label: str) -> Iterator[_T]:
    """Yield ``items``, counting them on stderr when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield from items
        return
    try:
        for done, item in enumerate(items, start=1):
            sys.stderr.write(f"\r{label} {done}/{len(items)}")
            sys.stderr.flush()
            yield item
    finally:
        sys.stderr.write("\r\033[K")  # erase the counter line
        sys.stderr.flush()


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


def _plural(count: int, word: str, plural: str | None = None) -> str:
    """Return ``word`` or its plural, to agree with ``count``."""
    return word if count == 1 else plural or word + "s"


def _context_label(context: str | None) -> str:
    """Name a context in a table cell."""
    return "(global)" if context is None else context


def _describe_context(context: str | None) -> str:
    """Name a context in a message."""
    return "the global context" if context is None else f"dataset {context!r}"


def _print_json(data: Any) -> None:
    """Print machine-readable output."""
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _print_table(
    header: list[str] | None, rows: list[list[str]], numeric: Iterable[str] = ()
) -> None:
    """Print rows in aligned columns; columns named in ``numeric`` align right."""
    # A name may hold a newline or a terminal escape: print such cells escaped.
    rows = [[_printable(cell) for cell in row] for row in rows]
    lines = rows if header is None else [header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    right = {header.index(name) for name in numeric} if header else set()
    for line in lines:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def _printable(text: str) -> str:
    """Return ``text`` with control characters written as Python escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# Arguments ---------------------------------------------------------------------------


def _checked(check: Callable[[Any], Any]) -> Callable[[str], str]:
    """Turn a library check into an argparse ``type``: rejections are usage errors."""

    def convert(text: str) -> str:
        try:
            return str(check(text))
        except LocalStoreError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _ttl(text: str) -> float:
    """Parse ``--ttl``: seconds, a number greater than 0."""
    try:
        seconds = float(text)
        expiry(seconds, now_micros())
    except ValueError as exc:  # LocalStoreError's InvalidArgumentError is one too
        raise argparse.ArgumentTypeError(
            f"TTL must be a number of seconds greater than 0, not {text!r}"
        ) from exc
    return seconds


def _root(text: str) -> str:
    """Parse ``--root``: any non-empty path."""
    if not text:
        raise argparse.ArgumentTypeError("the root must not be an empty path")
    return text


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``localstore`` command."""
    # Global options are accepted before and after the subcommand; after it they
    # default to SUPPRESS, so they do not reset a value given before it.
    shared = argparse.ArgumentParser(add_help=False)
    parser = argparse.ArgumentParser(
        prog="localstore",
        description="Inspect and maintain localstore execution stores.",
    )
    for target, default in ((parser, None), (shared, argparse.SUPPRESS)):
        _add_global_options(target, default)

    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, run: Callable[[argparse.Namespace], int], summary: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, parents=[shared], help=summary, description=summary
        )
        sub.set_defaults(run=run, parser=sub)
        return sub

    store, key = _checked(check_name), _checked(check_key)
    command("path", _path, "print the root directory and where it came from")
    ls = command("ls", _ls, "list the stores of the context")
    ls.add_argument(
        "--all", action="store_true", help="list the stores of every context"
    )
    keys = command("keys", _keys, "list the keys of a store")
    keys.add_argument("store", type=store, metavar="STORE")
    keys.add_argument("--prefix", metavar="P", help="only keys that start with P")
    get = command("get", _get, "print a key's value as JSON")
    get.add_argument("store", type=store, metavar="STORE")
    get.add_argument("key", type=key, metavar="KEY")
    get.add_argument(
        "--meta", action="store_true", help="also print timestamps and policy"
    )
    set_ = command("set", _set, "set a key to a JSON value")
    set_.add_argument("store", type=store, metavar="STORE")
    set_.add_argument("key", type=key, metavar="KEY")
    set_.add_argument(
        "value", metavar="VALUE", help="JSON text; - reads standard input"
    )
    set_.add_argument("--ttl", type=_ttl, metavar="S", help="expire after S seconds")
    set_.add_argument(
        "--policy",
        choices=["persist", "evict"],
        default="persist",
        help="evict lets clear-cache remove the key (default: persist)",
    )
    rm = command("rm", _rm, "delete keys, or a whole store")
    rm.add_argument("store", type=store, metavar="STORE")
    rm.add_argument("keys", type=key, nargs="*", metavar="KEY")
    sweep = command("sweep", _sweep, "delete expired keys everywhere under the root")
    sweep.add_argument(
        "--dry-run", action="store_true", help="count expired keys, delete nothing"
    )
    clear = command(
        "clear-cache", _clear_cache, "delete the cache entries of the context"
    )
    clear.add_argument("store", type=store, nargs="?", metavar="STORE")
    export = command("export", _export, "write stores as JSON Lines")
    export.add_argument("stores", type=store, nargs="*", metavar="STORE")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE")
    import_ = command("import", _import, "load stores from an export file")
    import_.add_argument("file", metavar="FILE", help="an export file; - reads stdin")
    import_.add_argument(
        "--replace", action="store_true", help="overwrite existing keys (default: keep)"
    )
    command("doctor", _doctor, "check store files and the root for problems")
    for name, flag, summary in (
        ("push", "--to", "copy stores of the root into a MongoDB collection"),
        ("pull", "--from", "copy stores of a MongoDB collection into the root"),
    ):
        transfer = command(name, _push_or_pull, summary)
        transfer.add_argument("stores", type=store, nargs="*", metavar="STORE")
        transfer.add_argument(flag, dest="uri", required=True, metavar="URI")
        transfer.add_argument(
            "--database", metavar="NAME", help="MongoDB database (default: fiftyone)"
        )
        transfer.add_argument(
            "--global",
            dest="only_global",
            action="store_true",
            help="only the global context (default: every context, or --dataset)",
        )
        transfer.add_argument(
            "--keep",
            action="store_true",
            help="keep keys the target already has (default: overwrite them)",
        )
    return parser


def _add_global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """Add the options that select root, collection, backend and context."""
    parser.add_argument(
        "--root",
        type=_root,
        default=default,
        help="the directory of all stores (default: $LOCALSTORE_ROOT, else the "
        "user data directory)",
    )
    parser.add_argument(
        "--collection",
        type=_checked(check_name),
        metavar="NAME",
        default=DEFAULT_COLLECTION if default is None else default,
        help=f"the collection (default: {DEFAULT_COLLECTION})",
    )
    parser.add_argument(
        "--backend",
        choices=sorted(BACKENDS),
        default="sqlite" if default is None else default,
        help="the storage backend (default: sqlite)",
    )
    parser.add_argument(
        "--dataset",
        type=_checked(check_dataset_id),
        metavar="ID",
        default=default,
        help="the dataset whose stores to use (default: the global context)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if default is None else default,
        help="machine-readable output",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``localstore`` command and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.opened = []
    try:
        status: int = args.run(args)
    except LocalStoreError as exc:
        print(f"localstore: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``localstore keys s | head``): stop quietly, and
        # point stdout at /dev/null so flushing it at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        for service in args.opened:
            service.close()
    return status
