"""The web page in a real chromium against a real `mofa serve`: a reply streams, survives a reload and a closed
tab, stops when asked, and a message's HTML is shown as text."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx2
from playwright.async_api import BrowserContext, Dialog

from mofa_sdk.entities import Message, MessageRole, MessageToolCall, Session
from mofa_sdk.persistence import connect_store
from tests.support.fault_server import Reply
from tests.support.processes import ROOT
from tests.web.support import Chat, WebServed, make_key, make_user, stored_messages

IMAGES = ROOT / "docs" / "images"

# every change of the reply's text, as the page shows it
_RECORD_STATES = """() => {
  window.__states = [];
  const box = document.getElementById('transcript');
  new MutationObserver(() => {
    const m = [...box.querySelectorAll('.msg.assistant')].pop();
    const text = m ? m.querySelector('.msg-body').textContent : '';
    if (window.__states[window.__states.length - 1] !== text) window.__states.push(text);
  }).observe(box, {childList: true, subtree: true, characterData: true});
}"""


def _paced(chunks: int, delay: float) -> Reply:
    return Reply(chunks=chunks, chunk_delay=delay)


async def _wait_stored(served: WebServed, key: str, session_id: str, status: str) -> dict[str, object]:
    for _ in range(300):
        messages = await stored_messages(served, key, session_id)
        replies = [m for m in messages if m["role"] == "assistant"]
        if replies and replies[-1]["status"] == status:
            return replies[-1]
        await asyncio.sleep(0.1)
    raise AssertionError(f"the reply was never stored {status}: {messages}")


async def test_reply_streams_token_by_token_and_ends_as_stored(chat: Chat, web_served: WebServed) -> None:
    web_served.fault.push(_paced(12, 0.15))
    session_id = await chat.new_session()
    await chat.page.evaluate(_RECORD_STATES)
    await chat.send("Say twelve tokens, please")
    await chat.wait_for_status("complete")

    stored = await _wait_stored(web_served, chat.key, session_id, "complete")
    final = await chat.reply_text()
    assert final == stored["content"] == Reply(chunks=12).expected_text()
    states: list[str] = await chat.page.evaluate("window.__states")
    partial = [s for s in states if s and s != final]
    assert len(partial) >= 3, states  # shown while it streamed, not at once at the end
    assert all(final.startswith(s) for s in partial), states
    user = chat.page.locator("#transcript .msg.user").last
    assert (await user.locator(".msg-body").text_content()) == "Say twelve tokens, please"
    # the sidebar lists the session with its two messages
    item = chat.page.locator(f'#session-list a[data-id="{session_id}"]')
    await item.locator(".session-meta", has_text="2 messages").wait_for()


async def test_shift_enter_breaks_a_line_and_enter_sends(chat: Chat, web_served: WebServed) -> None:
    web_served.fault.push(Reply(chunks=3))
    session_id = await chat.new_session()
    await chat.page.focus("#composer-input")
    await chat.page.keyboard.type("first line")
    await chat.page.keyboard.press("Shift+Enter")
    await chat.page.keyboard.type("second line")
    assert await chat.page.input_value("#composer-input") == "first line\nsecond line"
    assert await stored_messages(web_served, chat.key, session_id) == []  # nothing sent yet
    await chat.page.keyboard.press("Enter")
    await chat.wait_for_status("complete")
    stored = await stored_messages(web_served, chat.key, session_id)
    assert [m["content"] for m in stored if m["role"] == "user"] == ["first line\nsecond line"]
    assert await chat.page.input_value("#composer-input") == ""


async def test_reload_mid_reply_shows_the_text_so_far_then_the_rest(chat: Chat, web_served: WebServed) -> None:
    reply = _paced(40, 0.1)
    web_served.fault.push(reply)
    session_id = await chat.new_session()
    await chat.send("A long one")
    before = await chat.wait_for_text(len("tok0 tok1 tok2 tok3 tok4 "))
    await chat.page.reload()
    await chat.page.wait_for_selector("#view-chat:not([hidden])")  # signed in still: the key is in this tab
    # the text so far is back, and the reply is still being written
    await chat.page.wait_for_function(
        "n => { const m = [...document.querySelectorAll('#transcript .msg.assistant')].pop();"
        " return m && m.dataset.status === 'streaming' && m.querySelector('.msg-body').textContent.length >= n; }",
        arg=len(before))
    after_reload = await chat.reply_text()
    assert after_reload.startswith(before)
    assert len(after_reload) < len(reply.expected_text())
    await chat.wait_for_status("complete")
    stored = await _wait_stored(web_served, chat.key, session_id, "complete")
    assert await chat.reply_text() == stored["content"] == reply.expected_text()


async def test_closing_the_tab_does_not_stop_the_reply(
    chat: Chat, context: BrowserContext, web_served: WebServed
) -> None:
    reply = _paced(20, 0.1)
    web_served.fault.push(reply)
    session_id = await chat.new_session()
    await chat.send("Keep going without me")
    await chat.wait_for_text(len("tok0 tok1 "))
    await chat.page.close()
    messages = await stored_messages(web_served, chat.key, session_id)
    assert messages[-1]["status"] == "streaming"  # closed mid-reply
    stored = await _wait_stored(web_served, chat.key, session_id, "complete")
    assert stored["content"] == reply.expected_text()

    again = Chat(await context.new_page(), chat.base, chat.key)
    await again.sign_in(f"/#/sessions/{session_id}")
    await again.wait_for_status("complete")
    assert await again.reply_text() == reply.expected_text()
    assert await again.page.locator("#transcript .badge").count() == 0


async def test_stop_saves_and_shows_the_partial_reply_cancelled(chat: Chat, web_served: WebServed) -> None:
    web_served.fault.push(_paced(200, 0.1))
    session_id = await chat.new_session()
    await chat.send("Talk for a while")
    await chat.wait_for_text(len("tok0 tok1 tok2 "))
    await chat.page.click("#stop")
    await chat.wait_for_status("cancelled")
    stored = await _wait_stored(web_served, chat.key, session_id, "cancelled")
    shown = await chat.reply_text()
    assert shown == stored["content"]
    assert str(stored["content"]).startswith("tok0 tok1 tok2 ")
    assert len(str(stored["content"])) < len(Reply(chunks=200).expected_text())
    assert (await chat.reply().locator(".badge").text_content()) == "cancelled"


async def test_html_and_script_in_messages_render_as_text(chat: Chat, web_served: WebServed) -> None:
    dialogs: list[str] = []

    async def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    chat.page.on("dialog", dismiss)
    evil_reply = ['<img src=x onerror="alert(1)"> ', "<script>alert(2)</script> ", "[x](javascript:alert(3))"]
    web_served.fault.push(Reply(chunks=evil_reply))
    await chat.new_session()
    evil = '<script>alert("user")</script><img src=x onerror="window.__pwned=1"><b>bold?</b>'
    await chat.send(evil)
    await chat.wait_for_status("complete")
    await chat.page.reload()
    await chat.wait_for_status("complete")

    transcript = chat.page.locator("#transcript")
    assert await transcript.locator("script, img, b, iframe, [onerror]").count() == 0
    assert await transcript.locator("a[href^='javascript']").count() == 0
    assert (await chat.page.locator("#transcript .msg.user .msg-body").last.text_content()) == evil
    assert await chat.reply_text() == "".join(evil_reply)
    assert await chat.page.evaluate("window.__pwned") is None
    assert dialogs == []


async def test_another_tenants_session_is_not_found(chat: Chat, web_served: WebServed) -> None:
    other_key = await make_key(web_served.db)
    headers = {"Authorization": f"Bearer {other_key}"}
    async with httpx2.AsyncClient(base_url=web_served.url, timeout=10) as client:
        created = await client.post("/v1/sessions", json={"title": "their secret plans"}, headers=headers)
    their_id = created.json()["id"]
    await chat.page.goto(f"{chat.base}/#/sessions/{their_id}")
    await chat.page.wait_for_selector("#view-notfound:not([hidden])")
    assert await chat.page.locator("#view-chat").is_hidden()
    assert await chat.page.locator("#transcript .msg").count() == 0
    assert "their secret plans" not in await chat.page.content()
    # an id that is not even a UUID reads the same
    await chat.page.goto(f"{chat.base}/#/sessions/{uuid.uuid4().hex[:8]}")
    await chat.page.wait_for_selector("#view-notfound:not([hidden])")



async def test_tool_calls_and_results_are_shown_folded(context: BrowserContext, web_served: WebServed) -> None:
    key, tenant, user = await make_user(web_served.db)
    store = await connect_store(web_served.db)
    try:
        session = await store.create_session(Session(tenant_id=tenant, user_id=user, title="weather"))

        def row(role: MessageRole, content: str, **fields: Any) -> Message:
            return Message(tenant_id=tenant, user_id=user, session_id=session.id, role=role, content=content,
                           **fields)

        calls = [MessageToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}'),
                 MessageToolCall(id="call_2", name="get_time", arguments='{"tz": "<b>CET</b>"}')]
        for message in (
            row("user", "Weather and time in Paris?"),
            row("assistant", "", tool_calls=calls),
            row("tool", "18 °C, clear", tool_call_id="call_1"),
            row("tool", "clock unavailable", tool_call_id="call_2", is_error=True),
            row("assistant", "It is **18 °C** and clear in Paris."),
        ):
            await store.save_message(message)
    finally:
        await store.close()
    chat = Chat(await context.new_page(), web_served.url, key)
    await chat.sign_in(f"/#/sessions/{session.id}")
    await chat.wait_for_status("complete")
    tools = chat.page.locator("#transcript details.tool")
    assert await tools.count() == 2  # each result folded into its call, not shown again on its own
    assert await chat.page.locator("#transcript .msg.tool").count() == 0
    assert await tools.evaluate_all("ds => ds.map(d => d.open)") == [False, False]
    summaries = await tools.locator("summary").all_text_contents()
    assert summaries == ["tool call: get_weather · answered", "tool call: get_time · failed"]
    assert not await tools.first.locator("pre").first.is_visible()  # folded
    await tools.first.locator("summary").click()
    assert await tools.first.locator("pre").all_text_contents() == ['{"city": "Paris"}', "18 °C, clear"]
    assert await tools.nth(1).locator("pre").all_text_contents() == ['{"tz": "<b>CET</b>"}', "clock unavailable"]
    assert await chat.page.locator("#transcript b").count() == 0
    assert await chat.reply().locator("strong").text_content() == "18 °C"
    IMAGES.mkdir(parents=True, exist_ok=True)
    await chat.page.screenshot(path=str(IMAGES / "web-chat.png"))


async def test_a_provider_failure_mid_reply_is_shown_in_words(chat: Chat, web_served: WebServed) -> None:
    web_served.fault.push(Reply(chunks=6, chunk_delay=0.05, cut_after=3))
    session_id = await chat.new_session()
    await chat.send("This one breaks")
    await chat.wait_for_status("error")
    stored = await _wait_stored(web_served, chat.key, session_id, "error")
    assert await chat.reply_text() == stored["content"] == "tok0 tok1 tok2 "
    assert await chat.reply().locator(".badge").text_content() == "error"
    failure = str(await chat.page.locator("#chat-error").text_content())
    assert failure.startswith("The reply failed: ") and len(failure) > len("The reply failed: ") + 5
    assert "sk-test-not-a-secret" not in await chat.page.content()


async def test_reload_before_the_first_token_still_follows_the_reply(chat: Chat, web_served: WebServed) -> None:
    reply = Reply(chunks=5, first_byte_delay=2.0, chunk_delay=0.05)
    web_served.fault.push(reply)
    session_id = await chat.new_session()
    await chat.send("Think first")
    await chat.page.wait_for_function("() => !document.querySelector('#stop').hidden")
    rows = await stored_messages(web_served, chat.key, session_id)
    # the reply's row is written with the user message (streaming, still empty) before the first token
    assert [m["role"] for m in rows] == ["user", "assistant"] and rows[1]["content"] == ""
    await chat.page.reload()
    await chat.wait_for_status("complete")
    stored = await _wait_stored(web_served, chat.key, session_id, "complete")
    assert await chat.reply_text() == stored["content"] == reply.expected_text()
