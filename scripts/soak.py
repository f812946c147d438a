"""Soak localstore: writers on one root, killed and restarted, for minutes.

Not part of the test suite. Each worker process loops over random operations
and logs every acknowledged one (after the call returned); a supervisor
SIGKILLs a random worker every few tenths of a second and starts a new one.
At the end the root is checked:

- every logged ``set_key`` into the append-only store is there, with its value;
- the shared counter, raised by ``compare_and_set_key``, holds at least the
  acknowledged increments and at most one more per killed worker;
- each SQLite file passes ``PRAGMA integrity_check``;
- a store that is created and deleted in a loop opens, and lists, without error.

Run ``python scripts/soak.py --help`` for the knobs; exit status 1 on a violation.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

from localstore import ExecutionStoreService, StoreExistsError

FORK = multiprocessing.get_context("fork")


def work(root: str, backend: str, worker: int, log_path: str) -> None:
    """Run random operations forever, logging each acknowledged one."""
    service = ExecutionStoreService(root=root, backend=backend, timeout=30)
    rng = random.Random(worker)
    with open(log_path, "a", encoding="utf-8") as log:
        for count in range(sys.maxsize):
            roll = rng.random()
            if roll < 0.5:
                key = f"{worker}-{count}"
                service.set_key("appended", key, {"worker": worker, "count": count})
                entry = ["set", key]
            elif roll < 0.75:
                current = service.get_value("counter", "n", 0)
                if not service.compare_and_set_key(
                    "counter", "n", current, current + 1
                ):
                    continue
                entry = ["increment", current + 1]
            elif roll < 0.85:
                service.delete_store("churn")
                entry = ["delete"]
            elif roll < 0.95:
                try:
                    service.create_store("churn", metadata={"by": worker})
                except StoreExistsError:
                    entry = ["exists"]
                else:
                    entry = ["create"]
            else:
                service.set_key("churn", f"{worker}-{count}", count, ttl=0.5)
                entry = ["churn"]
            log.write(json.dumps(entry) + "\n")
            log.flush()


def supervise(args: argparse.Namespace, root: str, backend: str) -> int:
    """Run, kill and restart workers for the given time; return the kill count."""
    log_dir = Path(root, "..", f"logs-{backend}").resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    seed = ExecutionStoreService(root=root, backend=backend)
    seed.set_key("counter", "n", 0)
    seed.close()
    workers: dict[int, BaseProcess] = {}
    next_worker = 0

    def launch() -> None:
        nonlocal next_worker
        log_path = str(log_dir / f"{next_worker}.jsonl")
        process = FORK.Process(target=work, args=(root, backend, next_worker, log_path))
        process.start()
        workers[next_worker] = process
        next_worker += 1

    for _ in range(args.processes):
        launch()
    kills = 0
    rng = random.Random(0)
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0, 2 * args.kill_every))
        victim = rng.choice(list(workers))
        os.kill(workers[victim].pid or 0, signal.SIGKILL)
        workers.pop(victim).join()
        kills += 1
        launch()
    for process in workers.values():
        process.terminate()
        process.join()
        kills += 1  # a terminated worker may also stop between write and log
    return kills


def check(root: str, backend: str, kills: int) -> list[str]:
    """Return every violation found in a soaked root."""
    problems = []
    log_dir = Path(root, "..", f"logs-{backend}").resolve()
    entries = [
        json.loads(line)
        for path in log_dir.glob("*.jsonl")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.endswith("]")  # a line cut short by a kill was not acknowledged
    ]
    service = ExecutionStoreService(root=root, backend=backend)
    keys, values = service.list_keys("appended"), service.list_values("appended")
    stored = dict(zip(keys, values, strict=True))
    for entry in entries:
        if entry[0] == "set":
            worker, count = map(int, entry[1].split("-"))
            if stored.get(entry[1]) != {"worker": worker, "count": count}:
                problems.append(f"acknowledged key {entry[1]} is missing or wrong")
    increments = max((e[1] for e in entries if e[0] == "increment"), default=0)
    counter = service.get_value("counter", "n")
    if not increments <= counter <= increments + kills:
        problems.append(f"counter {counter}, acknowledged up to {increments}")
    service.get_store("churn")
    service.list_stores()
    if backend == "sqlite":
        for path in Path(root).rglob("*.sqlite"):
            conn = sqlite3.connect(path)
            result = conn.execute("PRAGMA integrity_check").fetchall()
            conn.close()
            if result != [("ok",)]:
                problems.append(f"{path}: {result}")
    print(
        f"{backend}: {len(entries)} acknowledged operations, {kills} kills, "
        f"{len(stored)} keys, counter {counter}"
    )
    return problems


def main() -> int:
    """Soak each chosen backend in turn; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300, help="per backend")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=0.3, help="mean seconds")
    parser.add_argument("--backend", action="append", choices=["sqlite", "json"])
    parser.add_argument("--keep", action="store_true", help="keep the root")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="localstore-soak-")
    problems = []
    for backend in args.backend or ["sqlite", "json"]:
        root = os.path.join(base, backend, "root")
        kills = supervise(args, root, backend)
        problems += check(root, backend, kills)
    for problem in problems:
        print("VIOLATION:", problem)
    if args.keep:
        print(f"root kept at {base}")
    else:
        shutil.rmtree(base)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
