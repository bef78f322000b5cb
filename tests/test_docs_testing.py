"""The examples of docs/testing.md and of the README's "Testing your application", run as
the projects they describe (each code block starting with a file name comment is that
file), with pytester on every backend."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .test_pytest_plugin import INNER

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```(?:python|toml)\n# (\S+)\n(.*?)```", re.S)
DOCUMENTED_URL = 'dbaccess_url = "postgresql://postgres@localhost/app"'


def project_files(document: str) -> dict[str, str]:
    """The files a document's examples make up, by path."""
    text = (ROOT / document).read_text(encoding="utf-8")
    if document == "README.md":
        text = text.split("## Testing your application", 1)[1].split("\n## ", 1)[0]
    files = {path: code for path, code in BLOCK.findall(text)}
    assert "pyproject.toml" in files and any(path.startswith("tests/") for path in files)
    return files


@pytest.mark.parametrize("document", ["docs/testing.md", "README.md"])
def test_the_documented_project_passes(
    pytester: pytest.Pytester, database_url: str, document: str
) -> None:
    files = project_files(document)
    assert DOCUMENTED_URL in files["pyproject.toml"]
    files["pyproject.toml"] = files["pyproject.toml"].replace(
        DOCUMENTED_URL, f'dbaccess_url = "{database_url}"'
    )
    for path, code in files.items():
        (pytester.path / path).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / path).write_text(code, encoding="utf-8")
    tests = sum(code.count("\nasync def test_") for path, code in files.items())
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(passed=tests)
