"""Measure localstore against diskcache and raw ``sqlite3``, interleaved, in one run.

Every figure is the median over repetitions of the time per operation, and the
ratio to raw ``sqlite3`` doing the same thing in the same run: the machine is
shared, absolute times drift, and the targets (listed in ``report.py``) are
ratios. The README's Performance section shows the latest table.

Usage::

    python benchmarks/bench.py --quick           # about a minute
    python benchmarks/bench.py                   # the full run (1M-key sweep)
    python benchmarks/bench.py --readme          # also rewrite README's table

Raw ``sqlite3`` is the minimal equivalent: one table, WAL, ``synchronous=NORMAL``,
autocommit, one statement per operation, values as JSON text. Before each timed
run of a key case, every SQLite file's write-ahead log is checkpointed outside the
timing, so that no case pays for a checkpoint the cases before it made due.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import report  # the sibling module, found through the line above

from localstore import ExecutionStore, ExecutionStoreService
from localstore._backends import BACKENDS
from localstore._sqlite import SQLiteBackend

STORE = "bench"
RAW = "sqlite3"


@dataclass
class Sizes:
    """How much work one run does."""

    repeats: int
    small_ops: int
    large_ops: int
    list_sizes: tuple[int, ...]
    list_repeats: int
    fresh_ops: int
    cli_ops: int
    cli_repeats: int
    batch_rows: int
    sweep_keys: int
    sweep_repeats: int
    json_sizes: tuple[int, ...]


FULL = Sizes(
    41,
    300,
    20,
    (10_000, 100_000),
    9,
    50,
    4,
    9,
    10_000,
    1_000_000,
    3,
    (100, 1_000, 10_000),
)
QUICK = Sizes(
    5, 100, 8, (10_000, 100_000), 5, 30, 3, 5, 2_000, 100_000, 2, (100, 1_000, 10_000)
)


# Values ------------------------------------------------------------------------


def small_value(i: int) -> dict[str, Any]:
    """Return a dict of 8 fields, about 200 bytes of JSON."""
    return {
        "id": i,
        "name": f"sample-{i:06d}",
        "filepath": f"/data/images/{i:09d}.jpg",
        "label": "cat",
        "confidence": 0.87125,
        "tags": ["train", "reviewed"],
        "bbox": [0.1, 0.2, 0.3, 0.4],
        "done": True,
    }


def flat_large_value(i: int) -> dict[str, Any]:
    """Return about 100 KB of JSON in a few long lists (ids and scores)."""
    rng = random.Random(i)
    return {
        "run": i,
        "sample_ids": [f"{rng.getrandbits(96):024x}" for _ in range(2_600)],
        "scores": [round(rng.random(), 6) for _ in range(2_600)],
    }


def records_large_value(i: int) -> dict[str, Any]:
    """Return about 100 KB of JSON as 500 small records."""
    return {"run": i, "rows": [small_value(i * 1000 + n) for n in range(500)]}


# Subjects ------------------------------------------------------------------------


class Subject(Protocol):
    """What every measured implementation offers."""

    name: str

    def set(self, key: str, value: Any) -> None:
        """Set one key."""

    def get(self, key: str) -> Any:
        """Return one value, or ``None``."""

    def has(self, key: str) -> bool:
        """Tell whether a key exists."""

    def delete(self, key: str) -> bool:
        """Delete one key."""

    def list_keys(self) -> list[str]:
        """Return every key."""

    def count_keys(self) -> int:
        """Count the keys."""

    def set_many(self, items: dict[str, Any]) -> None:
        """Write many keys in one transaction."""

    def checkpoint(self) -> None:
        """Empty SQLite's write-ahead log into the file, if there is one."""

    def close(self) -> None:
        """Release files and connections."""


def checkpoint_file(path: str) -> None:
    """Move a SQLite file's write-ahead log into it, and empty the log.

    Called outside the timing before each case: SQLite checkpoints on its own
    once the log holds 1,000 pages, and which case then pays for it would depend
    on the cases before it, differently for each contender.
    """
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
    finally:
        conn.close()


class LocalStore:
    """localstore through FiftyOne's plugin-facing ``ExecutionStore``."""

    def __init__(self, backend: str, root: str, store: str = STORE) -> None:
        self.name = f"localstore[{backend}]"
        self.service = ExecutionStoreService(root=root, backend=backend)
        self.store = ExecutionStore(store, self.service)
        self.set = self.store.set
        self.get = self.store.get
        self.has = self.store.has
        self.delete = self.store.delete
        self.list_keys = self.store.list_keys

    def count_keys(self) -> int:
        """Count the live keys."""
        return self.service.count_keys(self.store.store_name)

    def set_many(self, items: dict[str, Any]) -> None:
        """Write many keys in one transaction."""
        self.service.set_keys(self.store.store_name, items)

    def checkpoint(self) -> None:
        """Checkpoint the store's SQLite file (the other backends keep no log)."""
        repo = self.service.repo
        if isinstance(repo, SQLiteBackend):
            path = repo.store_path(None, self.store.store_name)
            if os.path.exists(path):
                checkpoint_file(path)

    def close(self) -> None:
        """Close the service's files."""
        self.service.close()


class DiskCache:
    """diskcache's ``Cache``, used as its documentation shows (values pickled)."""

    name = "diskcache"

    def __init__(self, directory: str) -> None:
        import diskcache  # type: ignore[import-untyped]  # an optional extra

        self.cache = diskcache.Cache(directory)
        self.set = self.cache.set
        self.get = self.cache.get
        self.has = self.cache.__contains__
        self.delete = self.cache.delete

    def list_keys(self) -> list[str]:
        """Return the keys in key order."""
        return list(self.cache.iterkeys())

    def count_keys(self) -> int:
        """Return the count diskcache keeps."""
        return len(self.cache)

    def set_many(self, items: dict[str, Any]) -> None:
        """Write many keys in one transaction."""
        with self.cache.transact():
            for key, value in items.items():
                self.cache.set(key, value)

    def checkpoint(self) -> None:
        """Checkpoint the cache's SQLite file."""
        checkpoint_file(os.path.join(self.cache.directory, "cache.db"))

    def close(self) -> None:
        """Close the cache."""
        self.cache.close()


UPSERT = (
    "INSERT INTO kv (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


def raw_connect(path: str) -> sqlite3.Connection:
    """Open (and create) the raw table: WAL, ``synchronous=NORMAL``, autocommit."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT)")
    return conn


class RawSQLite:
    """The reference: one statement per operation on one table."""

    name = RAW

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn = raw_connect(path)

    def set(self, key: str, value: Any) -> None:
        """Upsert one row."""
        self.conn.execute(UPSERT, (key, json.dumps(value)))

    def get(self, key: str) -> Any:
        """Read one row and decode it."""
        row = self.conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def has(self, key: str) -> bool:
        """Tell whether a row exists."""
        query = "SELECT 1 FROM kv WHERE key = ?"
        return self.conn.execute(query, (key,)).fetchone() is not None

    def delete(self, key: str) -> bool:
        """Delete one row."""
        return self.conn.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount > 0

    def list_keys(self) -> list[str]:
        """Return the keys in order."""
        return [row[0] for row in self.conn.execute("SELECT key FROM kv ORDER BY key")]

    def count_keys(self) -> int:
        """Count the rows."""
        count: int = self.conn.execute("SELECT count(*) FROM kv").fetchone()[0]
        return count

    def set_many(self, items: dict[str, Any]) -> None:
        """Upsert many rows in one transaction."""
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(UPSERT, ((k, json.dumps(v)) for k, v in items.items()))
        self.conn.execute("COMMIT")

    def checkpoint(self) -> None:
        """Checkpoint the table's file."""
        self.conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


# Timing ----------------------------------------------------------------------------


@dataclass
class Results:
    """Seconds per operation: ``samples[(case, subject)]`` holds one per repetition."""

    samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    cases: list[str] = field(default_factory=list)

    def add(self, case: str, subject: str, seconds: float) -> None:
        """Record one repetition's time per operation."""
        if case not in self.cases:
            self.cases.append(case)
        self.samples.setdefault((case, subject), []).append(seconds)

    def median(self, case: str, subject: str) -> float | None:
        """Return the median seconds per operation, or ``None`` if not measured."""
        values = self.samples.get((case, subject))
        return None if not values else statistics.median(values)


def timed(count: int, run: Callable[[], object]) -> float:
    """Run ``run`` once, with the collector off; return seconds per operation."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        run()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return elapsed / count


def rotated(items: list[Any], by: int) -> list[Any]:
    """Return ``items`` starting at a different place each repetition."""
    by %= max(len(items), 1)
    return items[by:] + items[:by]


def each(function: Callable[[str], object], keys: Iterable[str]) -> Callable[[], None]:
    """Return a function that calls ``function`` on every key."""

    def run() -> None:
        for key in keys:
            function(key)

    return run


def setting(subject: Subject, keys: list[str], values: list[Any]) -> Callable[[], None]:
    """Return a function that sets every key to its value."""

    def run() -> None:
        set_ = subject.set
        for key, value in zip(keys, values, strict=True):
            set_(key, value)

    return run


# Cases -----------------------------------------------------------------------------


def key_cases(
    new: list[str], hits: list[str], misses: list[str], values: list[Any]
) -> list[tuple[str, Callable[[Subject], Callable[[], None]]]]:
    """Return one repetition's operations, each a maker of the run to time."""
    return [
        ("set new", lambda s: setting(s, new, values)),
        ("overwrite", lambda s: setting(s, hits, values)),
        ("get hit", lambda s: each(s.get, hits)),
        ("get miss", lambda s: each(s.get, misses)),
        ("has", lambda s: each(s.has, hits)),
        ("delete", lambda s: each(s.delete, new)),
    ]


def measure_key_ops(
    results: Results,
    subjects: list[Subject],
    label: str,
    make_value: Callable[[int], Any],
    ops: int,
    repeats: int,
) -> None:
    """Set new, overwrite, get hit and miss, has and delete, interleaved."""
    base = [f"base-{i:06d}" for i in range(max(ops, 100))]
    values = [make_value(i) for i in range(len(base))]
    for subject in subjects:
        subject.set_many(dict(zip(base, values, strict=True)))
    hits, misses = base[:ops], [f"missing-{i:06d}" for i in range(ops)]
    for rep in range(repeats):
        new = [f"new-{rep:03d}-{i:06d}" for i in range(ops)]
        # Values no key holds yet: an overwrite with the value a key already has
        # leaves raw SQLite's page untouched, which is no write at all.
        fresh_values = [make_value(len(base) + rep * ops + i) for i in range(ops)]
        for case, make_run in key_cases(new, hits, misses, fresh_values):
            for subject in rotated(subjects, rep):
                subject.checkpoint()
                seconds = timed(ops, make_run(subject))
                results.add(f"{case}, {label}", subject.name, seconds)


def measure_listing(
    results: Results, make: Callable[[str], Subject], names: list[str], sizes: Sizes
) -> None:
    """Time list_keys and count_keys on stores of each size."""
    for size in sizes.list_sizes:
        subjects = [make(f"{name}-{size}") for name in names]
        items = {f"key-{i:07d}": small_value(i) for i in range(size)}
        for subject in subjects:
            subject.set_many(items)
        for rep in range(sizes.list_repeats):
            for subject in rotated(subjects, rep):
                results.add(
                    f"list_keys, {size:,} keys",
                    subject.name,
                    timed(1, subject.list_keys),
                )
                results.add(
                    f"count_keys, {size:,} keys",
                    subject.name,
                    timed(1, subject.count_keys),
                )
        for subject in subjects:
            subject.close()


def measure_batch(results: Results, subjects: list[Subject], sizes: Sizes) -> None:
    """Time writing many new keys in one transaction (``set_keys``)."""
    rows = sizes.batch_rows
    for rep in range(sizes.repeats):
        items = {f"batch-{rep:03d}-{i:07d}": small_value(i) for i in range(rows)}
        for subject in rotated(subjects, rep):
            seconds = timed(rows, lambda s=subject, i=items: s.set_many(i))  # type: ignore[misc]
            results.add(f"batch write, {rows:,} keys (per key)", subject.name, seconds)


def measure_fresh(
    results: Results, root: str, backends: list[str], sizes: Sizes
) -> None:
    """Time opening a service (or connection) on an existing store and one read."""
    items = {f"key-{i:04d}": small_value(i) for i in range(100)}
    runs: dict[str, Callable[[], object]] = {}
    for backend in backends:
        path = os.path.join(root, f"fresh-{backend}")
        LocalStore(backend, path).set_many(items)

        def open_and_read(backend: str = backend, path: str = path) -> None:
            with ExecutionStoreService(root=path, backend=backend) as service:
                service.get_value(STORE, "key-0042")

        runs[f"localstore[{backend}]"] = open_and_read
    cache_dir = os.path.join(root, "fresh-diskcache")
    DiskCache(cache_dir).set_many(items)
    raw_path = os.path.join(root, "fresh-raw.sqlite")
    RawSQLite(raw_path).set_many(items)

    def open_cache_and_read() -> None:
        import diskcache

        with diskcache.Cache(cache_dir) as cache:
            cache.get("key-0042")

    def open_raw_and_read() -> None:
        conn = sqlite3.connect(raw_path, isolation_level=None)
        query = "SELECT value FROM kv WHERE key = ?"
        json.loads(conn.execute(query, ("key-0042",)).fetchone()[0])
        conn.close()

    runs["diskcache"], runs[RAW] = open_cache_and_read, open_raw_and_read
    measure_runs(
        results, "fresh service + one read", runs, sizes.fresh_ops, sizes.repeats
    )


def measure_runs(
    results: Results,
    case: str,
    runs: dict[str, Callable[[], object]],
    count: int,
    repeats: int,
) -> None:
    """Time ``count`` calls of each run per repetition, interleaved."""
    names = list(runs)
    for rep in range(repeats):
        for name in rotated(names, rep):
            results.add(case, name, timed(count, lambda f=runs[name]: repeat(f, count)))  # type: ignore[misc]


def repeat(function: Callable[[], object], count: int) -> None:
    """Call ``function`` ``count`` times."""
    for _ in range(count):
        function()


def measure_cli(results: Results, root: str, sizes: Sizes) -> None:
    """Time ``python -c`` processes that import a library and read one key."""
    items = {f"key-{i:04d}": small_value(i) for i in range(100)}
    ls_root = os.path.join(root, "cli-localstore")
    LocalStore("sqlite", ls_root).set_many(items)
    raw_path = os.path.join(root, "cli-raw.sqlite")
    RawSQLite(raw_path).set_many(items)
    cache_dir = os.path.join(root, "cli-diskcache")
    DiskCache(cache_dir).set_many(items)
    programs = {
        "localstore[sqlite]": (
            "import localstore; "
            f"localstore.ExecutionStore.create({STORE!r}, root={ls_root!r})"
            ".get('key-0042')"
        ),
        RAW: (
            "import sqlite3, json; "
            f"c = sqlite3.connect({raw_path!r}); "
            "json.loads(c.execute('SELECT value FROM kv WHERE key = ?', "
            "('key-0042',)).fetchone()[0])"
        ),
        "diskcache": (
            f"import diskcache; diskcache.Cache({cache_dir!r}).get('key-0042')"
        ),
        "python -c pass": "pass",
    }
    # As installed code runs: with bytecode caches, written by one untimed run
    # (kept out of the source tree, and written even if the caller's environment
    # says otherwise).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = os.path.join(root, "pycache")
    runs = {name: python_c(code, env) for name, code in programs.items()}
    for warm_up in runs.values():
        warm_up()
    measure_runs(
        results, "python -c: import + one read", runs, sizes.cli_ops, sizes.cli_repeats
    )


def python_c(code: str, env: dict[str, str]) -> Callable[[], object]:
    """Return a function that runs ``python -c code`` in a new process."""
    return lambda: subprocess.run([sys.executable, "-c", code], env=env, check=True)


def measure_sweep(results: Results, root: str, sizes: Sizes) -> None:
    """Time deleting the expired half of a store against a raw indexed DELETE."""
    count = sizes.sweep_keys
    case = f"sweep, {count:,} keys, half expired"
    expired = {f"key-{i:07d}": {"n": i} for i in range(0, count, 2)}
    live = {f"key-{i:07d}": {"n": i} for i in range(1, count, 2)}
    for rep in range(sizes.sweep_repeats):
        for name in rotated(["localstore[sqlite]", RAW], rep):
            directory = tempfile.mkdtemp(dir=root)
            if name == RAW:
                run = _prepare_raw_sweep(directory, expired, live)
            else:
                run = _prepare_localstore_sweep(directory, expired, live)
            time.sleep(0.01)  # let the 1 µs TTLs run out
            results.add(case, name, timed(1, run))
            shutil.rmtree(directory)


def _prepare_localstore_sweep(
    directory: str, expired: dict[str, Any], live: dict[str, Any]
) -> Callable[[], object]:
    """Fill a store with expiring and lasting keys; return its sweep."""
    service = ExecutionStoreService(root=directory, backend="sqlite")
    service.set_keys(STORE, expired, ttl=1e-6)
    service.set_keys(STORE, live)
    return service.sweep


def _prepare_raw_sweep(
    directory: str, expired: dict[str, Any], live: dict[str, Any]
) -> Callable[[], object]:
    """Fill a raw table with an indexed expiry column; return its DELETE."""
    conn = sqlite3.connect(os.path.join(directory, "raw.sqlite"), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT, expires_at INTEGER)"
    )
    conn.execute("CREATE INDEX kv_expiry ON kv (expires_at)")
    past = time.time_ns() // 1000
    conn.execute("BEGIN")
    insert = "INSERT INTO kv VALUES (?, ?, ?)"
    conn.executemany(insert, ((k, json.dumps(v), past) for k, v in expired.items()))
    conn.executemany(insert, ((k, json.dumps(v), None) for k, v in live.items()))
    conn.execute("COMMIT")
    now = time.time_ns() // 1000
    return lambda: conn.execute("DELETE FROM kv WHERE expires_at <= ?", (now,))


def measure_json_backend(results: Results, root: str, sizes: Sizes) -> None:
    """Time set (overwrite) and get on JSON-backend stores of several sizes."""
    for size in sizes.json_sizes:
        items = {f"key-{i:06d}": small_value(i) for i in range(size)}
        subjects: list[Subject] = [
            LocalStore("json", os.path.join(root, f"json-{size}")),
            RawSQLite(os.path.join(root, f"json-raw-{size}.sqlite")),
        ]
        for subject in subjects:
            subject.set_many(items)
        ops = max(2, min(50, 20_000 // size))
        keys = list(items)[:ops]
        values = [small_value(-i) for i in range(ops)]
        for rep in range(sizes.repeats):
            for subject in rotated(subjects, rep):
                results.add(
                    f"json backend set, {size:,} keys",
                    subject.name,
                    timed(ops, setting(subject, keys, values)),
                )
                results.add(
                    f"json backend get, {size:,} keys",
                    subject.name,
                    timed(ops, each(subject.get, keys)),
                )
        for subject in subjects:
            subject.close()


# Running ---------------------------------------------------------------------------


def key_value_subjects(root: str, label: str, backends: list[str]) -> list[Subject]:
    """Return raw sqlite3, diskcache and each localstore backend, on fresh stores."""
    subjects: list[Subject] = [RawSQLite(os.path.join(root, f"raw-{label}.sqlite"))]
    subjects.append(DiskCache(os.path.join(root, f"diskcache-{label}")))
    subjects += [LocalStore(b, os.path.join(root, f"ls-{b}-{label}")) for b in backends]
    return subjects


def make_listing_subject(root: str) -> Callable[[str], Subject]:
    """Return a factory of subjects named ``"<subject>-<size>"``."""

    def make(spec: str) -> Subject:
        name = spec.rsplit("-", 1)[0]
        path = os.path.join(root, f"list-{spec}")
        if name == RAW:
            return RawSQLite(path + ".sqlite")
        if name == "diskcache":
            return DiskCache(path)
        return LocalStore(name, path)

    return make


def run(sizes: Sizes, root: str, only: set[str] | None) -> Results:
    """Run every case (or those in ``only``) and return the results."""
    results = Results()
    # The JSON backend rewrites its file per write: it gets its own, smaller case.
    # MongoDB needs a server, which a benchmark run cannot assume.
    backends = [name for name in sorted(BACKENDS) if name not in ("json", "mongodb")]
    steps: dict[str, Callable[[], None]] = {
        "small": lambda: measure_key_ops(
            results,
            key_value_subjects(root, "small", backends),
            "small",
            small_value,
            sizes.small_ops,
            sizes.repeats,
        ),
        "large": lambda: measure_key_ops(
            results,
            key_value_subjects(root, "large", backends),
            "100 KB lists",
            flat_large_value,
            sizes.large_ops,
            sizes.repeats,
        ),
        "records": lambda: measure_key_ops(
            results,
            key_value_subjects(root, "records", backends),
            "100 KB records",
            records_large_value,
            sizes.large_ops,
            sizes.repeats,
        ),
        "listing": lambda: measure_listing(
            results, make_listing_subject(root), [RAW, "diskcache", *backends], sizes
        ),
        "batch": lambda: measure_batch(
            results, key_value_subjects(root, "batch", backends), sizes
        ),
        "fresh": lambda: measure_fresh(
            results,
            root,
            [b for b in sorted(BACKENDS) if b in ("sqlite", "json")],
            sizes,
        ),
        "cli": lambda: measure_cli(results, root, sizes),
        "sweep": lambda: measure_sweep(results, root, sizes),
        "json": lambda: (
            measure_json_backend(results, root, sizes) if "json" in BACKENDS else None
        ),
    }
    for name, step in steps.items():
        if only is None or name in only:
            started = time.perf_counter()
            step()
            print(f"# {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run, print the table and optionally update README."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--sweep-keys", type=int, help="keys in the sweep case")
    parser.add_argument("--only", help="comma-separated steps, e.g. small,cli")
    parser.add_argument(
        "--readme",
        action="store_true",
        help="rewrite the '## Performance' section of README.md",
    )
    parser.add_argument("--json", metavar="PATH", help="also save raw samples here")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.sweep_keys:
        sizes.sweep_keys = args.sweep_keys
    only = set(args.only.split(",")) if args.only else None
    with tempfile.TemporaryDirectory(prefix="localstore-bench-") as root:
        results = run(sizes, root, only)
    subjects = list(dict.fromkeys(name for _, name in results.samples))
    text = report.render(results.cases, subjects, results.median, quick=args.quick)
    print(text)
    if args.json:
        with open(args.json, "w") as file:
            samples = [
                [case, name, values] for (case, name), values in results.samples.items()
            ]
            json.dump(samples, file, indent=1)
    if args.readme:
        report.update_readme(
            os.path.join(os.path.dirname(__file__), "..", "README.md"), text
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
