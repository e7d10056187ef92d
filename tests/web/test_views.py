"""The page's files and headers, the usage by day behind its chart, the usage view, the session list at
375 px, and the transcript keeping the reader's scroll position while a reply streams."""

from __future__ import annotations

import asyncio
import re
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
from playwright.async_api import BrowserContext

from mofa_sdk.entities import ApiCallStatus, LLMApiCall, Session
from mofa_sdk.persistence import connect_store
from mofa_sdk.server.web import ASSETS, CSP
from tests.support.fault_server import Reply
from tests.support.processes import ROOT, Launcher
from tests.web.support import Chat, WebServed, make_key, make_user

IMAGES = ROOT / "docs" / "images"


async def _turns(served: WebServed, key: str, n: int) -> str:
    """A session with ``n`` finished turns, made through the API; its id."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(base_url=served.url, headers=headers, timeout=30) as client:
        session = (await client.post("/v1/sessions", json={"title": f"{n} quick questions"})).json()
        for i in range(n):
            served.fault.push(Reply(chunks=4))
            answer = await client.post(f"/v1/sessions/{session['id']}/messages",
                                       json={"content": f"question {i}", "stream": False})
            assert answer.status_code == 200, answer.text
    return str(session["id"])


async def test_page_needs_no_key_and_allows_no_inline_script_nor_other_origin(web_served: WebServed) -> None:
    total = 0
    async with httpx2.AsyncClient(base_url=web_served.url, timeout=10) as client:
        for path, (_, media_type) in ASSETS.items():
            response = await client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"] == media_type
            assert response.headers["content-security-policy"] == CSP
            assert response.headers["x-content-type-options"] == "nosniff"
            total += len(response.content)
            text = response.text
            # every fetch goes to this origin: the only absolute URL is the SVG namespace
            assert re.findall(r"https?://[^\s\"'`]+", text.replace("http://www.w3.org/2000/svg", "")) == [], path
        page = (await client.get("/")).text
        assert (await client.get("/v1/sessions")).status_code == 401  # the API still needs a key
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP and "default-src 'none'" in CSP
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []  # no inline script
    assert re.findall(r"\son\w+\s*=|\sstyle\s*=", page) == []  # no inline handler nor style
    assert total < 100_000, total


async def test_usage_daily_groups_todays_calls_by_model(web_served: WebServed) -> None:
    key = await make_key(web_served.db)
    await _turns(web_served, key, 3)
    async with httpx2.AsyncClient(base_url=web_served.url, timeout=10,
                                  headers={"Authorization": f"Bearer {key}"}) as client:
        daily = (await client.get("/v1/usage/daily", params={"days": 7})).json()
        refused = await client.get("/v1/usage/daily", params={"days": 0})
        listed = (await client.get("/v1/sessions")).json()["data"]
    today = datetime.now(UTC).date().isoformat()
    assert daily["end"] == today and daily["truncated"] is False
    assert [(r["day"], r["calls"], r["calls_by_status"]) for r in daily["rows"]] == [(today, 3, {"success": 3})]
    row = daily["rows"][0]
    assert row["model"] and row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert row["p50_time_to_first_token_ms"] is not None
    assert row["p50_time_to_first_token_ms"] <= row["p95_time_to_first_token_ms"]
    assert refused.status_code == 422 and "days" in refused.text
    assert [s["message_count"] for s in listed] == [6]


async def test_usage_view_draws_calls_per_day(chat: Chat, web_served: WebServed) -> None:
    await _turns(web_served, chat.key, 2)
    await _turns(web_served, chat.key, 3)
    await chat.page.goto(f"{chat.base}/#/usage")
    await chat.page.wait_for_selector("#usage-chart svg rect")
    assert await chat.page.locator("#usage-totals .stat b").first.text_content() == "5"
    rows = chat.page.locator("#usage-table tbody tr")
    assert await rows.count() == 1
    cells = await rows.first.locator("td").all_text_contents()
    assert cells[0] == datetime.now(UTC).date().isoformat() and cells[2] == "5" and cells[3] == "success 5"
    assert "5 in all" in str(await chat.page.locator("#usage-chart svg").get_attribute("aria-label"))
    IMAGES.mkdir(parents=True, exist_ok=True)
    await chat.page.screenshot(path=str(IMAGES / "web-usage.png"))


async def test_at_375_px_the_sessions_open_from_a_button_and_nothing_overflows(
    context: BrowserContext, web_served: WebServed
) -> None:
    key = await make_key(web_served.db)
    first = await _turns(web_served, key, 1)
    await _turns(web_served, key, 2)
    page = await context.new_page()
    await page.set_viewport_size({"width": 375, "height": 740})
    chat = Chat(page, web_served.url, key)
    await chat.sign_in(f"/#/sessions/{first}")
    await chat.wait_for_status("complete")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    assert await page.locator("#sidebar").is_hidden()
    # keyboard only: the Sessions button is reachable with Tab and opens the list
    await page.focus("#toggle-sidebar")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#sidebar.open")
    assert await page.evaluate("document.activeElement.id") == "new-session"
    titles = await page.locator("#session-list .session-title").all_text_contents()
    assert titles == ["2 quick questions", "1 quick questions"]
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    IMAGES.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(IMAGES / "web-sessions.png"))


async def test_streaming_does_not_move_a_reader_who_scrolled_up(chat: Chat, web_served: WebServed) -> None:
    paragraphs = [f"Paragraph {i} of a long answer.\n\n" for i in range(80)]
    web_served.fault.push(Reply(chunks=paragraphs, chunk_delay=0.06))
    await chat.new_session()
    await chat.send("Write a lot")
    await chat.page.wait_for_function(
        "() => { const t = document.getElementById('transcript'); return t.scrollHeight > t.clientHeight + 200; }")
    await chat.page.evaluate("document.getElementById('transcript').scrollTop = 0")
    shown = len(await chat.reply_text())
    await chat.wait_for_text(shown + 200)  # more arrived meanwhile
    assert await chat.page.evaluate("document.getElementById('transcript').scrollTop") == 0
    await chat.wait_for_status("complete")
    assert await chat.page.evaluate("document.getElementById('transcript').scrollTop") == 0


async def test_mofa_serve_open_opens_the_page_in_the_browser(web_launcher: Launcher, tmp_path: Path) -> None:
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"  # what $BROWSER names is what `webbrowser` runs, with the URL
    browser.write_text(f'#!/bin/sh\nprintf %s "$1" > {opened}\n')
    browser.chmod(0o755)
    server = await web_launcher.mofa_serve(f"sqlite:///{tmp_path / 'open.db'}", "--open",
                                           env={"BROWSER": str(browser), "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    for _ in range(100):
        if opened.exists() and opened.read_text():
            break
        await asyncio.sleep(0.1)
    assert opened.read_text() == f"{server.url}/"


def test_the_wheel_ships_every_file_the_page_serves() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["mofa_sdk"]
    package = ROOT / "src" / "mofa_sdk"
    shipped = {p for g in globs for p in package.glob(g)}
    served = {package / "server" / "web" / "static" / name for name, _ in ASSETS.values()}
    assert served <= shipped, served - shipped


async def test_usage_daily_splits_days_and_models_and_leaves_out_older_days(web_served: WebServed) -> None:
    key, tenant, user = await make_user(web_served.db)
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    store = await connect_store(web_served.db)
    try:
        session = await store.create_session(Session(tenant_id=tenant, user_id=user))

        def call(days_ago: int, model: str, status: ApiCallStatus, ttft: int) -> LLMApiCall:
            return LLMApiCall(tenant_id=tenant, user_id=user, session_id=session.id, model_name=model, status=status,
                              prompt_tokens=10, completion_tokens=5, total_tokens=15, time_to_first_token_ms=ttft,
                              latency_ms=ttft * 2, create_time=today - timedelta(days=days_ago))

        await store.save_api_calls([
            call(0, "m-a", "success", 100), call(0, "m-a", "success", 300), call(0, "m-b", "failed", 50),
            call(2, "m-a", "cancelled", 80), call(9, "m-a", "success", 10),  # the last one is before the window
        ])
    finally:
        await store.close()
    async with httpx2.AsyncClient(base_url=web_served.url, timeout=10,
                                  headers={"Authorization": f"Bearer {key}"}) as client:
        daily = (await client.get("/v1/usage/daily", params={"days": 7})).json()
    day = (today - timedelta(days=2)).date().isoformat()
    got = [(r["day"], r["model"], r["calls"], r["calls_by_status"], r["total_tokens"], r["p50_time_to_first_token_ms"],
            r["p95_time_to_first_token_ms"]) for r in daily["rows"]]
    assert daily["start"] == (today - timedelta(days=6)).date().isoformat()
    assert got == [
        (day, "m-a", 1, {"cancelled": 1}, 15, 80.0, 80.0),
        (today.date().isoformat(), "m-a", 2, {"success": 2}, 30, 200.0, 290.0),  # percentile_cont, as the stores
        (today.date().isoformat(), "m-b", 1, {"failed": 1}, 15, 50.0, 50.0),
    ]
