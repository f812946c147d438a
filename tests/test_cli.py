"""The ``localstore`` command, run as an installed program against real roots."""

from __future__ import annotations

import datetime as dt
import errno
import json
import math
import os
import pty
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localstore import ExecutionStoreService
from localstore._cli import build_parser
from localstore._doctor import filesystem_type

from .conftest import edit_json_file, hold_write_lock

README = Path(__file__).resolve().parent.parent / "README.md"
SCRIPT = shutil.which("localstore", path=os.path.dirname(sys.executable))


def run(root, *args, stdin=None, env=None, command=None):
    """Run ``python -m localstore --root ROOT ARGS`` and return the finished process."""
    command = command or [sys.executable, "-m", "localstore"]
    prefix = [] if root is None else ["--root", str(root)]
    return subprocess.run(
        [*command, *prefix, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def ok(root, *args, stdin=None):
    """Run the command, require success and silence on stderr, return stdout."""
    result = run(root, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


@pytest.fixture
def open_service(root):
    """Build services on the test's root; closes them afterwards."""
    made = []

    def make(dataset_id=None, backend="sqlite", **kwargs):
        service = ExecutionStoreService(
            dataset_id=dataset_id, root=root, backend=backend, **kwargs
        )
        made.append(service)
        return service

    yield make
    for service in made:
        service.close()


# Running the command --------------------------------------------------------------


def test_console_script_and_module_print_the_same_root(root):
    assert SCRIPT is not None, "the localstore script is not installed"

    by_script = run(root, "path", command=[SCRIPT])
    by_module = run(root, "path")
    missing = run(root, "get", "s", "k", command=[SCRIPT])
    misused = run(root, "get", command=[SCRIPT])

    assert by_script.returncode == by_module.returncode == 0
    assert by_script.stdout == by_module.stdout == f"{root}  (from --root)\n"
    assert (missing.returncode, misused.returncode) == (1, 2)


def test_path_names_the_environment_or_the_default_as_source(tmp_path):
    env = {**os.environ, "LOCALSTORE_ROOT": str(tmp_path / "env-root")}
    from_env = run(None, "--json", "path", env=env)
    del env["LOCALSTORE_ROOT"]
    env["HOME"] = env["XDG_DATA_HOME"] = str(tmp_path / "home")
    by_default = run(None, "--json", "path", env=env)

    assert json.loads(from_env.stdout) == {
        "root": str(tmp_path / "env-root"),
        "source": "environment",
    }
    expected = os.path.join(str(tmp_path / "home"), "localstore")
    assert json.loads(by_default.stdout) == {"root": expected, "source": "default"}


def test_global_options_are_accepted_after_the_subcommand(root):
    ok(root, "--dataset", "d1", "set", "s", "k", "1")

    listed = run(None, "ls", "--root", str(root), "--dataset", "d1", "--json")

    assert [entry["store_name"] for entry in json.loads(listed.stdout)] == ["s"]


# Reading and writing keys -----------------------------------------------------------


def test_set_then_get_prints_the_value_as_tagged_json(root):
    value = '{"raw":{"$bytes":"AAE="},"when":{"$date":"2024-05-06T07:08:09.123456"}}'

    ok(root, "set", "s", "k", value)
    printed = ok(root, "get", "s", "k")

    assert printed == value + "\n"
    with ExecutionStoreService(root=root) as service:
        stored = service.get_value("s", "k")
    assert stored == {
        "raw": b"\x00\x01",
        "when": dt.datetime(2024, 5, 6, 7, 8, 9, 123456),
    }


def test_set_rejects_json_that_is_not_strict(root):
    result = run(root, "set", "s", "k", "[NaN]")

    assert result.returncode == 2
    assert "NaN is not strict JSON" in result.stderr
    assert run(root, "get", "s", "k").returncode == 1


@pytest.mark.parametrize("number", ["1e400", "[-1e400]", '{"a": [1.5e999]}'])
def test_set_refuses_a_number_that_overflows_to_infinity(root, number):
    result = run(root, "set", "s", "k", number)

    assert result.returncode == 2
    assert "VALUE is not storable JSON: the number" in result.stderr
    assert "beyond the range of a float" in result.stderr
    assert run(root, "get", "s", "k").returncode == 1


def test_set_of_text_that_is_not_json_says_so_with_the_parser_reason(root):
    result = run(root, "set", "s", "k", "not json")

    assert result.returncode == 2
    complaint = result.stderr.splitlines()[-1]
    assert complaint.startswith(
        "localstore set: error: VALUE is not valid JSON (Expecting value: line 1"
    )
    assert "tag" not in complaint
    assert "damaged" not in complaint


def test_an_empty_collection_is_refused_under_its_own_name(root):
    result = run(root, "--collection", "", "ls")

    assert result.returncode == 2
    assert "argument --collection: collection_name must not be empty" in (result.stderr)
    assert "store_name" not in result.stderr


def test_set_with_dash_reads_the_value_from_stdin(root):
    ok(root, "set", "s", "k", "-", stdin='["from", "stdin", {"$float": "NaN"}]')

    assert ok(root, "get", "s", "k") == '["from","stdin",{"$float":"NaN"}]\n'


def test_get_meta_shows_timestamps_ttl_and_policy(root):
    before = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    ok(root, "set", "s", "k", "42", "--ttl", "600")
    ok(root, "set", "s", "p", "1", "--policy", "evict")

    meta = json.loads(ok(root, "--json", "get", "s", "k", "--meta"))
    evict = json.loads(ok(root, "--json", "get", "s", "p", "--meta"))
    table = ok(root, "get", "s", "k", "--meta")

    assert meta["value"] == 42
    assert meta["policy"] == "evict"
    created = dt.datetime.fromisoformat(meta["created_at"])
    expires = dt.datetime.fromisoformat(meta["expires_at"])
    assert before <= created
    assert expires - created == dt.timedelta(seconds=600)
    assert (evict["policy"], evict["expires_at"]) == ("evict", None)
    assert re.search(r"^policy:\s+evict$", table, re.MULTILINE)
    assert re.search(rf"^expires_at:\s+{re.escape(meta['expires_at'])}$", table, re.M)


def test_keys_lists_sorted_keys_and_filters_by_prefix(root):
    for key in ("b1", "a", "b2", "B3"):
        ok(root, "set", "s", key, "0")

    assert ok(root, "keys", "s") == "B3\na\nb1\nb2\n"
    assert ok(root, "keys", "s", "--prefix", "b") == "b1\nb2\n"
    assert json.loads(ok(root, "--json", "keys", "s", "--prefix", "a")) == ["a"]


def test_rm_deletes_keys_then_the_whole_store(root):
    for key in ("a", "b", "c"):
        ok(root, "set", "s", key, "0")

    ok(root, "rm", "s", "a", "b")
    remaining = ok(root, "keys", "s")
    ok(root, "rm", "s")
    gone = run(root, "keys", "s")

    assert remaining == "c\n"
    assert gone.returncode == 1


def test_rm_of_a_missing_key_deletes_nothing_and_exits_1(root):
    ok(root, "set", "s", "a", "0")
    ok(root, "set", "s", "b", "0")

    result = run(root, "rm", "s", "a", "nope")

    assert result.returncode == 1
    assert (
        result.stderr
        == "localstore: no key 'nope' in store 's' of the global context\n"
    )
    assert ok(root, "keys", "s") == "a\nb\n"


def test_rm_of_a_key_named_twice_deletes_it_once_and_exits_0(root):
    ok(root, "set", "s", "a", "0")
    ok(root, "set", "s", "b", "0")

    ok(root, "rm", "s", "a", "a")

    assert ok(root, "keys", "s") == "b\n"


def test_commands_use_the_dataset_context_and_collection(root, open_service):
    open_service(dataset_id="d1", collection_name="other").set_key("s", "k", "scoped")

    scoped = run(root, "--dataset", "d1", "--collection", "other", "get", "s", "k")
    meta = ok(
        root, "--dataset", "d1", "--collection", "other", "get", "s", "k", "--meta"
    )
    unscoped = run(root, "get", "s", "k")

    assert scoped.stdout == '"scoped"\n'
    assert re.search(r"^dataset_id:\s+d1$", meta, re.MULTILINE)
    assert unscoped.returncode == 1


def test_the_memory_backend_keeps_nothing_between_runs(root):
    ok(root, "--backend", "memory", "set", "s", "k", "1")

    listed = ok(root, "--backend", "memory", "ls")
    swept = json.loads(ok(root, "--backend", "memory", "--json", "sweep"))

    assert listed == "(no stores)\n"
    assert swept == {"dry_run": False, "stores": [], "total": 0, "left_out": 0}
    assert list(root.iterdir()) == []


# Listing stores -------------------------------------------------------------------


def test_ls_shows_key_count_size_and_last_update_aligned(root, open_service):
    service = open_service()
    service.set_keys("small", {"a": 1})
    service.set_keys("a_longer_name", {str(i): "x" * 100 for i in range(50)})
    service.close()
    last = service.get_key("a_longer_name", "49").updated_at

    lines = ok(root, "ls").splitlines()

    assert re.split(r"\s{2,}", lines[0]) == ["STORE", "KEYS", "SIZE", "UPDATED (UTC)"]
    assert lines[1].split()[:2] == ["a_longer_name", "50"]
    assert lines[2].split()[:2] == ["small", "1"]
    assert lines[1].endswith(last.isoformat(sep=" ", timespec="seconds"))
    # Numbers are right-aligned under their header, names left-aligned.
    ends = {line.index(line.split()[1]) + len(line.split()[1]) for line in lines[1:]}
    assert ends == {lines[0].index("KEYS") + len("KEYS")}
    size = json.loads(ok(root, "--json", "ls"))[0]["size"]
    assert size >= os.path.getsize(service.repo.store_path(None, "a_longer_name"))


def test_ls_all_lists_every_context(root, open_service):
    open_service().set_key("g", "k", 1)
    open_service(dataset_id="d1").set_key("s", "k", 1)

    single = json.loads(ok(root, "--json", "ls"))
    every = json.loads(ok(root, "--json", "ls", "--all"))
    table = ok(root, "ls", "--all").splitlines()

    assert [(e["dataset_id"], e["store_name"]) for e in single] == [(None, "g")]
    assert [(e["dataset_id"], e["store_name"]) for e in every] == [
        (None, "g"),
        ("d1", "s"),
    ]
    assert [line.split()[:2] for line in table[1:]] == [["(global)", "g"], ["d1", "s"]]


@pytest.mark.parametrize("backend", ["sqlite", "json"])
def test_ls_of_a_healthy_root_reads_every_value_and_exits_0_silently(
    root, open_service, backend
):
    service = open_service(backend=backend)
    service.create_store("documented", metadata={"when": dt.datetime(2026, 1, 2)})
    service.set_key("documented", "raw", b"\x00\x01", ttl=600)
    service.set_cache_key("documented", "odd", [math.nan, -math.inf, "\u00e9"])
    open_service(dataset_id="d1", backend=backend).set_key("s", "k", {"$bytes": 1})

    table = ok(root, "--backend", backend, "ls", "--all").splitlines()

    assert [line.split()[:3] for line in table] == [
        ["DATASET", "STORE", "KEYS"],
        ["(global)", "documented", "2"],
        ["d1", "s", "1"],
    ]


def test_ls_of_an_empty_root_says_there_are_no_stores(root):
    assert ok(root, "ls") == "(no stores)\n"
    assert json.loads(ok(root, "--json", "ls")) == []


# Errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["get", "s", "nope"], "no key 'nope' in store 's' of the global context"),
        (["get", "nope", "k"], "no store 'nope' in the global context"),
        (["keys", "nope"], "no store 'nope' in the global context"),
        (["rm", "nope"], "no store 'nope' in the global context"),
        (["clear-cache", "nope"], "no store 'nope' in the global context"),
        (["export", "nope"], "no store 'nope' in the global context"),
        (["--dataset", "d9", "get", "s", "k"], "no store 's' in dataset 'd9'"),
    ],
)
def test_a_missing_store_or_key_prints_one_line_and_exits_1(root, args, message):
    ok(root, "set", "s", "k", "1")

    result = run(root, *args)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"localstore: {message}\n"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["set", "s", "k", "hello"], "VALUE is not valid JSON"),
        (["set", "s", "k", '{"a": 1'], "VALUE is not valid JSON"),
        (["set", "s", "k", str(2**70)], f"VALUE is {2**70}, outside the signed 64-bit"),
        (["set", "s", "k", f'{{"a": [1, {2**64}]}}'], "VALUE['a'][1] is 1844"),
        (["set", "s", "k", '{"$float": "Nope"}'], "malformed"),
        (["set", "s", "k", "1", "--ttl", "0"], "TTL must be a finite number"),
        (["set", "s", "k", "1", "--ttl", "soon"], "TTL must be a finite number"),
        (["set", "s", "k", "1", "--ttl", "1e400"], "TTL must be a finite number"),
        (["set", "s", "k", "1", "--ttl", "1e300"], "ends after the year 9999"),
        (["set", "s", "k", "1", "--ttl", "1e308"], "ends after the year 9999"),
        (["set", "s", "k", '{"$oid": "zz"}'], "malformed"),
        (["set", "s", "k", "1", "--policy", "keep"], "invalid choice"),
        (["set", "s", "__store__", "1"], "reserved"),
        (["get", "", "k"], "must not be empty"),
        (["--backend", "nosuch", "ls"], "invalid choice"),
        (["--root", "", "ls"], "empty path"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments_exit_2_with_the_usage_line(root, args, complaint):
    ok(root, "set", "s", "k", '"old"')

    result = run(root, *args)

    assert result.returncode == 2
    assert result.stderr.startswith("usage: localstore")
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr
    assert ok(root, "get", "s", "k") == '"old"\n'


def test_a_damaged_store_file_is_one_error_line_not_a_traceback(root):
    ok(root, "set", "s", "k", "1")
    path = next(root.rglob("s.sqlite"))
    path.write_bytes(b"this is not a database" * 100)

    result = run(root, "get", "s", "k")

    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert str(path) in result.stderr


@pytest.mark.timeout(60)
def test_a_reader_closing_the_pipe_early_causes_no_traceback(root, open_service):
    open_service().set_keys("s", {f"k{i:05}": "x" * 200 for i in range(2000)})

    command = f"{sys.executable} -m localstore --root {root} export | head -c 100"
    result = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=60
    )

    assert len(result.stdout) == 100
    assert result.stderr == ""


# Sweep and clear-cache --------------------------------------------------------------


def test_sweep_counts_then_deletes_expired_keys_in_every_collection(root, open_service):
    open_service().set_keys("a", {"x": 1, "y": 2}, ttl=0.05)
    open_service().set_key("a", "kept", 0)
    open_service(dataset_id="d1").set_keys("b", {"x": 1}, ttl=0.05)
    open_service(collection_name="other").set_keys(
        "c", {"x": 1, "y": 2, "z": 3}, ttl=0.05
    )
    time.sleep(0.1)

    dry = json.loads(ok(root, "--json", "sweep", "--dry-run"))
    dry_again = json.loads(ok(root, "--json", "sweep", "--dry-run"))
    table = ok(root, "sweep")
    after = json.loads(ok(root, "--json", "sweep"))

    assert dry == dry_again
    assert dry["dry_run"] is True
    assert dry["total"] == 6
    assert [
        (s["collection"], s["dataset_id"], s["store_name"], s["expired"])
        for s in dry["stores"]
    ] == [
        ("execution_store", None, "a", 2),
        ("execution_store", "d1", "b", 1),
        ("other", None, "c", 3),
    ]
    assert re.search(r"^execution_store\s+\(global\)\s+a\s+2$", table, re.MULTILINE)
    assert table.endswith("6 expired keys deleted\n")
    assert after == {"dry_run": False, "stores": [], "total": 0, "left_out": 0}
    assert ok(root, "keys", "a") == "kept\n"


WRITER = """
import os, sys
from localstore import ExecutionStoreService
root, backend, stop = sys.argv[1:]
service = ExecutionStoreService(root=root, backend=backend)
written = 0
while written < 5 or not os.path.exists(stop):
    service.set_key("data", f"p{written:05}", written)
    service.set_keys("data", {f"t{written:05}": written}, ttl=0.01)
    written += 1
    if written == 5:
        print("writing", flush=True)
print(written, flush=True)
"""


@pytest.mark.timeout(120)
def test_sweep_while_another_process_writes_loses_no_live_key(
    root, tmp_path, file_backend
):
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), file_backend, str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline() == "writing\n"
    sweeps = []
    for _ in range(3):
        sweeps.append(run(root, "--backend", file_backend, "--json", "sweep"))
        assert writer.poll() is None  # the sweep ran while the writer wrote
    stop.touch()
    written = int(writer.communicate(timeout=60)[0])
    time.sleep(0.05)
    sweeps.append(run(root, "--backend", file_backend, "--json", "sweep"))

    assert [(r.returncode, r.stderr) for r in sweeps] == [(0, "")] * 4
    swept = sum(json.loads(r.stdout)["total"] for r in sweeps)
    assert 1 <= swept <= written
    keys = ok(root, "--backend", file_backend, "keys", "data").split()
    assert keys == [f"p{i:05}" for i in range(written)]
    leftover = ok(root, "--backend", file_backend, "--json", "sweep", "--dry-run")
    assert json.loads(leftover)["total"] == 0


def test_clear_cache_deletes_evict_and_ttl_keys_and_reports_the_count(
    root, open_service
):
    service = open_service()
    service.set_key("a", "persist", 1)
    service.set_key("a", "evict", 1, policy="evict")
    service.set_key("a", "ttl", 1, ttl=600)
    service.set_key("b", "evict", 1, policy="evict")

    one = json.loads(ok(root, "--json", "clear-cache", "b"))
    rest = ok(root, "clear-cache")

    assert one == {"deleted": 1}
    assert rest == "2 cache entries deleted\n"
    assert ok(root, "keys", "a") == "persist\n"


# Export and import ------------------------------------------------------------------


def _fill(service_of):
    """Store values of every awkward kind in two contexts, with a store document."""
    glob = service_of()
    glob.create_store("meta", metadata={"made": dt.datetime(2020, 1, 2, 3, 4, 5, 6)})
    glob.set_key("meta", "k", None)
    glob.set_key("values", "bytes", b"\x00\xff binary")
    glob.set_key("values", "date", dt.datetime(1999, 12, 31, 23, 59, 59, 999999))
    glob.set_key("values", "floats", [math.nan, math.inf, -math.inf, -0.0, 1e300])
    glob.set_key(
        "values", "nested", {"$bytes": "not a tag", "ünï": ["cödé", 2**63 - 1]}
    )
    glob.set_key("values", "cache", {"a": 1}, ttl=3600)
    glob.set_key("values", "evict", "e", policy="evict")
    glob.create_store("empty", policy="evict")
    service_of(dataset_id="d1").set_key("values", "scoped", (1, 2))


@pytest.mark.timeout(60)
def test_export_import_export_gives_identical_bytes(tmp_path, file_backend):
    source, target = tmp_path / "source", tmp_path / "target"
    with_backend = ["--backend", file_backend]
    services = []

    def service_of(**kwargs):
        services.append(
            ExecutionStoreService(root=source, backend=file_backend, **kwargs)
        )
        return services[-1]

    _fill(service_of)
    for service in services:
        service.close()
    first = run(source, *with_backend, "export").stdout
    first += run(source, *with_backend, "--dataset", "d1", "export").stdout
    (tmp_path / "dump.jsonl").write_text(first, encoding="utf-8")

    imported = ok(
        target, *with_backend, "--json", "import", str(tmp_path / "dump.jsonl")
    )
    again = run(target, *with_backend, "export").stdout
    again += run(target, *with_backend, "--dataset", "d1", "export").stdout

    assert again.encode() == first.encode()
    summary = {"stores": 4, "imported": 8, "skipped": 0, "expired": 0}
    assert json.loads(imported) == summary
    keys = [json.loads(line)["key"] for line in first.splitlines()]
    assert len(keys) == 10
    assert keys.count("__store__") == 2
    with ExecutionStoreService(root=target, backend=file_backend) as copied:
        assert copied.get_value("values", "bytes") == b"\x00\xff binary"
        assert math.isnan(copied.get_value("values", "floats")[0])
        assert copied.get_store("meta").metadata == {
            "made": dt.datetime(2020, 1, 2, 3, 4, 5, 6)
        }
        assert copied.get_key("values", "cache").expires_at is not None


def test_export_writes_the_named_stores_to_a_file(root, open_service, tmp_path):
    service = open_service()
    service.set_key("a", "k", 1)
    service.set_key("b", "k", 2)
    out = tmp_path / "out.jsonl"

    printed = ok(root, "export", "b", "-o", str(out))

    assert printed == ""
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["store_name"], line["value"]) for line in lines] == [("b", 2)]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_import_keeps_existing_keys_unless_replace_is_given(
    root, open_service, tmp_path
):
    service = open_service()
    service.set_key("s", "a", "new a")
    service.set_key("s", "b", "new b")
    dump = tmp_path / "dump.jsonl"
    ok(root, "export", "-o", str(dump))
    service.set_key("s", "a", "changed")
    service.delete_key("s", "b")

    kept = ok(root, "import", str(dump))
    after_keep = (service.get_value("s", "a"), service.get_value("s", "b"))
    replaced = json.loads(ok(root, "--json", "import", str(dump), "--replace"))

    assert (
        kept
        == "1 key imported into 1 store\n1 existing key kept (--replace overwrites)\n"
    )
    assert after_keep == ("changed", "new b")
    assert replaced == {"stores": 1, "imported": 2, "skipped": 0, "expired": 0}
    assert service.get_value("s", "a") == "new a"


def _line(**overrides):
    """Return one export line: a key of store ``s``, with fields overridden."""
    fields = {
        "dataset_id": None, "store_name": "s", "key": "a", "value": 1,
        "created_at": "2020-01-01T00:00:00.000000",
        "updated_at": "2020-01-01T00:00:00.000000",
        "expires_at": None, "policy": "persist",
    }  # fmt: skip
    return json.dumps({**fields, **overrides})


def test_import_reads_standard_input_and_leaves_out_expired_keys(root):
    expired = _line(key="old", expires_at="2020-01-02T00:00:00.000000")
    text = _line() + "\n" + expired + "\n"

    summary = json.loads(ok(root, "--json", "import", "-", stdin=text))

    assert summary == {"stores": 1, "imported": 1, "skipped": 0, "expired": 1}
    meta = json.loads(ok(root, "--json", "get", "s", "a", "--meta"))
    assert meta["created_at"] == "2020-01-01T00:00:00.000000"
    assert run(root, "get", "s", "old").returncode == 1


@pytest.mark.parametrize(
    ("bad", "complaint"),
    [
        ("{not json", "line 2"),
        ('{"store_name": "s"}', "expected an object with the fields"),
        (_line(key="b", value={"$float": "Nope"}), "malformed"),
        (_line(key="b", value=2**64), "signed 64-bit"),
        (_line(key="b", created_at="yesterday"), "Invalid isoformat"),
        (_line(key="b", policy="forever"), "policy"),
        (_line(key="b", store_name=""), "must not be empty"),
        (_line(key="__store__", value=[1]), "store document"),
        (_line(), "repeats"),
    ],
)
def test_import_of_a_bad_line_exits_2_and_writes_nothing(
    root, tmp_path, bad, complaint
):
    path = tmp_path / "bad.jsonl"
    path.write_text(_line() + "\n" + bad + "\n")

    result = run(root, "import", str(path))

    assert result.returncode == 2
    assert result.stderr.startswith("usage: localstore import")
    assert "line 2: " in result.stderr
    assert complaint in result.stderr
    assert ok(root, "ls") == "(no stores)\n"


def test_import_refuses_the_dataset_option_and_writes_nothing(root, tmp_path):
    path = tmp_path / "dump.jsonl"
    path.write_text(_line() + "\n")

    before = run(root, "--dataset", "d1", "import", str(path))
    after = run(root, "import", str(path), "--dataset", "d1")

    for result in (before, after):
        assert result.returncode == 2
        assert result.stderr.startswith("usage: localstore import")
        assert "--dataset does not apply to import" in result.stderr
    assert ok(root, "ls", "--all") == "(no stores)\n"


def test_import_of_a_missing_file_exits_1(root, tmp_path):
    result = run(root, "import", str(tmp_path / "nope.jsonl"))

    assert result.returncode == 1
    assert result.stderr.startswith("localstore: cannot read")


# Doctor ---------------------------------------------------------------------------


def test_doctor_passes_on_a_healthy_root(root, open_service):
    open_service().set_key("a", "k", 1)
    open_service(dataset_id="d1").set_key("b", "k", 1)

    report = json.loads(ok(root, "--json", "doctor"))

    assert report == {"root": str(root), "checked": 2, "problems": []}


def test_doctor_on_a_root_that_does_not_exist_exits_1(tmp_path):
    result = run(tmp_path / "mistyped", "doctor")

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"localstore: no root at {tmp_path / 'mistyped'}: nothing to check\n"
    )
    assert not (tmp_path / "mistyped").exists()


@pytest.mark.parametrize("backend", ["memory", "mongodb"])
def test_doctor_refuses_a_backend_without_files(root, backend):
    result = run(root, "--backend", backend, "doctor")

    assert result.returncode == 2
    assert result.stdout == ""
    assert f"doctor checks store files; --backend {backend} has none" in result.stderr


@pytest.mark.parametrize("below", [[], ["sub"]])
def test_doctor_refuses_a_root_that_is_a_file_as_ls_does(tmp_path, below):
    (tmp_path / "file").write_text("")
    root = tmp_path.joinpath("file", *below)

    listed = run(root, "ls")
    checked = run(root, "doctor")

    assert (listed.returncode, checked.returncode) == (1, 1)
    assert checked.stdout == ""
    assert checked.stderr == (
        f"localstore: [Errno {errno.ENOTDIR}] {root} is not a directory "
        "(is the root a file?)\n"
    )
    assert listed.stderr.endswith(" is not a directory (is the root a file?)\n")


def test_doctor_reports_damaged_foreign_and_leftover_files_and_exits_1(
    root, open_service
):
    import sqlite3

    service = open_service()
    service.set_keys("bad", {f"k{i}": "x" * 500 for i in range(200)})
    service.set_key("good", "k", 1)
    service.close()
    context_dir = Path(service.repo.context_dir(None))
    damaged = context_dir / "bad.sqlite"
    data = bytearray(damaged.read_bytes())
    data[4096 * 3 : 4096 * 3 + 200] = b"\xff" * 200  # wreck a page in the middle
    damaged.write_bytes(bytes(data))
    foreign = context_dir / "foreign.sqlite"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.close()
    leftover = context_dir / "good.sqlite.0123.tmp"
    leftover.write_bytes(b"half")
    os.utime(leftover, (time.time() - 3600, time.time() - 3600))
    fresh = context_dir / "other.sqlite.4567.tmp"
    fresh.write_bytes(b"in progress")

    result = run(root, "--json", "doctor")
    table = run(root, "doctor")

    assert result.returncode == table.returncode == 1
    report = json.loads(result.stdout)
    assert report["checked"] == 3
    problems = {Path(p["path"]).name: p["problem"] for p in report["problems"]}
    assert set(problems) == {"bad.sqlite", "foreign.sqlite", "good.sqlite.0123.tmp"}
    assert "not a store file" in problems["foreign.sqlite"]
    assert "temporary file" in problems["good.sqlite.0123.tmp"]
    assert table.stdout.endswith("3 problems found\n")
    assert f"problem: {damaged}: " in table.stdout


def test_doctor_reports_a_json_store_file_that_does_not_parse(root):
    context_dir = root / "execution_store" / "@global"
    context_dir.mkdir(parents=True)
    (context_dir / "broken.json").write_text('{"keys": {', encoding="utf-8")
    (context_dir / "listed.json").write_text("[]", encoding="utf-8")
    (context_dir / "foreign.json").write_text('{"keys": 1}', encoding="utf-8")

    result = run(root, "--json", "doctor")

    assert result.returncode == 1
    problems = {
        Path(p["path"]).name: p["problem"]
        for p in json.loads(result.stdout)["problems"]
    }
    assert set(problems) == {"broken.json", "listed.json", "foreign.json"}
    assert problems["broken.json"].startswith("is not valid JSON")
    assert "JSON list" in problems["listed.json"]
    assert str(context_dir) not in problems["foreign.json"]


def test_filesystem_type_finds_the_mount_that_holds_a_path():
    mounts = (
        "/dev/vda / ext4 rw 0 0\n"
        "server:/export /mnt/shared nfs4 rw 0 0\n"
        "//host/share /mnt/with\\040space cifs rw 0 0\n"
    )

    assert filesystem_type("/mnt/shared/roots/a", mounts) == "nfs4"
    assert filesystem_type("/mnt/with space/x", mounts) == "cifs"
    assert filesystem_type("/mnt/sharedother", mounts) == "ext4"
    assert filesystem_type("/home/user", mounts) == "ext4"


# Progress and documentation --------------------------------------------------------


def _stderr_through_a_terminal(args):
    """Run the command with stderr on a pseudo-terminal; return what it showed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "localstore", *args],
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # Linux reports EIO once the other side is closed
            break
        if not chunk:
            break
        shown += chunk
    process.wait(timeout=30)
    os.close(leader)
    return process.returncode, shown.decode()


@pytest.mark.timeout(60)
def test_progress_appears_on_a_terminal_and_never_in_a_pipe(root, open_service):
    for name in ("a", "b", "c"):
        open_service().set_key(name, "k", 1)

    status, shown = _stderr_through_a_terminal(["--root", str(root), "export"])
    piped = run(root, "export")

    assert status == 0
    assert "exporting store 3/3" in shown
    assert piped.stderr == ""


def test_readme_documents_every_subcommand_and_option():
    readme = README.read_text(encoding="utf-8")
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse has no API

    for name, sub in commands.items():
        assert f"localstore {name}" in readme, f"README lacks `localstore {name}`"
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert option in readme, f"README lacks {option} of {name}"


def test_every_subcommand_prints_its_help_and_exits_0(root):
    commands = build_parser()._subparsers._group_actions[0].choices  # no API

    overview = run(root, "--help")

    assert overview.returncode == 0, overview.stderr
    for name, sub in commands.items():
        result = run(root, name, "--help")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"usage: localstore {name} ")
        assert sub.description in result.stdout
        assert f"    {name} " in overview.stdout


def test_ls_escapes_control_characters_in_store_names(root):
    ok(root, "set", "new\nline\x1b[31m", "k", "1")

    listing = ok(root, "ls")

    assert "new\\nline\\x1b[31m" in listing
    assert "\x1b" not in listing
    assert len(listing.splitlines()) == 2


def test_keys_escapes_control_characters(root):
    ok(root, "set", "s", "e\x1b[2Jx", "1")

    assert ok(root, "keys", "s") == "e\\x1b[2Jx\n"


def test_doctor_reports_a_json_store_nested_too_deep(root):
    ok(root, "--backend", "json", "set", "s", "k", "1")
    path = next(root.rglob("s.json"))
    path.write_text("[" * 100_000 + "]" * 100_000)

    result = run(root, "--backend", "json", "doctor")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr


def test_export_of_a_context_with_a_damaged_store_exports_the_rest_and_exits_1(root):
    ok(root, "set", "good", "k", "1")
    ok(root, "set", "bad", "k", "2")
    next(root.rglob("bad.sqlite")).write_bytes(b"not a database" * 100)

    result = run(root, "export")

    assert result.returncode == 1
    assert '"store_name":"good"' in result.stdout
    assert "bad.sqlite" in result.stderr
    assert result.stderr.endswith("localstore: the export lacks 1 damaged store\n")


# Values edited by hand ----------------------------------------------------------------


def _edit_sqlite_key(root, store, key, **columns):
    """Overwrite columns of a key's row in a SQLite store file, as a user might."""
    path = next(root.rglob(f"{store}.sqlite"))
    assignments = ", ".join(f"{name} = ?" for name in columns)
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(
                f"UPDATE keys SET {assignments} WHERE key = ?", [*columns.values(), key]
            )
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        ("{oops", "Expecting property name"),
        ('{"$bytes": "!!"}', "base64"),
        ("[1e400]", "beyond the range of a float"),
        (b"\x00", "not JSON text"),
    ],
)
@pytest.mark.parametrize("args", [["get", "st", "a"], ["get", "st", "a", "--meta"]])
def test_get_of_a_damaged_value_is_one_error_line_and_exit_1(
    root, stored, reason, args
):
    ok(root, "set", "st", "a", "1")
    _edit_sqlite_key(root, "st", "a", value=stored)

    result = run(root, *args)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("localstore: key 'a' of store 'st': ")
    assert reason in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_get_prints_a_stored_lone_surrogate_escaped(root):
    ok(root, "set", "st", "a", "1")
    _edit_sqlite_key(root, "st", "a", value='["\\ud800", "é"]')

    plain = ok(root, "get", "st", "a")
    meta = ok(root, "--json", "get", "st", "a", "--meta")
    table = ok(root, "get", "st", "a", "--meta")

    assert plain == '["\\ud800","é"]\n'
    assert json.loads(meta)["value"] == ["\ud800", "é"]
    assert 'value:       ["\\ud800","é"]' in table


def _fill_good_and_bad(root, backend):
    """Write stores "good" and "bad" (keys "a" = 1.5 and "b"); return ls's lines."""
    ok(root, "--backend", backend, "set", "good", "k", "1")
    ok(root, "--backend", backend, "set", "bad", "a", "1.5")
    ok(root, "--backend", backend, "set", "bad", "b", "2")
    return ok(root, "--backend", backend, "ls").splitlines()


def _assert_lists_good_and_names_bad(result, healthy, warning):
    """Check ls of a root damaged since ``healthy`` was listed: one warning, exit 1."""
    header, _, good = healthy
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert (lines[0], lines[-1]) == (header, good)
    first, summary = result.stderr.splitlines()
    assert first.startswith(f"localstore: warning: {warning}")
    assert summary == "localstore: 1 store or key could not be read"


@pytest.mark.parametrize(
    ("backend", "damaged", "reason"),
    [
        ("sqlite", "{oops", "Expecting property name"),
        ("sqlite", '{"$bytes": "!!"}', "base64"),
        ("json", '{"$bytes": 5}', "bytes-like"),
    ],
)
def test_ls_lists_every_store_and_names_a_damaged_value_then_exits_1(
    root, backend, damaged, reason
):
    healthy = _fill_good_and_bad(root, backend)
    if backend == "sqlite":
        _edit_sqlite_key(root, "bad", "a", value=damaged)
    else:
        edit_json_file(
            next(root.rglob("bad.json")), '"value": 1.5', f'"value": {damaged}'
        )

    result = run(root, "--backend", backend, "ls")

    _assert_lists_good_and_names_bad(
        result, healthy, "key 'a' of store 'bad': a stored value is damaged"
    )
    assert result.stdout.splitlines()[1].split()[:2] == ["bad", "2"]
    assert reason in result.stderr


@pytest.mark.parametrize("column", ["created_at", "updated_at", "expires_at"])
def test_ls_lists_every_store_and_names_a_damaged_timestamp_then_exits_1(root, column):
    healthy = _fill_good_and_bad(root, "sqlite")
    _edit_sqlite_key(root, "bad", "a", **{column: "yesterday"})

    result = run(root, "ls")

    _assert_lists_good_and_names_bad(
        result,
        healthy,
        "key 'a' of store 'bad': a stored timestamp or policy is damaged",
    )
    # The store is still shown, last written when its readable key "b" was.
    assert result.stdout.splitlines()[1] == healthy[1]


def _damage_sqlite_file(root):
    next(root.rglob("bad.sqlite")).write_bytes(b"not a database" * 100)


def _damage_json_number(root):
    edit_json_file(next(root.rglob("bad.json")), '"value": 1.5', '"value": 1e400')


def _damage_json_time(root):
    path = next(root.rglob("bad.json"))
    text = path.read_text(encoding="utf-8")
    path.write_text(
        re.sub(r'"updated_at": "[^"]*"', '"updated_at": "soon"', text, count=1)
    )


@pytest.mark.parametrize(
    ("backend", "damage"),
    [
        ("sqlite", _damage_sqlite_file),
        ("json", _damage_json_number),
        ("json", _damage_json_time),
    ],
)
def test_ls_leaves_out_a_store_it_cannot_read_and_lists_the_rest_then_exits_1(
    root, backend, damage
):
    healthy = _fill_good_and_bad(root, backend)
    damage(root)
    path = next(root.rglob("bad.*"))

    result = run(root, "--backend", backend, "ls")

    _assert_lists_good_and_names_bad(
        result, healthy, f"leaving out a damaged store: {path}"
    )
    assert len(result.stdout.splitlines()) == 2


def test_ls_of_a_root_whose_only_store_is_damaged_prints_no_table_and_exits_1(root):
    ok(root, "set", "bad", "a", "1")
    next(root.rglob("bad.sqlite")).write_bytes(b"not a database" * 100)

    table = run(root, "ls")
    listed = run(root, "--json", "ls")

    assert (table.returncode, listed.returncode) == (1, 1)
    assert table.stdout == ""
    assert json.loads(listed.stdout) == []
    assert "bad.sqlite" in table.stderr
    assert "bad.sqlite" in listed.stderr


def test_ls_all_names_the_dataset_of_a_damaged_key_and_lists_every_context(root):
    ok(root, "set", "g", "k", "1")
    ok(root, "--dataset", "d1", "set", "bad", "a", "1")
    ok(root, "--dataset", "d2", "set", "s", "k", "1")
    _edit_sqlite_key(root, "bad", "a", value="{oops")

    result = run(root, "--json", "ls", "--all")

    assert result.returncode == 1
    listed = [
        (row["dataset_id"], row["store_name"]) for row in json.loads(result.stdout)
    ]
    assert listed == [(None, "g"), ("d1", "bad"), ("d2", "s")]
    warning, summary = result.stderr.splitlines()
    assert warning.startswith(
        "localstore: warning: dataset 'd1': key 'a' of store 'bad': "
    )
    assert summary == "localstore: 1 store or key could not be read"


def test_export_leaves_out_a_store_with_a_damaged_value_and_exits_1(root, tmp_path):
    ok(root, "set", "st", "a", "1")
    ok(root, "set", "st2", "b", '"ok"')
    _edit_sqlite_key(root, "st", "a", value="{oops")
    output = tmp_path / "out.jsonl"

    listed = run(root, "export")
    written = run(root, "export", "-o", str(output))
    named = run(root, "export", "st2", "st", "-o", str(tmp_path / "named.jsonl"))

    for result in (listed, written):
        assert result.returncode == 1
        warning, summary = result.stderr.splitlines()
        assert warning.startswith(
            "localstore: warning: leaving out a damaged store: key 'a' of store 'st'"
        )
        assert summary == "localstore: the export lacks 1 damaged store"
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(line["store_name"], line["key"]) for line in lines] == [("st2", "b")]
    assert output.read_text() == listed.stdout
    assert named.returncode == 1
    assert named.stderr.startswith("localstore: key 'a' of store 'st': ")
    assert not (tmp_path / "named.jsonl").exists()


def test_export_escapes_a_lone_surrogate_and_import_names_the_line(root, tmp_path):
    ok(root, "set", "st", "a", "1")
    _edit_sqlite_key(root, "st", "a", value='"\\udc80"')

    exported = ok(root, "export")
    (tmp_path / "dump.jsonl").write_text(exported)
    imported = run(tmp_path / "copy", "import", str(tmp_path / "dump.jsonl"))

    assert '"value":"\\udc80"' in exported
    assert imported.returncode == 2
    assert "line 1: value holds the lone surrogate" in imported.stderr


def test_sweep_dry_run_counts_a_hand_edited_expiry_as_the_sweep_does(root):
    service = ExecutionStoreService(root=root)
    service.set_key("s", "edited", 1, ttl=60)
    service.set_key("s", "gone", 2, ttl=1e-6)
    path = service.repo.store_path(None, "s")
    service.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE keys SET expires_at = 'soon' WHERE key = 'edited'")
    conn.execute(
        "INSERT INTO keys SELECT 'negative', created_at, updated_at, -5, "
        "policy, value FROM keys WHERE key = 'gone'"
    )
    conn.commit()
    conn.close()
    time.sleep(0.01)

    dry = json.loads(ok(root, "--json", "sweep", "--dry-run"))
    swept = json.loads(ok(root, "--json", "sweep"))

    assert dry["total"] == swept["total"] == 2
    assert {**dry, "dry_run": False} == swept


@pytest.mark.parametrize("backend", ["sqlite", "json"])
def test_doctor_reports_a_value_edited_into_a_store_by_hand(root, backend):
    service = ExecutionStoreService(root=root, backend=backend)
    service.set_key("s", "k", 1)
    service.set_key("s", "fine", 2)
    path = Path(service.repo.store_path(None, "s"))
    service.close()
    if backend == "sqlite":
        conn = sqlite3.connect(path)
        conn.execute("UPDATE keys SET value = '{not json' WHERE key = 'k'")
        conn.commit()
        conn.close()
    else:
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace('"value": 1', '"value": {"$bytes": 5}', 1))

    result = run(root, "--backend", backend, "--json", "doctor")

    assert result.returncode == 1, result.stdout
    problems = json.loads(result.stdout)["problems"]
    assert [Path(p["path"]).name for p in problems] == [path.name]
    assert "'k'" in problems[0]["problem"]


def test_doctor_names_every_damaged_key_of_a_store(root):
    service = ExecutionStoreService(root=root)
    for key in ("k1", "k2", "k3", "fine"):
        service.set_key("s", key, 1)
    service.close()
    for key in ("k1", "k2", "k3"):
        _edit_sqlite_key(root, "s", key, value="{not json")

    result = run(root, "--json", "doctor")

    assert result.returncode == 1, result.stdout
    problems = [p["problem"] for p in json.loads(result.stdout)["problems"]]
    assert [problem.split(":")[0] for problem in problems] == [
        "key 'k1' of store 's'",
        "key 'k2' of store 's'",
        "key 'k3' of store 's'",
    ]


@pytest.mark.timeout(30)
def test_sweep_leaves_out_a_busy_store_names_it_and_exits_1(root):
    service = ExecutionStoreService(root=root)
    for store in ("a", "m", "z"):
        service.set_key(store, "gone", 1, ttl=1e-6)
    time.sleep(0.01)
    hold = hold_write_lock(service, "m", 60)

    result = run(root, "--json", "--timeout", "0.2", "sweep")

    hold.kill()  # its lock goes with it
    hold.communicate()
    assert result.returncode == 1
    swept = json.loads(result.stdout)
    assert [s["store_name"] for s in swept["stores"]] == ["a", "z"]
    warning, summary = result.stderr.splitlines()
    assert warning.startswith("localstore: warning: not sweeping store 'm', busy")
    assert summary == "localstore: 1 store left out (see above)"
    assert json.loads(ok(root, "--json", "sweep"))["total"] == 1


@pytest.mark.parametrize("timeout", ["soon", "-1", "nan", "3e6"])
def test_a_timeout_that_is_not_a_number_of_seconds_is_a_usage_error(root, timeout):
    result = run(root, "--timeout", timeout, "ls")

    assert result.returncode == 2
    assert "--timeout" in result.stderr
    assert "timeout must be" in result.stderr


@pytest.mark.parametrize(
    ("value", "hinted"), [("hello", True), ("[1, 2", False), ('{"a": 1', False)]
)
def test_set_hints_at_quotes_only_for_text_that_does_not_start_as_json(
    root, value, hinted
):
    result = run(root, "set", "s", "k", value)

    assert result.returncode == 2
    assert ("a string needs quotes" in result.stderr) is hinted
