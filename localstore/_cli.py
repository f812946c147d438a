"""The ``localstore`` command: look inside stores and tidy them from a terminal.

Each subcommand is a few calls on :class:`ExecutionStoreService` or its backend;
this module parses arguments, :mod:`localstore._cli_inspect` and
:mod:`localstore._cli_maintain` run the subcommands and print. Exit status: 0 on
success, 1 when a store or key is missing or the library raises
:class:`LocalStoreError`, 2 for bad arguments or bad JSON (argparse's
convention), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._backends import BACKENDS, DEFAULT_COLLECTION
from ._cli_inspect import run_doctor, run_get, run_keys, run_ls, run_path
from ._cli_maintain import (
    run_clear_cache,
    run_export,
    run_import,
    run_push_or_pull,
    run_rm,
    run_set,
    run_sweep,
)
from ._validate import (
    check_dataset_id,
    check_key,
    check_name,
    check_timeout,
    expiry,
    now_micros,
)
from .errors import LocalStoreError

__all__ = ["main"]

#: A subcommand: it gets the parsed arguments and returns the exit status.
_Run = Callable[[argparse.Namespace], int]

#: Adds a subcommand (name, function, one-line summary) and returns its parser.
_AddCommand = Callable[[str, _Run, str], argparse.ArgumentParser]


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
    """Parse ``--ttl``: seconds, greater than 0 and ending by the year 9999."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan  # rejected just below, naming the text as typed
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(
            f"TTL must be a finite number of seconds greater than 0, not {text!r}"
        )

    # The library knows the latest expiry a store can hold.
    try:
        expiry(seconds, now_micros(), "TTL")
    except LocalStoreError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return seconds


def _timeout(text: str) -> float:
    """Parse ``--timeout``: seconds, as the service's ``timeout=`` takes them."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"timeout must be a number of seconds, not {text!r}"
        ) from None
    try:
        return check_timeout(seconds)
    except LocalStoreError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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

    def command(name: str, run: _Run, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, parents=[shared], help=summary, description=summary
        )
        sub.set_defaults(run=run, parser=sub)
        return sub

    # Added in the order ``--help`` lists them.
    _add_key_commands(command)
    _add_maintenance_commands(command)
    return parser


def _add_key_commands(command: _AddCommand) -> None:
    """Add ``path``, ``ls`` and the subcommands on the keys of one store."""
    store, key = _checked(check_name), _checked(check_key)
    command("path", run_path, "print the root directory and where it came from")
    ls = command("ls", run_ls, "list the stores of the context")
    ls.add_argument(
        "--all", action="store_true", help="list the stores of every context"
    )
    keys = command("keys", run_keys, "list the keys of a store")
    keys.add_argument("store", type=store, metavar="STORE")
    keys.add_argument("--prefix", metavar="P", help="only keys that start with P")
    get = command("get", run_get, "print a key's value as JSON")
    get.add_argument("store", type=store, metavar="STORE")
    get.add_argument("key", type=key, metavar="KEY")
    get.add_argument(
        "--meta", action="store_true", help="also print timestamps and policy"
    )
    set_ = command("set", run_set, "set a key to a JSON value")
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
    rm = command("rm", run_rm, "delete keys, or a whole store")
    rm.add_argument("store", type=store, metavar="STORE")
    rm.add_argument("keys", type=key, nargs="*", metavar="KEY")


def _add_maintenance_commands(command: _AddCommand) -> None:
    """Add the subcommands that work on many stores, files or another database."""
    store = _checked(check_name)
    sweep = command("sweep", run_sweep, "delete expired keys everywhere under the root")
    sweep.add_argument(
        "--dry-run", action="store_true", help="count expired keys, delete nothing"
    )
    clear = command(
        "clear-cache", run_clear_cache, "delete the cache entries of the context"
    )
    clear.add_argument("store", type=store, nargs="?", metavar="STORE")
    export = command("export", run_export, "write stores as JSON Lines")
    export.add_argument("stores", type=store, nargs="*", metavar="STORE")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE")
    import_ = command("import", run_import, "load stores from an export file")
    import_.add_argument("file", metavar="FILE", help="an export file; - reads stdin")
    import_.add_argument(
        "--replace", action="store_true", help="overwrite existing keys (default: keep)"
    )
    command("doctor", run_doctor, "check store files and the root for problems")
    for name, flag, summary in (
        ("push", "--to", "copy stores of the root into a MongoDB collection"),
        ("pull", "--from", "copy stores of a MongoDB collection into the root"),
    ):
        transfer = command(name, run_push_or_pull, summary)
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
        type=_checked(lambda name: check_name(name, "collection_name")),
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
        "--timeout",
        type=_timeout,
        metavar="S",
        default=10.0 if default is None else default,
        help="seconds to wait for a store another process is writing (default: 10)",
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
