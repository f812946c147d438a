"""Several processes and threads on one root: visibility and atomic primitives."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading

import pytest

from localstore import ExecutionStoreService


def _race_set_if_absent(root: str, backend: str, who: int, barrier, results) -> None:
    service = ExecutionStoreService(root=root, backend=backend)
    barrier.wait()
    results.put((who, service.set_key_if_absent("race", "winner", who)))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("round_", range(3))
def test_two_processes_racing_set_key_if_absent_have_one_winner(
    root, file_backend, round_
):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(
            target=_race_set_if_absent,
            args=(str(root), file_backend, who, barrier, results),
        )
        for who in (1, 2)
    ]
    for proc in procs:
        proc.start()
    outcomes = dict(results.get(timeout=30) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)

    winners = [who for who, won in outcomes.items() if won]
    assert len(winners) == 1
    stored = ExecutionStoreService(root=root, backend=file_backend).get_key(
        "race", "winner"
    )
    assert stored.value == winners[0]


@pytest.mark.timeout(120)
def test_compare_and_set_from_four_threads_counts_to_1000(service):
    service.set_key("counter", "n", 0)

    def increment() -> None:
        for _ in range(250):
            while True:
                current = service.get_key("counter", "n").value
                if service.compare_and_set_key("counter", "n", current, current + 1):
                    break

    threads = [threading.Thread(target=increment) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert service.get_key("counter", "n").value == 1000


@pytest.mark.timeout(60)
def test_another_process_sees_every_write_at_once(root, file_backend):
    service = ExecutionStoreService(root=root, backend=file_backend, dataset_id="ds")
    script = (
        "import sys, json\n"
        "from localstore import ExecutionStoreService\n"
        "s = ExecutionStoreService(\n"
        "    root=sys.argv[1], backend=sys.argv[2], dataset_id='ds'\n"
        ")\n"
        "for line in sys.stdin:\n"
        "    doc = s.get_key('s', 'k')\n"
        "    print(json.dumps(None if doc is None else doc.value), flush=True)\n"
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", script, str(root), file_backend],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    seen = []
    try:
        for value in [1, "two", None, [3]]:
            service.set_key("s", "k", value)
            reader.stdin.write("read\n")
            reader.stdin.flush()
            seen.append(reader.stdout.readline().strip())
        service.delete_key("s", "k")
        reader.stdin.write("read\n")
        reader.stdin.flush()
        seen.append(reader.stdout.readline().strip())
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)
        reader.stdout.close()

    assert seen == ["1", '"two"', "null", "[3]", "null"]


@pytest.mark.timeout(60)
def test_global_listing_in_one_process_sees_contexts_written_by_another(
    root, file_backend
):
    script = (
        "import sys\n"
        "from localstore import ExecutionStoreService\n"
        "s = ExecutionStoreService(\n"
        "    root=sys.argv[1], backend=sys.argv[2], dataset_id='other'\n"
        ")\n"
        "s.set_key('s', 'k', 1)\n"
    )
    service = ExecutionStoreService(root=root, backend=file_backend)
    service.set_key("mine", "k", 1)

    subprocess.run(
        [sys.executable, "-c", script, str(root), file_backend], check=True, timeout=30
    )

    pairs = sorted(
        (d.store_name, d.dataset_id or "") for d in service.list_stores_global()
    )
    assert pairs == [("mine", ""), ("s", "other")]


@pytest.mark.timeout(60)
def test_json_write_here_keeps_a_same_size_write_of_another_process(root):
    service = ExecutionStoreService(root=root, backend="json")
    service.set_key("s", "mine", 1)
    service.set_key("s", "theirs", 1)
    path = service.repo.store_path(None, "s")
    with open(path, "rb") as file:
        size = len(file.read())
    script = (
        "import sys\n"
        "from localstore import ExecutionStoreService\n"
        "s = ExecutionStoreService(root=sys.argv[1], backend='json')\n"
        "s.set_key('s', 'theirs', 2)\n"
    )

    subprocess.run([sys.executable, "-c", script, str(root)], check=True, timeout=30)
    with open(path, "rb") as file:
        assert len(file.read()) == size
    service.set_key("s", "mine", 3)

    assert service.get_value("s", "theirs") == 2
    assert service.get_value("s", "mine") == 3
