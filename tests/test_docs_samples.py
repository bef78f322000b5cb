"""Every ```python sample of README.md, docs/ and migrations-example/README.md is executed.

A sample runs as a program of its own (``python sample.py``, in a temporary directory
that sees the repository's examples/ and migrations-example/); a sample that leaves an
ASGI ``app`` behind is then started and stopped through its lifespan. A sample that is
only ``--8<-- "file[:section]"`` lines is included from a file: that file must be one a
test runs. A sample preceded by ``<!-- sample: skip REASON -->`` is not run, and says why.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from dbaccess import Database

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


# README's first samples use a PostgreSQL URL and top-level await: they run here on each
# configured backend, in turn, in one namespace, as a reader would paste them.
README_URL = '"postgresql://user:secret@localhost/app"'


def _readme_sample(containing: str) -> Sample:
    return next(s for s in SAMPLES if s.document.name == "README.md" and containing in s.code)


async def _run(code: str, namespace: dict[str, object]) -> None:
    compiled = compile(code, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)  # a coroutine when the code awaits
    if result is not None:
        await result


def _with_url(code: str, url: str) -> str:
    assert README_URL in code, "the README sample's URL changed: update this test"
    return code.replace(README_URL, repr(url))


async def test_the_readme_samples_run_on_every_backend(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    quickstart = _readme_sample(README_URL).code
    transactions = _readme_sample("async def add_note(text):").code
    # Ends connected (the transactions sample goes on from it), with the table made
    # first and dropped last: the sample assumes an application's existing table.
    body, disconnect = quickstart.rsplit("await database.disconnect()\n", 1)
    assert not disconnect.strip()
    body = body.replace(
        "await database.connect()\n",
        "await database.connect()\nawait database.create_all(notes.metadata)\n",
    )
    namespace: dict[str, object] = {}
    try:
        await _run(_with_url(body, database_url), namespace)
        assert namespace["note_id"] == 1 and namespace["count"] == 1
        assert [tuple(row.values()) for row in namespace["rows"]] == [(1, "buy milk", False)]  # type: ignore[attr-defined]
        assert capsys.readouterr().out == "1 buy milk\n"
        await _run(transactions, namespace)
        database = namespace["database"]
        assert isinstance(database, Database)
        rows = await database.fetch_all("SELECT text, done FROM notes ORDER BY id")
        assert [tuple(row.values()) for row in rows] == [
            ("buy milk", True),
            ("call mum", True),
            ("water the plants", False),
        ]
    finally:
        database = namespace.get("database")
        if isinstance(database, Database) and database.is_connected:
            await database.drop_all(namespace["notes"].metadata)  # type: ignore[attr-defined]
            await database.disconnect()


async def test_the_readme_asgi_sample_serves_on_every_backend(
    database_url: str, tmp_path: Path
) -> None:
    if database_url.startswith("sqlite"):
        # The app's own Database must see the table made beforehand: a file, not memory.
        database_url = f"sqlite:///{tmp_path / 'app.db'}"
    quickstart = _readme_sample(README_URL).code
    definitions = quickstart.split("await database.connect()")[0]
    namespace: dict[str, object] = {}
    await _run(_with_url(definitions, database_url), namespace)
    await _run(_readme_sample("app = FastAPI(lifespan=lifespan)").code, namespace)
    notes = namespace["notes"]
    async with Database(database_url) as setup:
        await setup.create_all(notes.metadata)  # type: ignore[attr-defined]
        try:
            await setup.execute(
                "INSERT INTO notes (text, done) VALUES ('buy milk', :done)", {"done": False}
            )
            app = namespace["app"]
            async with LifespanManager(app) as manager:  # type: ignore[arg-type]
                transport = httpx.ASGITransport(app=manager.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                    response = await client.get("/notes")
            assert response.status_code == 200
            assert response.json() == [{"id": 1, "text": "buy milk", "done": False}]
            database = namespace["database"]
            assert isinstance(database, Database) and not database.is_connected
        finally:
            await setup.drop_all(notes.metadata)  # type: ignore[attr-defined]
