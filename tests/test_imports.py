"""What a short process pays to import localstore and read or write a key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Modules that cost a short process (a CLI call, a test worker) milliseconds
# each, and that getting and setting values does not need.
HEAVY = ["dataclasses", "filelock", "inspect", "logging", "platformdirs", "typing"]

SCRIPT = """
import json, sys
import localstore
store = localstore.ExecutionStore.create("s", root=sys.argv[1], backend=sys.argv[2])
store.set("k", {"a": 1})
assert store.get("k") == {"a": 1} and store.has("k")
print(json.dumps(sorted(m for m in json.loads(sys.argv[3]) if m in sys.modules)))
"""


def test_reading_and_writing_a_sqlite_key_imports_nothing_heavy(tmp_path):
    root = tmp_path / "root"
    command = [sys.executable, "-c", SCRIPT, str(root), "sqlite"]
    # The first run creates the store file, which takes filelock; the second,
    # like most short processes, finds it there.
    subprocess.run([*command, json.dumps(HEAVY)], check=True)

    result = subprocess.run(
        [*command, json.dumps(HEAVY)],
        check=True,
        capture_output=True,
        text=True,
    )

    assert json.loads(result.stdout) == []


def test_the_lazy_names_are_the_documented_objects():
    import localstore
    from localstore import _documents

    assert localstore.KeyDocument is _documents.KeyDocument
    assert set(localstore.__all__) <= set(dir(localstore))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = localstore.nope  # type: ignore[attr-defined]
