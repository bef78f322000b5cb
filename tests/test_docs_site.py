"""The docs site: `mkdocs build --strict` passes, and a real browser can use what it built.

Headless Debian Chromium, driven by selenium through Debian's chromium-driver, opens the
built site over HTTP (the search runs in a web worker that file:// URLs would block):
every page renders, the navigation reaches every page of mkdocs.yml, and the search finds
a term. Without chromium the browser test is skipped, except under CI=true.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


def nav_pages() -> dict[str, str]:
    """Title -> source file, for every page in mkdocs.yml's nav."""

    from mkdocs.config import load_config

    nav: list[dict[str, str]] = load_config(str(ROOT / "mkdocs.yml"))["nav"]
    return {title: path for entry in nav for title, path in entry.items()}


def page_url(source: str) -> str:
    return "" if source == "index.md" else source.removesuffix(".md") + "/"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return target


def test_the_site_builds_strictly_with_every_page(site: Path) -> None:
    for source in nav_pages().values():
        assert (site / page_url(source) / "index.html").is_file(), source
    reference = (site / "reference" / "index.html").read_text()
    # mkdocstrings rendered the docstrings, not just the headings.
    assert "Return the SQLAlchemy URL for the async driver dbaccess uses" in reference
    assert "fetch_all" in reference


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(site), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a line per request would bury the test's output

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        message = (
            "Debian's chromium and chromium-driver are not installed "
            "(apt-get install -y chromium chromium-driver)"
        )
        if IN_CI:
            pytest.fail(f"{message}; CI=true requires the browser test")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",  # the tests run as root
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    # The driver's path is given, so selenium downloads nothing.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 30).until(condition, message=f"waited for {what}")


def test_every_page_renders_and_the_navigation_reaches_it(browser: Any, served: str) -> None:
    from selenium.webdriver.common.by import By

    pages = nav_pages()
    expected = {served + page_url(source) for source in pages.values()}
    browser.get(served)
    links = browser.find_elements(By.CSS_SELECTOR, "nav.md-nav--primary a.md-nav__link[href]")
    reached = {link.get_attribute("href").split("#")[0] for link in links}
    assert expected <= reached, f"not in the navigation: {sorted(expected - reached)}"

    for title, source in pages.items():
        browser.get(served + page_url(source))
        heading = wait_for(
            browser, lambda d: d.find_element(By.CSS_SELECTOR, "article h1"), f"{source}'s h1"
        )
        assert heading.text.strip(), source
        article = browser.find_element(By.CSS_SELECTOR, "article").text
        assert len(article) > 200, f"{source} rendered almost nothing"
        assert "--8<--" not in article, f"{source} shows a snippet line that was not included"
        # The page's own entry in the navigation is the active one.
        active = browser.find_elements(By.CSS_SELECTOR, "a.md-nav__link--active")
        assert title in {link.get_attribute("textContent").strip() for link in active}, source


def test_the_search_finds_a_term(browser: Any, served: str) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    browser.get(served)
    browser.find_element(By.CSS_SELECTOR, "label.md-header__button[for='__search']").click()
    box = wait_for(
        browser, lambda d: d.find_element(By.CSS_SELECTOR, "input.md-search__input"), "search"
    )
    box.send_keys("savepoint")

    def result_links(driver: Any) -> list[str]:
        # The list is rendered again as the search worker answers each keystroke: read
        # every link in one pass, and start over when the list was replaced meanwhile.
        try:
            return [
                link.get_attribute("href")
                for link in driver.find_elements(By.CSS_SELECTOR, ".md-search-result__item a")
            ]
        except StaleElementReferenceException:
            return []

    links = wait_for(browser, result_links, "search results")
    # search.highlight adds ?h=TERM to each result link.
    targets = {link.split("#")[0].split("?")[0] for link in links}
    assert served + "transactions-and-tasks/" in targets
