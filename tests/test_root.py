"""Where the root is: argument, then $LOCALSTORE_ROOT, then the user data directory."""

from __future__ import annotations

import os

import platformdirs
import pytest

from localstore import ExecutionStoreService
from localstore._paths import resolve_root


def test_explicit_root_wins_over_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALSTORE_ROOT", str(tmp_path / "env"))

    assert resolve_root(tmp_path / "arg") == (str(tmp_path / "arg"), "argument")


def test_environment_root_is_used_and_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOCALSTORE_ROOT", "relative/dir")

    path, source = resolve_root(None)

    assert source == "environment"
    assert path == os.path.join(str(tmp_path), "relative", "dir")


def test_environment_root_expands_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LOCALSTORE_ROOT", "~/stores")

    assert resolve_root(None) == (str(tmp_path / "stores"), "environment")


def test_empty_environment_value_means_default(monkeypatch):
    monkeypatch.setenv("LOCALSTORE_ROOT", "")

    path, source = resolve_root(None)

    assert source == "default"
    assert path == os.path.abspath(
        platformdirs.user_data_dir("localstore", appauthor=False)
    )


def test_empty_root_argument_is_rejected():
    with pytest.raises(ValueError, match="root"):
        resolve_root("")


def test_service_writes_under_its_root_only(tmp_path):
    service = ExecutionStoreService(root=tmp_path / "r", dataset_id="ds")

    service.set_key("s", "k", 1)

    assert service.root == str(tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["execution_store"]
    contexts = sorted(p.name for p in (tmp_path / "r" / "execution_store").iterdir())
    assert contexts == ["ds"]


def test_blank_environment_value_means_default(monkeypatch):
    monkeypatch.setenv("LOCALSTORE_ROOT", "   ")

    assert resolve_root(None)[1] == "default"


@pytest.mark.parametrize("backend", ["sqlite", "json"])
def test_a_root_that_is_a_file_is_refused_as_not_a_directory(tmp_path, backend):
    import errno

    from localstore import StoreIOError

    root = tmp_path / "root"
    root.write_text("not a directory")
    service = ExecutionStoreService(root=root, backend=backend)

    with pytest.raises(StoreIOError) as caught:
        service.set_key("s", "k", 1)

    assert caught.value.errno == errno.ENOTDIR
    assert root.read_text() == "not a directory"
