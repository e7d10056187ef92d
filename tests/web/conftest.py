"""Fixtures of the web page's tests: one ``mofa serve`` process with the fault server as its provider, one
headless chromium, and a fresh page (in a fresh browser context) per test, each signed in with a fresh key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, BrowserContext, async_playwright

from tests.support.fault_server import FaultServer
from tests.support.postgres import IN_CI
from tests.support.processes import Launcher
from tests.web.support import Chat, WebServed, chromium_path, make_key


@pytest.fixture(scope="session")
def web_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launch = Launcher(tmp_path_factory.mktemp("web"))
    try:
        yield launch
    finally:
        launch.close()


@pytest.fixture(scope="session")
async def web_served(web_launcher: Launcher) -> AsyncIterator[WebServed]:
    db = f"sqlite:///{web_launcher.tmp / 'web.db'}"
    async with FaultServer() as fault:
        env = {"OPENAI_BASE_URL": fault.base_url, "OPENAI_API_KEY": "sk-test-not-a-secret"}
        yield WebServed(db, await web_launcher.mofa_serve(db, env=env), fault)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    path = chromium_path()
    if path is None:
        message = "no chromium: `make setup` installs Debian's (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    async with async_playwright() as p:
        found = await p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        try:
            yield found
        finally:
            await found.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1100, "height": 720})
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def chat(context: BrowserContext, web_served: WebServed) -> Chat:
    """A page signed in with the key of a fresh tenant."""
    page = await context.new_page()
    found = Chat(page, web_served.url, await make_key(web_served.db))
    await found.sign_in()
    return found


@pytest.fixture(autouse=True)
def _fresh_script(request: pytest.FixtureRequest) -> None:
    """Each test scripts its own turns: what a failed test left unused is dropped."""
    if "web_served" in request.fixturenames:
        served: WebServed = request.getfixturevalue("web_served")
        served.fault.script.clear()
