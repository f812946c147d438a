"""The checks behind ``localstore doctor``: store files, leftovers, the filesystem.

Every check only reads. A damaged file is reported, never repaired or reset.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import time

from ._backend import KeyRecord, StoreRecord
from ._backends import BACKENDS, open_backend
from ._export import document_fields
from ._paths import GLOBAL_CONTEXT_DIR, decode_name
from ._sqlite_files import read_file
from ._sqlite_sql import APPLICATION_ID, SCHEMA_VERSION
from .errors import LocalStoreError

__all__ = ["NETWORK_FILESYSTEMS", "examine_root", "filesystem_type"]

logger = logging.getLogger(__name__)

#: Filesystem types (as in /proc/mounts) on which file locks and SQLite's
#: shared-memory index cannot be trusted.
NETWORK_FILESYSTEMS = frozenset(
    {
        "9p", "afs", "beegfs", "ceph", "cifs", "davfs", "fuse.cephfs",
        "fuse.gcsfuse", "fuse.glusterfs", "fuse.juicefs", "fuse.rclone",
        "fuse.s3fs", "fuse.sshfs", "glusterfs", "gpfs", "lustre", "ncpfs", "nfs",
        "nfs4", "smb3", "smbfs", "sshfs",
    }
)  # fmt: skip

#: Seconds after which a temporary file cannot belong to a write in progress.
TEMPORARY_FILE_AGE = 60.0

#: Store file suffixes and the backend that writes each.
_SUFFIXES = {".sqlite": "sqlite", ".json": "json"}

_MOUNTS = "/proc/mounts"


def examine_root(root: str) -> tuple[int, list[tuple[str, str]]]:
    """Check the root and every file under it.

    :returns: how many store files were checked, and ``(path, problem)`` pairs.
    """
    problems = []
    kind = filesystem_type(root)
    if kind in NETWORK_FILESYSTEMS:
        problems.append(
            (
                root,
                f"is on a network filesystem ({kind}); locks and SQLite's shared "
                "memory are not reliable there: keep the root on a local disk",
            )
        )

    checked = 0
    for path in _files_under(root):
        if path.endswith(".tmp"):
            problem = _check_temporary(path)
            found = [] if problem is None else [problem]
        elif (suffix := os.path.splitext(path)[1]) in _SUFFIXES:
            checked += 1
            reader = _check_sqlite if suffix == ".sqlite" else _check_json
            problem = reader(path)
            if problem is None:
                found = _check_read(root, path, _SUFFIXES[suffix])
            else:
                found = [problem]
        else:
            continue
        problems += [(path, problem) for problem in found]
    return checked, problems


def filesystem_type(path: str, mounts: str | None = None) -> str | None:
    """Return the type of the filesystem that holds ``path``, as /proc/mounts names it.

    :param mounts: the text of /proc/mounts; read from the system when ``None``.
    :returns: the type, or ``None`` where the system has no /proc/mounts.
    """
    if mounts is None:
        try:
            with open(_MOUNTS, encoding="utf-8", errors="replace") as file:
                mounts = file.read()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, kind = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        # Spaces and tabs in mount points are written as octal escapes (\040).
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def _files_under(root: str) -> list[str]:
    """Return every file below ``root``, sorted; none if it does not exist."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories.sort()
        found += [os.path.join(directory, name) for name in sorted(files)]
    return found


def _check_temporary(path: str) -> str | None:
    """Report a temporary file old enough to be left over by a crash."""
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:  # the write it belonged to just finished
        return None
    if age < TEMPORARY_FILE_AGE:
        return None
    return (
        "temporary file left by an interrupted write; delete it while no "
        "localstore process runs"
    )


def _check_sqlite(path: str) -> str | None:
    """Run SQLite's integrity check and check the marks of a localstore file.

    A file whose -shm file cannot be made (a read-only directory, a full disk)
    is read as it stands, as the API reads it.
    """
    try:
        return read_file(path, _check_sqlite_connection)
    except sqlite3.Error as exc:
        return f"cannot be read as SQLite: {exc}"


def _check_sqlite_connection(uri: str) -> str | None:
    """Check a SQLite file through ``uri``; sqlite3 errors are the caller's."""
    conn = sqlite3.connect(uri, uri=True, timeout=5.0)
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id != APPLICATION_ID or not 1 <= version <= SCHEMA_VERSION:
            return (
                f"not a store file of this localstore (application id "
                f"{app_id:#x}, schema version {version})"
            )
        result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()
    if result != ["ok"]:
        return f"SQLite integrity check failed: {'; '.join(result[:3])}"
    return None


def _check_json(path: str) -> str | None:
    """Check that a JSON store file parses, as strict JSON, into an object."""

    def reject(constant: str) -> None:
        raise ValueError(f"{constant} is not strict JSON")

    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file, parse_constant=reject)
    # UnicodeDecodeError is a ValueError; RecursionError: nesting too deep to parse.
    except (OSError, ValueError, RecursionError) as exc:
        return f"is not valid JSON: {exc!r}"
    if not isinstance(data, dict):
        return f"holds a JSON {type(data).__name__} where a store object belongs"
    return None


def _check_read(root: str, path: str, kind: str) -> list[str]:
    """Read a store and all it holds through its backend, as the API would.

    :returns: one problem per damaged key (or document), or the one problem
        that kept the store from being read.

    Files with hashed (shortened) names are left to the format checks: their
    exact names are only recorded inside them.
    """
    parts = os.path.relpath(path, root).split(os.sep)
    if kind not in BACKENDS or len(parts) != 3:
        return []
    collection = decode_name(parts[0])
    is_global = parts[1] == GLOBAL_CONTEXT_DIR
    context = None if is_global else decode_name(parts[1])
    store = decode_name(os.path.splitext(parts[2])[0])
    if collection is None or store is None or (context is None and not is_global):
        return []

    backend = open_backend(kind, root, collection)
    try:
        document, keys = backend.dump_store(context, store, 0)
    except LocalStoreError as exc:
        return [_without_path(exc, path)]
    finally:
        backend.close()

    # Every value, time and policy, checked as reading it would check it.
    records: list[KeyRecord | StoreRecord] = [*keys]
    if document is not None:
        records.insert(0, document)
    problems = []
    for record in records:
        try:
            document_fields(context, store, record)
        except LocalStoreError as exc:
            problems.append(_without_path(exc, path))
    return problems


def _without_path(exc: LocalStoreError, path: str) -> str:
    """Return an error's message less the path it starts with (the report names it)."""
    return str(exc).removeprefix(path).lstrip()
