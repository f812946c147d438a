"""Turn benchmark medians into a Markdown table, check the targets, update README."""

from __future__ import annotations

import os
import platform
import re
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass

RAW = "sqlite3"
LOCAL = "localstore[sqlite]"
SECTION = "## Performance"

Median = Callable[[str, str], "float | None"]

#: The preferred column order; other subjects follow in the order first seen.
_COLUMNS = [RAW, LOCAL, "diskcache", "localstore[memory]", "localstore[json]"]


@dataclass
class Target:
    """A goal for the SQLite backend: a ratio to raw sqlite3, or an absolute time."""

    case: str
    limit: float
    absolute: bool = False
    beat_diskcache: bool = False

    def check(self, median: Median) -> tuple[bool, str] | None:
        """Return whether the target is met and the figures (``None``: unmeasured)."""
        ours, raw = median(self.case, LOCAL), median(self.case, RAW)
        if ours is None or raw is None:
            return None
        if self.absolute:
            return (
                ours < self.limit,
                f"{format_time(ours)} (limit {format_time(self.limit)})",
            )
        ratio = ours / raw
        met, text = ratio <= self.limit, f"{ratio:.2f}x (limit {self.limit}x)"
        theirs = median(self.case, "diskcache")
        if self.beat_diskcache and theirs is not None:
            met = met and ours <= theirs
            text += f", diskcache {theirs / raw:.2f}x"
        return met, text


TARGETS = [
    *(
        Target(f"{op}, small", 1.5, beat_diskcache=True)
        for op in ("get hit", "get miss", "has")
    ),
    *(Target(f"{op}, small", 1.3) for op in ("set new", "overwrite", "delete")),
    *(
        Target(f"{op}, 100 KB {shape}", 1.15)
        for shape in ("lists", "records")
        for op in ("set new", "overwrite", "get hit")
    ),
    Target("list_keys, 100,000 keys", 1.3),
    Target("count_keys, 100,000 keys", 0.002, absolute=True),
    Target("fresh service + one read", 2.0),
    Target("python -c: import + one read", 1.3),
    Target("batch write, 10,000 keys (per key)", 1.5),
    Target("batch write, 2,000 keys (per key)", 1.5),
    Target("sweep, 1,000,000 keys, half expired", 2.0),
    Target("sweep, 100,000 keys, half expired", 2.0),
]


def format_time(seconds: float) -> str:
    """Format a duration with a unit that keeps three significant digits."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def machine() -> str:
    """Describe the machine, interpreter and SQLite of this run."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as file:
            found = re.search(r"model name\s*:\s*(.+)", file.read())
        if found:
            cpu = found.group(1).strip()
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores (shared), {platform.system()} "
        f"{platform.release()}, Python {sys.version.split()[0]}, "
        f"SQLite {sqlite3.sqlite_version}"
    )


def table(cases: list[str], subjects: list[str], median: Median) -> list[str]:
    """Return the Markdown rows: median per operation and ratio to raw sqlite3."""
    columns = [name for name in _COLUMNS if name in subjects]
    columns += [name for name in subjects if name not in columns]
    lines = [
        "| operation | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for case in cases:
        raw = median(case, RAW)
        cells = []
        for name in columns:
            value = median(case, name)
            if value is None:
                cells.append("")
            elif raw is None or name == RAW:
                cells.append(format_time(value))
            else:
                cells.append(f"{format_time(value)} ({value / raw:.2f}x)")
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return lines


def render(
    cases: list[str], subjects: list[str], median: Median, *, quick: bool
) -> str:
    """Return the whole report: machine, table and the targets met or not."""
    lines = [
        f"Measured on {machine()}; {'quick' if quick else 'full'} run of "
        "`python benchmarks/bench.py`. Each cell is the median time per operation "
        "and, in brackets, its ratio to raw `sqlite3` in the same run.",
        "",
        *table(cases, subjects, median),
        "",
        "Targets for the SQLite backend:",
        "",
    ]
    for target in TARGETS:
        outcome = target.check(median)
        if outcome is not None:
            met, text = outcome
            lines.append(f"- {target.case}: {'met' if met else '**not met**'}, {text}")
    return "\n".join(lines) + "\n"


def update_readme(path: str, text: str) -> None:
    """Replace the table part of README's Performance section with ``text``.

    The section's prose stays: the table starts at the marker line
    ``<!-- bench:start -->`` and ends at ``<!-- bench:end -->``.
    """
    with open(path, encoding="utf-8") as file:
        readme = file.read()
    start, end = "<!-- bench:start -->\n", "<!-- bench:end -->\n"
    if start not in readme or end not in readme:
        raise SystemExit(f"{path} lacks the {start.strip()} and {end.strip()} markers")
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w", encoding="utf-8") as file:
        file.write(head + start + text + end + tail)
