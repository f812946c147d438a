"""Permissions and planted links: read-only roots, private files, links refused.

CI runs as root, whom permissions do not stop, so the read-only root is tested
in a forked child that first becomes the unprivileged user ``nobody``.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localstore import (
    ExecutionStoreService,
    LocalStoreError,
    StorePermissionError,
)
from localstore._doctor import examine_root

from .conftest import FORK, Start, make_healthy_and_damaged_stores

NOBODY = 65534
LONG_NAME = "long-" + "x" * 200  # over the file name's limit: kept under a hash


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory that ``nobody`` owns (pytest's own are private to root)."""
    base = Path(tempfile.mkdtemp(prefix="localstore-perm-"))
    base.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(base, NOBODY, NOBODY)
    yield base
    shutil.rmtree(base)


def become_unprivileged() -> None:
    """Drop root for good, so that permissions apply; a no-op for other users."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# A read-only root --------------------------------------------------------------


def warm_up(root: Path, backend: str) -> None:
    """Import every module the child needs: as nobody it cannot read the venv."""
    service = ExecutionStoreService(root=root, backend=backend)
    service.create_store("warm", metadata={"a": 1})
    service.set_key("warm", "key", 1)
    service.update_ttl("warm", "key", 60)
    service.list_stores()
    service.delete_key("warm", "key")
    service.delete_store("warm")
    service.close()
    shutil.rmtree(root)


def use_read_only_root(root: str, backend: str, out: Any) -> None:
    become_unprivileged()
    service = ExecutionStoreService(root=root, backend=backend)
    service.create_store("kept", metadata={"a": 1})
    service.set_key("kept", "key", "value")
    service.set_key("kept", "other", [1, 2])
    service.set_key(LONG_NAME, "key", 1)  # its name is read from inside its file
    service.close()
    for path, _, names in os.walk(root):
        for name in names:
            os.chmod(os.path.join(path, name), 0o400)
        os.chmod(path, 0o500)
    before = snapshot(Path(root))
    service = ExecutionStoreService(root=root, backend=backend, timeout=30)

    reads = {
        "get_value": service.get_value("kept", "key") == "value",
        "list_keys": service.list_keys("kept") == ["key", "other"],
        "count_keys": service.count_keys("kept") == 2,
        "list_stores": service.list_stores() == ["kept", LONG_NAME],
        "long_name": service.get_value(LONG_NAME, "key") == 1,
        "get_store": getattr(service.get_store("kept"), "metadata", None) == {"a": 1},
        "missing": service.get_value("absent", "key") is None,
    }
    writes = {
        "set_key": lambda: service.set_key("kept", "key", "changed"),
        "set_key_new_store": lambda: service.set_key("new", "key", 1),
        "delete_key": lambda: service.delete_key("kept", "key"),
        "update_ttl": lambda: service.update_ttl("kept", "key", 60),
        "delete_store": lambda: service.delete_store("kept"),
        "create_store": lambda: service.create_store("new"),
    }
    refused = {}
    for name, write in writes.items():
        began = time.monotonic()
        try:
            write()
            refused[name] = "succeeded"
        except StorePermissionError:
            refused[name] = time.monotonic() - began
        except Exception as exc:
            refused[name] = repr(exc)
    reads["after_writes"] = service.get_value("kept", "key") == "value"
    out.put(
        {"reads": reads, "refused": refused, "same": snapshot(Path(root)) == before}
    )


@pytest.mark.timeout(60)
def test_read_only_root_reads_work_and_writes_raise_permission_error_at_once(
    shared_dir: Path, file_backend: str, start: Start
) -> None:
    warm_up(shared_dir / "warm", file_backend)
    out = FORK.Queue()

    child = start(use_read_only_root, str(shared_dir / "root"), file_backend, out)
    result = out.get(timeout=50)
    child.join(10)

    assert child.exitcode == 0
    assert result["reads"] == dict.fromkeys(result["reads"], True)
    not_refused = {
        name: outcome
        for name, outcome in result["refused"].items()
        if not isinstance(outcome, float) or outcome > 5  # not the 30 s timeout
    }
    assert not_refused == {}
    assert result["same"]
    assert issubclass(StorePermissionError, PermissionError)


def check_read_only_root(root: str, out: Any) -> None:
    become_unprivileged()
    damaged = make_healthy_and_damaged_stores(root)
    for path, _, _ in os.walk(root):
        os.chmod(path, 0o500)

    checked, problems = examine_root(root)
    out.put({"checked": checked, "problems": problems, "damaged": damaged})


@pytest.mark.timeout(60)
def test_doctor_on_a_read_only_root_reports_only_the_damaged_store(
    shared_dir: Path, start: Start
) -> None:
    warm_up(shared_dir / "warm", "sqlite")
    out = FORK.Queue()

    child = start(check_read_only_root, str(shared_dir / "root"), out)
    result = out.get(timeout=50)
    child.join(10)

    assert child.exitcode == 0
    assert result["checked"] == 2
    assert [path for path, _ in result["problems"]] == [result["damaged"]]
    assert "readonly" not in result["problems"][0][1]


# Modes and the umask ---------------------------------------------------------------


def create_everything(base: str, backend: str, umask: int, out: Any) -> None:
    root = os.path.join(base, "yet", "there")
    os.umask(umask)
    service = ExecutionStoreService(root=root, backend=backend, dataset_id="ds")
    service.create_store("made", metadata={"a": 1})
    service.set_key("made", "key", 1)
    ExecutionStoreService(root=root, backend=backend).set_key("global", "key", 2)
    service.delete_store("made")
    service.set_key("again", "key", 3, ttl=60)
    modes = {
        os.path.join(path, name): stat.S_IMODE(
            os.lstat(os.path.join(path, name)).st_mode
        )
        for path, dirs, files in os.walk(base)
        for name in [*dirs, *files]
    }
    modes[base] = stat.S_IMODE(os.lstat(base).st_mode)
    out.put({"modes": modes, "umask_after": os.umask(0o077)})


@pytest.mark.timeout(60)
@pytest.mark.parametrize("umask", [0o000, 0o022], ids=["umask-000", "umask-022"])
def test_created_files_and_directories_are_private_and_umask_is_unchanged(
    tmp_path: Path, file_backend: str, umask: int, start: Start
) -> None:
    base = tmp_path / "not"  # localstore makes it, and the root below it
    out = FORK.Queue()

    child = start(create_everything, str(base), file_backend, umask, out)
    result = out.get(timeout=50)
    child.join(10)

    assert child.exitcode == 0
    assert result["umask_after"] == umask
    shared = {path: oct(mode) for path, mode in result["modes"].items() if mode & 0o077}
    assert shared == {}
    assert len(result["modes"]) >= 8  # directories, stores and their files


# Planted symbolic links ------------------------------------------------------------


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """A file that no link planted under the root may ever change."""
    path = tmp_path / "precious.txt"
    path.write_text("precious")
    path.chmod(0o644)
    return path


def assert_untouched(target: Path) -> None:
    assert target.read_text() == "precious"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def attempt(call: Callable[[], object]) -> None:
    """Run a call that may succeed or refuse, but must not fail any other way."""
    try:
        call()
    except LocalStoreError:
        return


def plant(link: Path, target: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


@pytest.mark.timeout(30)
def test_symlink_planted_as_lock_file_never_has_its_target_written(
    root: Path, file_backend: str, target: Path
) -> None:
    service = ExecutionStoreService(root=root, backend=file_backend)
    service.set_key("existing", "key", 1)
    new_store = Path(service.repo.store_path(None, "new"))
    locks = [*root.rglob("*.lock"), Path(f"{new_store}.lock")]
    for lock in locks:
        plant(lock, target)

    attempt(lambda: service.set_key("existing", "key", 2))
    attempt(lambda: service.set_key("new", "key", 1))
    attempt(lambda: service.delete_store("existing"))

    assert_untouched(target)
    assert all(lock.is_symlink() for lock in locks)


@pytest.fixture
def foreign_store(tmp_path: Path, file_backend: str) -> Path:
    """A real store file of another root, as a tempting link target."""
    service = ExecutionStoreService(root=tmp_path / "elsewhere", backend=file_backend)
    service.set_key("victim", "key", "theirs")
    path = Path(service.repo.store_path(None, "victim"))
    service.close()
    path.chmod(0o644)
    return path


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["store-file", "plain-file"])
def test_symlink_planted_as_store_file_never_has_its_target_written(
    root: Path, file_backend: str, target: Path, foreign_store: Path, kind: str
) -> None:
    service = ExecutionStoreService(root=root, backend=file_backend)
    service.set_key("good", "key", 1)
    link = Path(service.repo.store_path(None, "victim"))
    pointed = foreign_store if kind == "store-file" else target
    before = pointed.read_bytes()
    plant(link, pointed)

    attempt(lambda: service.set_key("victim", "key", "ours"))
    attempt(lambda: service.delete_key("victim", "key"))
    attempt(lambda: service.delete_store("victim"))
    attempt(lambda: service.create_store("victim"))
    attempt(lambda: service.list_stores())
    service.close()

    assert pointed.read_bytes() == before
    assert stat.S_IMODE(pointed.stat().st_mode) == 0o644
    assert service.get_value("good", "key") == 1


@pytest.mark.timeout(30)
def test_symlinks_planted_as_wal_files_never_have_their_target_written(
    root: Path, target: Path
) -> None:
    service = ExecutionStoreService(root=root)
    service.set_key("store", "key", 1)
    path = service.repo.store_path(None, "store")
    service.close()
    for suffix in ("-wal", "-shm", "-journal"):
        plant(Path(path + suffix), target)

    with pytest.raises(LocalStoreError) as raised:
        service.set_key("store", "key", 2)

    assert path in str(raised.value)
    assert_untouched(target)


@pytest.mark.timeout(30)
def test_symlink_planted_as_temporary_file_never_has_its_target_written(
    root: Path, file_backend: str, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = ExecutionStoreService(root=root, backend=file_backend)
    service.set_key("existing", "key", 1)
    guessed = uuid.UUID(int=4)
    monkeypatch.setattr(uuid, "uuid4", lambda: guessed)  # make the name guessable
    for store in ("existing", "new"):
        path = service.repo.store_path(None, store)
        temporary = f"{path}.{guessed.hex}.tmp"
        for suffix in ("", "-wal", "-shm", "-journal"):
            plant(Path(temporary + suffix), target)

    attempt(lambda: service.set_key("existing", "key", 2))
    attempt(lambda: service.set_key("new", "key", 1))

    assert_untouched(target)
