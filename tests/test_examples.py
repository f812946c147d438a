"""The examples and the README's code run as documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def _run(args: list[str], root: Path) -> str:
    env = {**os.environ, "LOCALSTORE_ROOT": str(root)}
    result = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _counts(output: str) -> tuple[int, int, int]:
    walked = int(re.search(r"walked (\d+) files", output).group(1))
    served = int(re.search(r"served from the store: +(\d+)", output).group(1))
    computed = int(re.search(r"computed and stored: +(\d+)", output).group(1))
    return walked, served, computed


@pytest.mark.timeout(120)
def test_quickstart_runs_twice_with_the_same_output(tmp_path):
    first = _run([str(REPO / "examples" / "quickstart.py")], tmp_path)
    second = _run([str(REPO / "examples" / "quickstart.py")], tmp_path)

    strip = re.compile(r"\d\d:\d\d:\d\d")
    assert strip.sub("T", first) == strip.sub("T", second)
    assert "keys after the TTL: ['settings']" in first
    assert "took it again: False" in first
    assert "deleted the store from 2 contexts" in first


@pytest.mark.timeout(120)
def test_file_cache_serves_the_second_run_from_the_store(tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("one\ntwo\n")
    (tree / "sub" / "b.py").write_text("print('x')\n")
    script = str(REPO / "examples" / "file_cache.py")

    first = _run([script, str(tree)], tmp_path / "root")
    second = _run([script, str(tree)], tmp_path / "root")
    (tree / "a.txt").write_text("changed\n")
    os.utime(tree / "a.txt", ns=(1, 1))
    third = _run([script, str(tree)], tmp_path / "root")

    assert _counts(first) == (2, 0, 2)
    assert _counts(second) == (2, 2, 0)
    assert _counts(third) == (2, 1, 1)
    assert "lines in all:          3" in second


@pytest.mark.timeout(300)
def test_file_cache_on_the_standard_library_by_default(tmp_path):
    script = str(REPO / "examples" / "file_cache.py")

    first = _run([script], tmp_path)
    second = _run([script], tmp_path)

    walked, served, computed = _counts(second)
    assert walked > 100
    assert _counts(first)[2] == walked
    assert (served, computed) == (walked, 0)


def test_readme_opens_with_the_install_and_test_commands():
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)

    assert "examples/quickstart.py" in blocks[0]
    assert "pip install" in blocks[0]
    assert 'pip install -e ".[test]"' in blocks[1]
    assert "pytest" in blocks[1]


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()

    readme_command = re.findall(r"```bash\n(.*?)```", README, re.S)[1]
    pytest_args = readme_command.split("python3 -m pytest", 1)[1].strip()
    assert 'pip install -q -e ".[test]"' in ci
    assert f"python -m pytest {pytest_args}".strip() in ci


def _section(heading: str) -> str:
    return README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("heading", ["A short example", "API"])
def test_readme_python_examples_run(tmp_path, heading):
    blocks = re.findall(r"```python\n(.*?)```", _section(heading), re.S)
    assert blocks
    for index, block in enumerate(blocks):
        script = tmp_path / f"block{index}.py"
        script.write_text(block)
        _run([str(script)], tmp_path / f"root{index}")
