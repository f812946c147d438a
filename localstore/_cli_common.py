"""What the ``localstore`` subcommands share: the service, their error, their output."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from ._export import escape_surrogates
from ._service import ExecutionStoreService
from ._state import describe_context
from .errors import LocalStoreError

__all__ = [
    "CommandError",
    "WarningCounter",
    "context_label",
    "counting_warnings",
    "open_service",
    "plural",
    "print_json",
    "print_table",
    "printable",
    "require_store",
    "show_progress",
]

_T = TypeVar("_T")


class CommandError(LocalStoreError):
    """A store, key or file named on the command line is missing or unusable."""


def open_service(
    args: argparse.Namespace, *, collection: str | None = None
) -> ExecutionStoreService:
    """Open the service the global options select, or that of another collection.

    :func:`localstore._cli.main` closes it when the command ends.
    """
    service = ExecutionStoreService(
        dataset_id=args.dataset,
        collection_name=collection or args.collection,
        root=args.root,
        backend=args.backend,
        timeout=args.timeout,
    )
    args.opened.append(service)
    return service


def require_store(service: ExecutionStoreService, store: str) -> None:
    """Raise :class:`CommandError` unless the store exists in the context."""
    if not service.has_store(store):
        raise CommandError(
            f"no store {store!r} in {describe_context(service.dataset_id)}"
        )


class WarningCounter(logging.Handler):
    """Print localstore's warnings on stderr, as the command's own, and count them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.warn(record.getMessage())

    def warn(self, message: str) -> None:
        """Print a warning of the command's own, and count it."""
        self.count += 1
        print(f"localstore: warning: {message}", file=sys.stderr)


@contextmanager
def counting_warnings() -> Iterator[WarningCounter]:
    """Count the warnings localstore logs inside the block (damaged stores skipped)."""
    counter = WarningCounter()
    logger = logging.getLogger("localstore")
    logger.addHandler(counter)
    try:
        yield counter
    finally:
        logger.removeHandler(counter)


def show_progress(items: Sequence[_T], label: str) -> Iterator[_T]:
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


def plural(count: int, word: str, plural_form: str | None = None) -> str:
    """Return ``word`` or its plural, to agree with ``count``."""
    return word if count == 1 else plural_form or word + "s"


def context_label(context: str | None) -> str:
    """Name a context in a table cell."""
    return "(global)" if context is None else context


def print_json(data: Any) -> None:
    """Print machine-readable output; a lone surrogate in it is printed escaped."""
    print(escape_surrogates(json.dumps(data, ensure_ascii=False, indent=2)))


def print_table(
    header: list[str] | None, rows: list[list[str]], numeric: Iterable[str] = ()
) -> None:
    """Print rows in aligned columns; columns named in ``numeric`` align right."""
    # A name may hold a newline or a terminal escape: print such cells escaped.
    rows = [[printable(cell) for cell in row] for row in rows]
    lines = rows if header is None else [header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    right = {header.index(name) for name in numeric} if header else set()
    for line in lines:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def printable(text: str) -> str:
    """Return ``text`` with control characters written as Python escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
