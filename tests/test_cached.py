"""localstore.cached: memoizing results in a store."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import localstore
from localstore import (
    ArgumentTypeError,
    ExecutionStoreService,
    InvalidArgumentError,
    InvalidValueError,
    OfflineContext,
    cached,
)


class Calls:
    """Counts the calls that reached a decorated function's body."""

    def __init__(self) -> None:
        self.args: list[Any] = []

    def __len__(self) -> int:
        return len(self.args)


def _run_twice(script: str, cwd: Path) -> list[str]:
    """Run ``python -c script`` in two fresh processes; return what each printed."""
    return [
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        for _ in range(2)
    ]


def test_second_call_with_same_arguments_is_served_from_the_store(
    localstore_service: ExecutionStoreService,
) -> None:
    calls = Calls()

    @cached
    def square(x: int) -> int:
        calls.args.append(x)
        return x * x

    first, second, other = square(3), square(3), square(4)

    assert (first, second, other) == (9, 9, 16)
    assert calls.args == [3, 4]
    assert localstore_service.get_value(square.store_name, square.cache_key(3)) == 9


def test_default_store_name_is_module_and_qualname() -> None:
    @cached
    def compute() -> int:
        return 1

    assert compute.store_name == f"{__name__}.{compute.__qualname__}"
    assert compute.__name__ == "compute"


def test_none_result_is_cached_like_any_other(
    localstore_service: ExecutionStoreService,
) -> None:
    calls = Calls()

    @cached(store_name="lookups")
    def find(name: str) -> None:
        calls.args.append(name)

    results = [find("missing"), find("missing")]

    assert results == [None, None]
    assert len(calls) == 1
    assert localstore_service.has_key("lookups", find.cache_key("missing"))


def test_keyword_arguments_are_part_of_the_key() -> None:
    calls = Calls()

    @cached
    def scale(value: int, factor: int = 2) -> int:
        calls.args.append((value, factor))
        return value * factor

    results = [scale(5), scale(5, factor=3), scale(5, 2), scale(factor=2, value=5)]

    assert results == [10, 15, 10, 10]
    assert calls.args == [(5, 2), (5, 3)]


def test_dict_arguments_share_an_entry_whatever_their_key_order() -> None:
    @cached
    def total(weights: dict[str, int]) -> int:
        return sum(weights.values())

    assert total.cache_key({"a": 1, "b": 2}) == total.cache_key({"b": 2, "a": 1})
    assert total.cache_key({"a": 1}) != total.cache_key({"a": 2})


def test_keys_are_the_same_in_another_process(localstore_root: Path) -> None:
    module = localstore_root.parent / "cached_module.py"
    module.write_text(
        textwrap.dedent(
            """
            import localstore

            @localstore.cached(store_name="shared")
            def label(x, when):
                return f"label-{x}"
            """
        )
    )
    script = (
        "import datetime as dt, cached_module; "
        "print(cached_module.label.cache_key(7, when=dt.datetime(2024, 1, 2)))"
    )

    keys = _run_twice(script, module.parent)

    assert keys[0] == keys[1]
    assert len(keys[0]) == 64


def test_result_cached_by_one_process_is_served_to_another(
    localstore_root: Path,
) -> None:
    module = localstore_root.parent / "slow_module.py"
    module.write_text(
        textwrap.dedent(
            """
            import os, localstore

            @localstore.cached(store_name="slow")
            def work(n):
                return {"n": n, "pid": os.getpid()}
            """
        )
    )
    script = "import slow_module; print(slow_module.work(1)['pid'])"

    pids = _run_twice(script, module.parent)

    assert pids[0] == pids[1]


def test_entry_expires_after_its_ttl() -> None:
    calls = Calls()

    @cached(ttl=0.2)
    def now_ish(tag: str) -> str:
        calls.args.append(tag)
        return f"{tag}-{len(calls)}"

    first = now_ish("t")
    time.sleep(0.4)
    second = now_ish("t")

    assert (first, second) == ("t-1", "t-2")


def test_entries_use_the_evict_policy_so_clear_cache_removes_them(
    localstore_service: ExecutionStoreService,
) -> None:
    calls = Calls()

    @cached(store_name="evictable")
    def double(x: int) -> int:
        calls.args.append(x)
        return 2 * x

    double(1)
    document = localstore_service.get_key("evictable", double.cache_key(1))
    localstore_service.clear_cache()
    double(1)
    double.clear_cache()
    emptied = localstore_service.list_keys("evictable")
    double(1)

    assert document is not None
    assert document.policy == localstore.KeyPolicy.EVICT
    assert calls.args == [1, 1, 1]
    assert emptied == []


def test_a_new_version_misses_results_of_the_old_one() -> None:
    calls = Calls()

    def make(version: int) -> Any:
        @cached(store_name="versioned", version=version)
        def parse(text: str) -> str:
            calls.args.append((version, text))
            return text.upper()

        return parse

    v1, v2 = make(1), make(2)
    results = [v1("a"), v2("a"), v1("a"), v2("a")]

    assert results == ["A", "A", "A", "A"]
    assert calls.args == [(1, "a"), (2, "a")]


def test_key_fn_picks_what_identifies_a_call(localstore_root: Path) -> None:
    calls = Calls()

    @cached(key_fn=lambda ctx, name: [name])
    def greet(ctx: OfflineContext, name: str) -> str:
        calls.args.append(name)
        return f"hello {name}"

    with OfflineContext("d1") as first, OfflineContext("d2") as second:
        results = [greet(first, "ann"), greet(second, "ann"), greet(first, "bob")]

    assert results == ["hello ann", "hello ann", "hello bob"]
    assert calls.args == ["ann", "bob"]


def test_fixed_dataset_scope_stores_in_that_context(
    localstore_root: Path,
) -> None:
    @cached(store_name="scoped", dataset_id="dataset-1")
    def one() -> int:
        return 1

    one()

    with ExecutionStoreService(dataset_id="dataset-1") as scoped:
        assert scoped.list_keys("scoped") == [one.cache_key()]
    with ExecutionStoreService() as global_service:
        assert global_service.has_store("scoped") is False


def test_callable_dataset_scope_picks_the_context_per_call(
    localstore_root: Path,
) -> None:
    calls = Calls()

    @cached(
        store_name="per-dataset",
        dataset_id=lambda ctx, x: ctx.dataset_id,
        key_fn=lambda ctx, x: [x],
    )
    def embed(ctx: OfflineContext, x: int) -> list[int]:
        calls.args.append((ctx.dataset_id, x))
        return [x, x]

    with OfflineContext("d1") as d1, OfflineContext("d2") as d2:
        embed(d1, 5)
        embed(d2, 5)
        embed(d1, 5)
        embed.clear_cache(dataset_id="d1")
        embed(d1, 5)
        d2_keys = d2.service.list_keys("per-dataset")

    assert calls.args == [("d1", 5), ("d2", 5), ("d1", 5)]
    assert d2_keys == [embed.cache_key(d2, 5)]
    with pytest.raises(InvalidArgumentError, match="clear_cache\\(dataset_id="):
        embed.clear_cache()


def test_unstorable_result_raises_at_the_first_call_and_stores_nothing(
    localstore_service: ExecutionStoreService,
) -> None:
    @cached(store_name="bad-results")
    def make_set() -> set[int]:
        return {1, 2}

    with pytest.raises(InvalidValueError, match="make_set returned a result"):
        make_set()

    assert localstore_service.has_store("bad-results") is False


def test_unstorable_argument_without_key_fn_raises_before_calling() -> None:
    calls = Calls()

    @cached
    def handle(obj: object) -> int:
        calls.args.append(obj)
        return 1

    with pytest.raises(InvalidValueError, match="key_fn"):
        handle(object())

    assert len(calls) == 0


def test_result_reads_as_stored_on_the_first_call_too() -> None:
    moment = dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))

    @cached
    def pair() -> tuple[int, dt.datetime]:
        return (1, moment)

    first, second = pair(), pair()

    assert first == second == [1, dt.datetime(2024, 5, 1, 10)]


def test_methods_are_cached_with_a_key_fn_that_skips_self() -> None:
    class Model:
        def __init__(self) -> None:
            self.calls = 0

        @cached(store_name="model", key_fn=lambda self, x: [x])
        def predict(self, x: int) -> int:
            self.calls += 1
            return x + 1

    model = Model()
    results = [model.predict(1), model.predict(1)]

    assert results == [2, 2]
    assert model.calls == 1


def test_each_call_uses_the_current_localstore_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = Calls()

    @cached(store_name="per-root")
    def value() -> int:
        calls.args.append(1)
        return 1

    for name in ("first", "second", "first"):
        monkeypatch.setenv("LOCALSTORE_ROOT", str(tmp_path / name))
        value()

    assert len(calls) == 2
    assert (tmp_path / "second").is_dir()


def test_explicit_backend_and_root_are_used(tmp_path: Path, backend: str) -> None:
    @cached(store_name="explicit", root=tmp_path, backend=backend)
    def answer() -> int:
        return 42

    answer()

    with ExecutionStoreService(root=tmp_path, backend=backend) as service:
        assert service.list_values("explicit") == [42]


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"ttl": 0}, InvalidArgumentError, "ttl must be a finite number"),
        ({"ttl": "10"}, ArgumentTypeError, "ttl must be a number"),
        ({"store_name": ""}, InvalidArgumentError, "store_name must not be empty"),
        ({"version": True}, ArgumentTypeError, "version must be a str"),
        ({"version": 2**70}, InvalidValueError, "version cannot be part"),
        ({"key_fn": 3}, ArgumentTypeError, "key_fn must be callable"),
        ({"dataset_id": 5}, ArgumentTypeError, "dataset_id must be None"),
        ({"backend": "nope"}, InvalidArgumentError, "backend must be one of"),
        ({"collection_name": ""}, InvalidArgumentError, "collection_name"),
    ],
)
def test_bad_decorator_arguments_raise_when_decorating(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):

        @cached(**arguments)
        def function() -> int:
            return 1


def test_decorating_something_that_is_not_a_function_raises() -> None:
    with pytest.raises(ArgumentTypeError, match="decorates a function"):
        cached(42)  # type: ignore[call-overload]


def test_builtin_without_a_signature_is_keyed_by_its_arguments(
    localstore_service: ExecutionStoreService,
) -> None:
    cached_max = cached(store_name="builtin-max")(max)

    results = [cached_max(3, 4), cached_max(3, 4), cached_max(5, 1)]

    assert results == [4, 4, 5]
    assert len(localstore_service.list_keys("builtin-max")) == 2
