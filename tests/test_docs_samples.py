"""Every ```python sample of README.md, docs/ and migrations-example/README.md is executed.

A sample runs as a program of its own (``python sample.py``, in a temporary directory
that sees the repository's examples/ and migrations-example/); a sample that leaves an
ASGI ``app`` behind is then started and stopped through its lifespan. A sample that is
only ``--8<-- "file[:section]"`` lines is included from a file: that file must be one a
test runs. A sample preceded by ``<!-- sample: skip REASON -->`` is not run, and says why.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCUMENTS.append(ROOT / "migrations-example" / "README.md")

SKIP = re.compile(r"<!--\s*sample:\s*skip\b(?P<reason>.*?)-->")
INCLUDE = re.compile(r'^--8<-- "(?P<path>[^":]+)(?::(?P<section>[\w-]+))?"$')
# Files that tests run: what is included from them has been executed.
TESTED = {
    "examples/quickstart.py": "test_the_quickstart_example_runs",
    "examples/starlette_app.py": "tests/test_examples_apps.py",
    "examples/fastapi_app.py": "tests/test_examples_apps.py",
    "examples/litestar_app.py": "tests/test_examples_apps.py",
    "migrations-example/env.py": "tests/test_migrations_example.py",
    "migrations-example/README.md": "tests/test_migrations_example.py (its commands)",
    "tests/test_testing_recipes.py": "itself",
    "tests/test_examples_apps.py": "itself",
}

# Runs a sample, then, if it defined an ASGI app, its startup and shutdown.
DRIVER = """
import asyncio, runpy, sys
namespace = runpy.run_path(sys.argv[1], run_name="__main__")
app = namespace.get("app")
if app is not None:
    from asgi_lifespan import LifespanManager
    async def lifespan():
        async with LifespanManager(app):
            print("lifespan: started")
        print("lifespan: stopped")
    asyncio.run(lifespan())
"""


@dataclass
class Sample:
    document: Path
    line: int
    code: str
    skip_reason: str | None

    @property
    def id(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"

    @property
    def includes(self) -> list[re.Match[str]] | None:
        lines = [line.strip() for line in self.code.splitlines() if line.strip()]
        matches = [INCLUDE.match(line) for line in lines]
        if lines and all(matches):
            return [m for m in matches if m is not None]
        return None


def samples() -> list[Sample]:
    found = []
    for document in DOCUMENTS:
        lines = document.read_text().splitlines()
        index = 0
        while index < len(lines):
            if lines[index].strip() == "```python":
                start = index
                index += 1
                body = []
                while lines[index].strip() != "```":
                    body.append(lines[index])
                    index += 1
                before = next((line for line in reversed(lines[:start]) if line.strip()), "")
                skip = SKIP.search(before)
                reason = skip.group("reason").strip() if skip else None
                found.append(Sample(document, start + 1, "\n".join(body) + "\n", reason))
            index += 1
    return found


SAMPLES = samples()


def test_the_samples_are_found() -> None:
    # A parser that found nothing would pass every test below: count what it found.
    assert len(SAMPLES) >= 15
    assert {s.document.name for s in SAMPLES} >= {"README.md", "asgi.md", "migrations.md"}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: sample.id)
def test_sample(sample: Sample, tmp_path: Path) -> None:
    if sample.skip_reason is not None:
        # A skip must say why, in words a reader can check.
        assert len(sample.skip_reason.split()) >= 5, f"{sample.id}: give a reason to skip"
        pytest.skip(f"{sample.id}: {sample.skip_reason}")
    includes = sample.includes
    if includes is not None:
        for include in includes:
            path = include.group("path")
            assert path in TESTED, f"{sample.id} includes {path}, which no test runs"
            text = (ROOT / path).read_text()
            section = include.group("section")
            if section:
                assert f"--8<-- [start:{section}]" in text, f"{path} has no section {section}"
                assert f"--8<-- [end:{section}]" in text
        return
    for folder in ("examples", "migrations-example"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    (tmp_path / "sample.py").write_text(sample.code)
    (tmp_path / "driver.py").write_text(DRIVER)
    result = subprocess.run(
        [sys.executable, "driver.py", "sample.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{sample.id} failed:\n{result.stdout}\n{result.stderr}"
    if "app =" in sample.code:
        assert "lifespan: stopped" in result.stdout


def test_the_quickstart_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, "examples/quickstart.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "rolled back: IntegrityError" in result.stdout
    assert "notes after the rollback: 3" in result.stdout
