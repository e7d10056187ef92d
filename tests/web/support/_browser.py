"""Debian's chromium driven by Playwright (never a downloaded browser), and the page's controls as a test uses
them: sign in, open or start a session, send, wait for the reply to be written."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from playwright.async_api import Locator, Page

__all__ = ["CHROMIUM", "Chat", "chromium_path"]

CHROMIUM = "/usr/bin/chromium"


def chromium_path() -> str | None:
    """Debian's chromium (``make setup`` installs it), or ``MOFA_CHROMIUM``; None when there is none."""
    for candidate in (os.environ.get("MOFA_CHROMIUM"), CHROMIUM, shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class Chat:
    """One browser page on the served page, signed in with ``key``."""

    page: Page
    base: str
    key: str

    async def sign_in(self, path: str = "/") -> None:
        await self.page.goto(self.base + path)
        await self.page.fill("#signin-key", self.key)
        await self.page.press("#signin-key", "Enter")
        await self.page.wait_for_selector("#app:not([hidden])")

    async def new_session(self) -> str:
        await self.page.click("#new-session")
        await self.page.wait_for_function("() => location.hash.startsWith('#/sessions/')")
        await self.page.wait_for_selector("#view-chat:not([hidden])")
        return str(await self.page.evaluate("location.hash.split('/')[2]"))

    async def send(self, text: str) -> None:
        await self.page.fill("#composer-input", text)
        await self.page.press("#composer-input", "Enter")

    def reply(self) -> Locator:
        """The last assistant message of the transcript."""
        return self.page.locator("#transcript .msg.assistant").last

    async def reply_text(self) -> str:
        return str(await self.reply().locator(".msg-body").text_content() or "")

    async def wait_for_text(self, minimum: int) -> str:
        """Waits until the reply shows at least ``minimum`` characters; returns what it shows."""
        await self.page.wait_for_function(
            "n => { const m = [...document.querySelectorAll('#transcript .msg.assistant')].pop();"
            " return m && m.querySelector('.msg-body').textContent.length >= n; }", arg=minimum)
        return await self.reply_text()

    async def wait_for_status(self, status: str) -> None:
        """Waits until the last reply is shown with ``status`` (read back from the server after its end)."""
        await self.page.wait_for_function(
            "s => { const m = [...document.querySelectorAll('#transcript .msg.assistant')].pop();"
            " return m && m.dataset.status === s && m.dataset.id && !document.querySelector('#stop:not([hidden])'); }",
            arg=status)
