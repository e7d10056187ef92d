"""The session list: pages of 30 with *Load more*, rename, and delete after a confirmation."""

from __future__ import annotations

import httpx2
from playwright.async_api import BrowserContext, Dialog

from tests.web.support import Chat, WebServed, make_key


async def test_sessions_page_rename_and_delete_with_confirmation(chat: Chat, web_served: WebServed) -> None:
    headers = {"Authorization": f"Bearer {chat.key}"}
    async with httpx2.AsyncClient(base_url=web_served.url, headers=headers, timeout=30) as client:
        ids = [(await client.post("/v1/sessions", json={"title": f"s{i:02}"})).json()["id"] for i in range(32)]
    await chat.page.reload()
    items = chat.page.locator("#session-list li")
    await chat.page.wait_for_function("() => document.querySelectorAll('#session-list li').length === 30")
    await chat.page.click("#more-sessions")
    await chat.page.wait_for_function("() => document.querySelectorAll('#session-list li').length === 32")
    assert await chat.page.locator("#more-sessions").is_hidden()
    assert sorted(await items.locator(".session-title").all_text_contents()) == [f"s{i:02}" for i in range(32)]

    answers = iter(["renamed <i>x</i>", False, True])  # the prompt's text, then cancel and confirm the delete
    seen: list[str] = []

    async def answer(dialog: Dialog) -> None:
        seen.append(dialog.type)
        reply = next(answers)
        if reply is False:
            await dialog.dismiss()
        else:
            await dialog.accept(reply if isinstance(reply, str) else "")

    chat.page.on("dialog", answer)
    await chat.page.click(f'#session-list a[data-id="{ids[0]}"]')
    await chat.page.wait_for_selector("#view-chat:not([hidden])")
    await chat.page.click("#rename-session")
    await chat.page.locator("#chat-title", has_text="renamed <i>x</i>").wait_for()
    await chat.page.locator(f'#session-list a[data-id="{ids[0]}"] .session-title',
                            has_text="renamed <i>x</i>").wait_for()
    await chat.page.click("#delete-session")  # dismissed: nothing happens
    await chat.page.click("#delete-session")  # confirmed
    await chat.page.wait_for_selector("#view-empty:not([hidden])")
    await chat.page.wait_for_function(
        "id => !document.querySelector(`#session-list a[data-id='${id}']`)", arg=ids[0])
    assert seen == ["prompt", "confirm", "confirm"]
    async with httpx2.AsyncClient(base_url=web_served.url, headers=headers, timeout=30) as client:
        assert (await client.get(f"/v1/sessions/{ids[0]}")).status_code == 404
        assert (await client.get(f"/v1/sessions/{ids[1]}")).status_code == 200


async def test_a_wrong_key_is_refused_in_words_and_sign_out_forgets_the_key(
    context: BrowserContext, web_served: WebServed
) -> None:
    page = await context.new_page()
    wrong = Chat(page, web_served.url, "mofa_sk_" + "x" * 43)
    await page.goto(web_served.url + "/")
    await page.fill("#signin-key", wrong.key)
    await page.press("#signin-key", "Enter")
    await page.locator("#signin-error", has_text="Your key was refused: invalid or revoked API key").wait_for()
    assert await page.locator("#app").is_hidden()
    assert wrong.key not in page.url

    right = Chat(page, web_served.url, await make_key(web_served.db))
    await right.sign_in()
    assert await page.evaluate("sessionStorage.getItem('mofa.key')") == right.key
    assert right.key not in page.url
    await page.click("#signout")
    await page.wait_for_selector("#signin:not([hidden])")
    assert await page.evaluate("sessionStorage.getItem('mofa.key')") is None
    await page.reload()
    await page.wait_for_selector("#signin:not([hidden])")  # signed out stays signed out
