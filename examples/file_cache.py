"""Cache a hash and a line count per file of a directory tree in a store.

The store is scoped to the directory (its absolute path plays the part of a
dataset id), and every entry carries a TTL. A second run finds each unchanged
file in the store instead of reading it again::

    python examples/file_cache.py                 # the Python standard library
    python examples/file_cache.py ~/src --ttl 600
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sysconfig
import time

from localstore import ExecutionStore

STORE = "file_cache"
DEFAULT_DIRECTORY = sysconfig.get_paths()["stdlib"]


def parse_args() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "directory",
        nargs="?",
        default=DEFAULT_DIRECTORY,
        help="the tree to walk (default: the installed Python standard library)",
    )
    parser.add_argument(
        "--ttl", type=positive_seconds, default=3600, help="seconds an entry lives"
    )
    parser.add_argument(
        "--root",
        help="localstore root (default: $LOCALSTORE_ROOT or the user data directory)",
    )
    parser.add_argument(
        "--backend",
        default="sqlite",
        choices=["sqlite", "json"],
        help="default: sqlite",
    )
    parser.add_argument("--clear", action="store_true", help="forget the cache first")
    args = parser.parse_args()
    if not os.path.isdir(args.directory):
        parser.error(f"{args.directory!r} is not a directory")
    if (
        args.root is not None
        and os.path.exists(args.root)
        and not os.path.isdir(args.root)
    ):
        parser.error(f"--root {args.root!r} is not a directory")
    return args


def positive_seconds(text: str) -> float:
    """Parse a TTL from the command line: a number of seconds greater than 0."""
    seconds = float(text)
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(
            f"a TTL must be more than 0 seconds, not {text}"
        )
    return seconds


def summarize(path: str) -> dict[str, object]:
    """Read a file once: its SHA-256, its line count and its size."""
    digest, lines, size = hashlib.sha256(), 0, 0
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 16), b""):
            digest.update(chunk)
            lines += chunk.count(b"\n")
            size += len(chunk)
    return {"sha256": digest.hexdigest(), "lines": lines, "size": size}


def main() -> None:
    """Walk the tree, serving each unchanged file from the store."""
    args = parse_args()
    directory = os.path.abspath(args.directory)
    store = ExecutionStore.create(
        STORE, dataset_id=directory, root=args.root, backend=args.backend
    )
    if args.clear:
        store.clear()

    # The standard library's folder also holds installed packages; leave them out.
    skipped = {"__pycache__"}
    if args.directory == DEFAULT_DIRECTORY:
        skipped |= {"site-packages", "dist-packages"}

    started = time.perf_counter()
    served = computed = changed = lines = 0
    for folder, subfolders, files in os.walk(directory):
        subfolders[:] = sorted(d for d in subfolders if d not in skipped)
        for name in sorted(files):
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                continue
            key = os.path.relpath(path, directory)
            stat = os.stat(path)
            entry = store.get(key)
            if entry is not None and entry["mtime_ns"] == stat.st_mtime_ns:
                served += 1
            else:
                changed += entry is not None
                entry = {**summarize(path), "mtime_ns": stat.st_mtime_ns}
                store.set(key, entry, ttl=args.ttl)
                computed += 1
            lines += entry["lines"]
    elapsed = time.perf_counter() - started

    print(f"walked {served + computed} files under {directory} in {elapsed:.2f} s")
    print(f"  served from the store: {served}")
    print(f"  computed and stored:   {computed} ({changed} changed since cached)")
    print(f"  lines in all:          {lines}")
    print(
        f"  store: {store.service.root} (dataset_id={directory!r}, ttl={args.ttl:g} s)"
    )


if __name__ == "__main__":
    main()
