"""GraphiQL in a real browser, with no outside network: sign in, query, subscribe.

Debian's chromium driven by Playwright (no browser download), every request to a host other
than 127.0.0.1 aborted, and everything done through GraphiQL's own editors and buttons. The
page's subscription runs through the reference `graphql-ws` client, so this is also the test
of our websocket with the JavaScript client GraphiQL, Apollo and urql use.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.async_api import Browser, Page, Request, Route, async_playwright

from tests.e2e.conftest import ADMIN_PASSWORD, Gateway

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(tempfile.gettempdir()) / "sutazai-graphiql.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert os.access(CHROMIUM, os.X_OK), "chromium is missing: `make test` installs it"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


class PageWatch:
    """Requests that failed or went anywhere but 127.0.0.1, script errors, websockets opened."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.sockets: list[str] = []

    async def route(self, route: Route) -> None:
        if urlparse(route.request.url).hostname in ("127.0.0.1", None):
            await route.continue_()
            return
        self.outside.append(route.request.url)
        await route.abort()

    def on_failed(self, request: Request) -> None:
        self.failed.append(f"{request.method} {request.url}: {request.failure}")

    async def on_response(self, response: object) -> None:
        status = getattr(response, "status", 0)
        if status >= 400:
            self.failed.append(f"{getattr(response, 'url', '?')}: HTTP {status}")


async def _set_editor(page: Page, selector: str, text: str) -> None:
    """Replace what an editor holds, as a user would: click, select all, type."""
    await page.click(f"{selector} .CodeMirror:visible")
    await page.keyboard.press("Control+A")
    await page.keyboard.press("Delete")
    await page.keyboard.insert_text(text)
    await page.keyboard.press("Escape")  # close the completion popup typing may open


async def _run(page: Page, operation: str) -> None:
    """Run the named operation once GraphiQL has taken in the edit (its tab shows the name)."""
    await page.locator(".graphiql-tab-active", has_text=operation).wait_for()
    await page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()


async def _result(page: Page) -> str:
    text: str = await page.eval_on_selector(
        ".result-window .CodeMirror", "element => element.CodeMirror.getValue()"
    )
    return text


async def _wait_for_result(page: Page, needle: str, timeout_ms: int = 20_000) -> str:
    try:
        await _until_shown(page, needle, timeout_ms)
    except Exception:
        await page.screenshot(path=str(SCREENSHOT))  # what the page showed instead
        raise AssertionError(
            f"GraphiQL never showed {needle!r}; it shows {await _result(page)!r} "
            f"(screenshot: {SCREENSHOT})"
        ) from None
    return await _result(page)


async def _until_shown(page: Page, needle: str, timeout_ms: int) -> None:
    await page.wait_for_function(
        """needle => {
            const element = document.querySelector('.result-window .CodeMirror');
            return element && element.CodeMirror.getValue().includes(needle);
        }""",
        arg=needle,
        timeout=timeout_ms,
    )


async def test_graphiql_signs_in_queries_and_subscribes_with_no_outside_network(
    gateway: Gateway, browser: Browser
) -> None:
    watch = PageWatch()
    context = await browser.new_context()
    await context.route("**/*", watch.route)
    page = await context.new_page()
    page.on("requestfailed", watch.on_failed)
    page.on("pageerror", lambda error: watch.errors.append(str(error)))
    page.on("websocket", lambda socket: watch.sockets.append(socket.url))
    page.on("response", watch.on_response)

    await page.goto(f"{gateway.url}/graphql")
    await page.wait_for_selector(".graphiql-query-editor .CodeMirror", timeout=20_000)
    await page.wait_for_load_state("networkidle")  # the schema is in: the editors are ready
    # The docs' example operations open as tabs.
    assert await page.locator(".graphiql-tab").count() > 1

    login = (
        f'mutation SignIn {{ login(login: "admin", password: "{ADMIN_PASSWORD}") '
        "{ accessToken } }"
    )
    await _set_editor(page, ".graphiql-query-editor", login)
    await _run(page, "SignIn")
    token = json.loads(await _wait_for_result(page, "accessToken"))["data"]["login"]["accessToken"]

    await page.get_by_role("button", name="Headers").click()
    await _set_editor(
        page, ".graphiql-editor-tool", json.dumps({"Authorization": f"Bearer {token}"})
    )
    await _set_editor(page, ".graphiql-query-editor", "query Me { me { username role } }")
    await _run(page, "Me")
    me = json.loads(await _wait_for_result(page, "username"))
    assert me["data"]["me"]["username"] == "admin", me

    subscription = (
        "subscription Submitted { events(filter: "
        '{aggregateType: "task", eventType: "TaskSubmitted"}) { sequence eventType aggregateId } }'
    )
    await _set_editor(page, ".graphiql-query-editor", subscription)
    await _run(page, "Submitted")
    await gateway.until_live("events")
    submitted = await gateway.client.data(
        'mutation { submitTask(input: {taskType: "test.browser", priority: 1, payload: {}}) '
        "{ aggregateId } }",
        token=token,
    )
    shown = json.loads(await _wait_for_result(page, submitted["submitTask"]["aggregateId"]))
    assert shown["data"]["events"]["eventType"] == "TaskSubmitted"
    await page.screenshot(path=str(SCREENSHOT))
    print(f"GraphiQL screenshot: {SCREENSHOT}")

    assert watch.outside == [], watch.outside
    assert watch.failed == [], watch.failed
    assert watch.errors == [], watch.errors
    # The subscription went over our websocket (graphql-ws), not as an HTTP request.
    assert watch.sockets == [gateway.url.replace("http://", "ws://") + "/graphql"]
    await context.close()
