"""The web page at / in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven
by Playwright) against a real server (tests/web_harness.py), the real Coach and the fake
Anthropic. Run alone with `.venv/bin/python -m pytest -m browser`.

Without Chromium or Playwright these tests are skipped, saying why; `.ci/run` installs
Chromium and sets MOMENTUM_BROWSER_TESTS=required, which turns that skip into a failure."""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from core.models import Identity, Platform
from tests.fakes.anthropic_api import FakeAnthropic
from tests.web_harness import WebWorld, web_on

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, WebSocket, WebSocketRoute

CHROMIUM = Path("/usr/bin/chromium")
# The machine's own Chromium, quiet: no sandbox (CI runs as root), no calls home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000  # two slow cores shared with other tests: generous, never slept


def _missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


if (why := _missing()) is not None:
    if os.environ.get("MOMENTUM_BROWSER_TESTS") == "required":
        pytest.fail(f"the browser tests must run here, but {why}", pytrace=False)
    pytest.skip(f"browser tests skipped: {why}", allow_module_level=True)

from playwright.async_api import async_playwright, expect  # noqa: E402

expect.set_options(timeout=WAIT_MS)
pytestmark = pytest.mark.browser


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def web(tmp_path: Path, fake: FakeAnthropic) -> AsyncIterator[WebWorld]:
    # The page makes several requests per action; the budget is not what is tested here.
    async with web_on(tmp_path, fake.base_url, web_rate_burst=500) as world:
        yield world


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


class Tab:
    """One browser tab on the page, with what it showed: JavaScript errors, the console's
    errors, and dialogs (an alert() that fires is script that ran)."""

    def __init__(self, page: Page, web: WebWorld) -> None:
        self.page, self.web = page, web
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.frames: list[str] = []  # WebSocket frames received
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)
        page.on("dialog", self._dialog)
        page.on("websocket", self._socket)

    def _console(self, message: Any) -> None:
        # A refused request (401, 400) is logged by the browser itself; anything else
        # (a script error, a Content-Security-Policy refusal) is the page's fault.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    async def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    def _socket(self, socket: WebSocket) -> None:
        socket.on("framereceived", lambda payload: self.frames.append(str(payload)))

    async def open(self, path: str = "/") -> None:
        await self.page.goto(self.web.base_url + path)

    async def sign_in(self, token: str) -> None:
        await self.open()
        await self.page.get_by_label("Token").fill(token)
        await self.page.get_by_role("button", name="Sign in").click()
        await expect(self.page.locator("#app")).to_be_visible()
        await expect(self.page.locator("#connection")).to_have_text("Connected")

    async def send(self, text: str) -> None:
        await self.page.get_by_label("Message to your coach").fill(text)
        await self.page.get_by_role("button", name="Send", exact=True).click()

    @property
    def log(self) -> Any:
        return self.page.get_by_role("log")

    def coach(self, n: int = -1) -> Any:
        """The n-th coach bubble of the log (-1: the last)."""
        bubbles = self.page.locator("#messages .message.coach")
        return bubbles.last if n == -1 else bubbles.nth(n)


@pytest.fixture
async def tab(browser: Browser, web: WebWorld) -> AsyncIterator[Tab]:
    context = await browser.new_context()
    tab = Tab(await context.new_page(), web)
    try:
        yield tab
        assert tab.errors == [], "the page threw"
    finally:
        await context.close()


async def tracking_with_a_meeting_tomorrow(web: WebWorld, headers: dict[str, str]) -> None:
    """As test_web_api's refusal test: a goal, a meeting tomorrow 09:00, then tracking."""
    await web.post("/api/v1/goals", headers, {"text": "Run 5k"})
    status, booked = await web.post("/api/v1/meetings", headers, {"when": "tomorrow 9am"})
    assert status == 201, booked
    async with web.http.put("/api/v1/phase", headers=headers, json={"phase": "tracking"}) as r:
        assert r.status == 200


# Signing in and out


async def test_a_pasted_token_signs_in_and_the_reply_streams_over_the_socket(
    tab: Tab, web: WebWorld, fake: FakeAnthropic
) -> None:
    words = [f"word{n}" for n in range(40)]
    fake.reply, fake.token_delay = " ".join(words), 0.05  # about 2 s of streaming
    await tab.sign_in(await web.token("ada"))
    await expect(tab.page.locator("#who")).to_have_text("Signed in as ada (web)")
    await expect(tab.page.locator("#access-headline")).to_have_text("Your coach is reachable now.")

    await tab.send("Plan my week")
    await expect(tab.log).to_contain_text("Plan my week")
    # Part of the reply is on screen (marked busy) while the rest is still being written.
    await tab.page.wait_for_function(streaming("word0", "word39"), timeout=WAIT_MS)
    reply = tab.coach()
    await expect(reply.locator(".body")).to_have_text(" ".join(words))
    await expect(reply).not_to_have_attribute("aria-busy", "true")
    assert await tab.log.get_attribute("aria-live") == "polite"
    frames = [json.loads(frame)["type"] for frame in tab.frames]
    assert frames[0] == "connected" and frames.count("response") == 1
    assert frames.count("response_chunk") > 1


def streaming(first: str, last: str) -> str:
    """JS: true while the last coach bubble shows `first` but not yet `last`, marked busy."""
    return f"""() => {{
        const bubbles = document.querySelectorAll('#messages .message.coach');
        const bubble = bubbles[bubbles.length - 1];
        const text = bubble?.querySelector('.body').textContent ?? '';
        return text.startsWith('{first}') && !text.includes('{last}')
            && bubble.getAttribute('aria-busy') === 'true';
    }}"""


async def test_a_sign_in_link_works_once_and_leaves_the_address(
    browser: Browser, web: WebWorld
) -> None:
    user = await web.coach.user(Identity(platform=Platform.SLACK, external_id="U1"))
    code = await web.coach.keys.sign_in_code(user)
    first = Tab(await browser.new_page(), web)
    await first.open(f"/#sign-in={code}")
    await expect(first.page.locator("#who")).to_have_text("Signed in as U1 (slack)")
    assert "sign-in" not in first.page.url and code not in first.page.url

    again = Tab(await (await browser.new_context()).new_page(), web)
    await again.open(f"/#sign-in={code}")
    await expect(again.page.get_by_role("alert").first).to_contain_text(
        "expired or was used already"
    )
    await expect(again.page.get_by_label("Token")).to_be_visible()
    assert first.errors == again.errors == []


async def test_a_wrong_token_says_why_and_signing_out_forgets_the_token(
    tab: Tab, web: WebWorld
) -> None:
    await tab.open()
    await tab.page.get_by_label("Token").fill("mom_not_a_token")
    await tab.page.get_by_label("Token").press("Enter")
    await expect(tab.page.locator("#sign-in-error")).to_contain_text("Sign in")
    await expect(tab.page.locator("#app")).to_be_hidden()

    await tab.sign_in(await web.token("ada"))
    await tab.page.reload()  # the token is kept
    await expect(tab.page.locator("#who")).to_have_text("Signed in as ada (web)")
    await tab.page.get_by_role("button", name="Sign out").click()
    await expect(tab.page.get_by_label("Token")).to_be_visible()
    await expect(tab.page.locator("#app")).to_be_hidden()
    assert await tab.page.evaluate("() => localStorage.length") == 0
    await tab.page.reload()
    await expect(tab.page.get_by_label("Token")).to_be_visible()


# History


async def test_after_a_reload_the_history_shows_with_older_pages_on_demand(
    tab: Tab, web: WebWorld
) -> None:
    token = await web.token("ada")
    headers = {"Authorization": f"Bearer {token}"}
    for n in range(11):  # 22 messages: with 2 more, two pages of 20
        status, body = await web.post("/api/v1/chat/send", headers, {"content": f"note {n}"})
        assert status == 200, body
    await tab.sign_in(token)
    await tab.send("one more")
    await expect(tab.coach().locator(".body")).to_have_text("Coach: one more")

    await tab.page.reload()
    messages = tab.page.locator("#messages .message")
    await expect(messages.last).to_contain_text("Coach: one more")
    await expect(messages).to_have_count(20)
    await expect(tab.log).not_to_contain_text("note 0")
    older = tab.page.get_by_role("button", name="Show older messages")
    await older.click()
    await expect(tab.log).to_contain_text("Coach: note 0")
    await expect(older).to_be_hidden()
    texts = [t.strip() for t in await messages.locator(".body").all_text_contents()]
    assert len(texts) == 24 and len(set(texts)) == 24  # every message once
    assert texts.index("note 0") < texts.index("note 10") < texts.index("one more")


# The window


async def test_a_refused_message_in_tracking_shows_when_the_window_opens(
    tab: Tab, web: WebWorld, fake: FakeAnthropic
) -> None:
    token = await web.token("ada")
    await tracking_with_a_meeting_tomorrow(web, {"Authorization": f"Bearer {token}"})
    await tab.sign_in(token)
    await expect(tab.page.locator("#access-headline")).to_have_text(
        "Your coach is not reachable now."
    )
    await expect(tab.page.locator("#access-next")).to_contain_text("08:30")

    await tab.send("hello")
    refusal = tab.coach()
    await expect(refusal).to_contain_text("Your next window opens")
    await expect(refusal).to_contain_text("08:30")
    assert not fake.requests  # the model was never asked


# Safety


MARKUP = "<script>alert(1)</script> and <img src=x onerror=alert(1)>"


async def test_markup_from_the_model_or_the_user_shows_as_text(
    tab: Tab, web: WebWorld, fake: FakeAnthropic
) -> None:
    fake.reply = (
        f"Look: {MARKUP}\n\n<script>alert(2)</script>\n\n**bold** ![pic](https://x.test/a.png) "
        "[safe](https://example.com/plan) [sneaky](javascript:alert(3))"
    )
    await tab.sign_in(await web.token("ada"))
    await tab.send(f"mine: {MARKUP}")
    reply = tab.coach()
    await expect(reply).to_contain_text("sneaky")

    for shown in ("live", "from history"):
        await expect(tab.log).to_contain_text(f"mine: {MARKUP}")
        await expect(reply).to_contain_text(f"Look: {MARKUP}")
        await expect(reply).to_contain_text("<script>alert(2)</script>")
        log = tab.page.locator("#messages")
        assert await log.locator("img, script, iframe, [onerror]").count() == 0, shown
        assert await reply.locator("strong").inner_text() == "bold"
        safe = reply.get_by_role("link", name="safe")
        assert await safe.get_attribute("href") == "https://example.com/plan"
        assert "noopener" in (await safe.get_attribute("rel") or "")
        assert await log.locator("a[href^='javascript' i]").count() == 0
        assert await reply.get_by_role("link", name="sneaky").count() == 0  # no href: no link
        await tab.page.reload()
        await expect(tab.page.locator("#app")).to_be_visible()
        reply = tab.coach()
    assert tab.dialogs == []


ATTACKS = [
    "<a href='javascript:alert(1)'>a</a>",
    "[b](JaVaScRiPt:alert(1))",
    "[c](  javascript:alert(1))",
    "[d](vbscript:msgbox(1))",
    "[e](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<javascript:alert(1)>",
    '[f](https://ok.test "t\\" onmouseover=alert(1) x=\\"")',
    "![g](javascript:alert(1))",
    "![h](https://x.test/h.png)",
    "<svg onload=alert(1)>",
    "<iframe src=javascript:alert(1)></iframe>",
    "<details open ontoggle=alert(1)>",
    "<style>body { display: none }</style>",
    '<math><mi xlink:href="javascript:alert(1)">i</mi></math>',
    "```\n</code></pre><script>alert(1)</script>\n```",
    "`<img src=x onerror=alert(1)>`",
    "<<script>script>alert(1)<</script>/script>",
    "<p style='background:url(javascript:alert(1))'>j</p>",
]


async def test_the_markdown_renderer_never_yields_markup_that_runs(tab: Tab) -> None:
    """Every attack, rendered by the page's own module into the live document."""
    await tab.open()
    found = await tab.page.evaluate(
        r"""async (attacks) => {
            const { markdown } = await import('/js/markdown.js');
            const box = document.createElement('div');
            document.body.append(box);
            for (const attack of attacks) box.append(markdown(attack));
            await new Promise((resolve) => setTimeout(resolve, 300));  // for any onload
            const allowed = new Set(['P', 'BR', 'STRONG', 'EM', 'DEL', 'CODE', 'PRE',
                'BLOCKQUOTE', 'UL', 'OL', 'LI', 'A', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'HR',
                'TABLE', 'THEAD', 'TBODY', 'TR', 'TH', 'TD']);
            return [...box.querySelectorAll('*')].flatMap((el) => [
                ...(allowed.has(el.tagName) ? [] : [el.tagName]),
                ...[...el.attributes].map((a) => a.name + '=' + a.value).filter((a) =>
                    !/^(href=https?:\/\/|title=|target=_blank$|rel=noopener noreferrer nofollow$)/
                        .test(a)),
            ]);
        }""",
        ATTACKS,
    )
    assert found == []
    assert tab.dialogs == []


# Keyboard, labels, a phone


async def test_keyboard_alone_signs_in_and_sends_with_enter(tab: Tab, web: WebWorld) -> None:
    token = await web.token("ada")
    await tab.open()
    keyboard = tab.page.keyboard
    await expect(tab.page.get_by_label("Token")).to_be_focused()
    await keyboard.type(token)
    await keyboard.press("Enter")
    box = tab.page.get_by_label("Message to your coach")
    await expect(box).to_be_focused()
    await expect(tab.page.locator("#connection")).to_have_text("Connected")

    await keyboard.type("first line")
    await keyboard.press("Shift+Enter")
    await keyboard.type("second line")
    assert await box.input_value() == "first line\nsecond line"  # Shift+Enter did not send
    await keyboard.press("Enter")
    await expect(tab.coach().locator(".body")).to_have_text("Coach: first linesecond line")
    assert await tab.coach().locator(".body").inner_text() == "Coach: first line\nsecond line"
    assert await tab.page.locator(".message.you .body").inner_text() == "first line\nsecond line"
    await expect(box).to_have_value("")

    # Tab order: round the page from its first link, every control reached, named, outlined.
    reached: list[dict[str, Any]] = []
    for _ in range(40):  # more than twice round
        await keyboard.press("Tab")
        if (focused := await tab.page.evaluate(_FOCUSED))["tag"] != "BODY":
            reached.append(focused)
    ids = [r["id"] for r in reached]
    assert "skip" in ids, ids
    ids = ids[ids.index("skip") :]
    for control in ("sign-out", "message", "send", "goal-text", "meeting-when", "link-input"):
        assert control in ids, f"Tab never reaches #{control}: {ids}"
    assert ids.index("message") < ids.index("send") < ids.index("goal-text")
    for r in reached:
        assert r["name"], f"a control without a name: {r}"
        assert r["outline"] != "none", f"focus is not visible on {r}"


_FOCUSED = """() => {
    const el = document.activeElement;
    const labels = el.labels ? [...el.labels].map((l) => l.textContent.trim()) : [];
    const name = el.getAttribute('aria-label') || labels.join(' ') ||
        (el.tagName === 'BUTTON' || el.tagName === 'A' ? el.textContent.trim() : '') ||
        el.getAttribute('aria-labelledby') && document.getElementById(
            el.getAttribute('aria-labelledby'))?.textContent.trim() || '';
    return {id: el.id, tag: el.tagName, name, outline: getComputedStyle(el).outlineStyle};
}"""


async def test_every_control_has_a_name(tab: Tab, web: WebWorld) -> None:
    token = await web.token("ada")
    headers = {"Authorization": f"Bearer {token}"}
    await web.post("/api/v1/goals", headers, {"text": "Run 5k"})
    await web.post("/api/v1/meetings", headers, {"when": "tomorrow 9am weekly"})
    await tab.sign_in(token)
    await expect(tab.page.locator("#meetings li")).not_to_have_count(0)
    await expect(tab.page.locator("#phase")).to_be_visible()
    controls = await tab.page.evaluate(
        """() => [...document.querySelectorAll('button, input, textarea, select, a[href]')]
            .filter((el) => el.checkVisibility())
            .map((el) => [el.outerHTML, el.getAttribute('aria-label') ||
                          [...(el.labels || [])].map((l) => l.textContent).join(' ').trim() ||
                          el.textContent.trim()])"""
    )
    assert len(controls) >= 12
    assert [html for html, name in controls if not name] == []
    assert await tab.page.get_by_role("button", name="Done: goal 1, Run 5k").count() == 1


async def test_a_phone_width_page_has_no_sideways_scroll(
    browser: Browser, web: WebWorld, fake: FakeAnthropic
) -> None:
    table = "| a | b | c | d | e | f |\n|---|---|---|---|---|---|\n|" + " cellcell |" * 12
    fake.reply = f"A long link: https://example.com/{'a' * 200}\n\n```\n{'x' * 300}\n```\n\n{table}"
    token = await web.token("ada")
    headers = {"Authorization": f"Bearer {token}"}
    await web.post("/api/v1/goals", headers, {"text": "a goal with a very long word " + "g" * 120})
    context = await browser.new_context(viewport={"width": 360, "height": 740})
    try:
        tab = Tab(await context.new_page(), web)
        await tab.sign_in(token)
        assert await tab.page.locator("meta[name=viewport]").get_attribute("content") == (
            "width=device-width, initial-scale=1"
        )
        await tab.send("and a long word of my own " + "w" * 150)
        await expect(tab.coach().locator("table")).to_be_visible()
        wide, shown = await tab.page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert wide <= shown <= 360, (wide, shown)
        assert tab.errors == []
    finally:
        await context.close()


# The fallback and the panels


async def test_without_the_socket_a_reply_streams_over_http(
    tab: Tab, web: WebWorld, fake: FakeAnthropic
) -> None:
    async def refuse(socket: Any) -> None:
        await socket.close(code=1011)

    await tab.page.route_web_socket(re.compile(r".*/api/v1/chat/ws.*"), refuse)
    words = [f"step{n}" for n in range(30)]
    fake.reply, fake.token_delay = " ".join(words), 0.05
    token = await web.token("ada")
    await tab.open()
    await tab.page.get_by_label("Token").fill(token)
    await tab.page.get_by_label("Token").press("Enter")
    await expect(tab.page.locator("#connection")).to_have_text(re.compile("reconnecting", re.I))

    await tab.send("over http please")
    await tab.page.wait_for_function(streaming("step0", "step29"), timeout=WAIT_MS)
    await expect(tab.coach().locator(".body")).to_have_text(" ".join(words))
    assert tab.frames == []


async def test_a_socket_lost_mid_reply_reconnects_and_shows_the_whole_reply(
    tab: Tab, web: WebWorld, fake: FakeAnthropic
) -> None:
    words = [f"part{n}" for n in range(30)]
    fake.reply, fake.token_delay = " ".join(words), 0.05
    sockets: list[WebSocketRoute] = []

    def cut_the_first_mid_reply(page_side: WebSocketRoute) -> None:
        sockets.append(page_side)
        server_side = page_side.connect_to_server()
        if len(sockets) > 1:
            return  # the page's reconnection passes untouched

        async def relay(message: str | bytes) -> None:
            if page_side not in sockets:
                return
            page_side.send(message)
            if "response_chunk" in str(message):
                sockets.remove(page_side)
                await page_side.close(code=4000, reason="cut by the test")

        server_side.on_message(relay)

    await tab.page.route_web_socket(re.compile(r".*/api/v1/chat/ws.*"), cut_the_first_mid_reply)
    await tab.sign_in(await web.token("ada"))
    await tab.send("keep going")
    await expect(tab.coach()).to_contain_text("The connection dropped")
    await expect(tab.page.locator("#connection")).to_have_text(re.compile("reconnecting", re.I))
    await expect(tab.page.locator("#connection")).to_have_text("Connected")
    await expect(tab.coach().locator(".body")).to_have_text(" ".join(words))  # from history
    await expect(tab.page.locator(".message.you")).to_have_count(1)


async def test_goals_and_meetings_from_the_page(tab: Tab, web: WebWorld) -> None:
    await tab.sign_in(await web.token("ada"))
    page = tab.page
    await expect(page.get_by_text("No active goals yet.")).to_be_visible()
    await page.get_by_label("New goal").fill("Run 5k")
    await page.get_by_role("button", name="Add goal").click()
    goals = page.locator("#goals li")
    await expect(goals).to_have_count(1)
    await page.get_by_label("New goal").fill("Read daily")
    await page.get_by_label("New goal").press("Enter")
    await expect(goals).to_have_count(2)
    await page.get_by_role("button", name="Done: goal 1, Run 5k").click()
    await expect(goals).to_have_count(1)
    await expect(goals.first).to_contain_text("Read daily")

    # Progress: the goal picked, the words typed, Enter; they show as text under the goal.
    await page.get_by_label("Goal to log progress on").select_option(label="1. Read daily")
    await page.get_by_role("textbox", name="Log progress").fill("read <b>20</b> pages")
    await page.get_by_role("textbox", name="Log progress").press("Enter")
    progress = goals.first.locator(".progress")
    await expect(progress).to_contain_text("read <b>20</b> pages · 1 week in a row")
    assert await goals.first.locator("b").count() == 0
    await expect(page.get_by_role("textbox", name="Log progress")).to_have_value("")

    when = page.get_by_label("When")
    await when.fill("someday soonish")
    await when.press("Enter")
    await expect(page.locator("#meetings-error")).not_to_be_empty()
    assert await when.input_value() == "someday soonish"  # kept, to correct
    await when.fill("tomorrow 9am for 30m weekly")
    await page.get_by_role("button", name="Schedule").click()
    meetings = page.locator("#meetings li")
    await expect(meetings).not_to_have_count(0)
    await expect(page.locator("#meetings-error")).to_be_empty()
    assert await page.get_by_role("button", name="Cancel series").count() >= 1  # weekly

    await page.get_by_role("button", name="Start tracking").click()
    await expect(page.locator("#access-next")).to_contain_text("08:30")
    await page.get_by_role("button", name=re.compile(r"^Cancel series: meeting 1,")).click()
    await expect(meetings).to_have_count(0)
    await expect(page.get_by_text("No upcoming meetings.")).to_be_visible()
    await expect(page.locator("#access-headline")).to_have_text("Your coach is not reachable now.")


async def test_a_proposal_shows_under_the_reply_and_confirm_adds_the_goal(
    tab: Tab, web: WebWorld, fake: FakeAnthropic
) -> None:
    from tests.fakes.anthropic_api import Reply, ToolUse

    summary = "Add the goal “Run a 5k <img src=x onerror=alert(1)>”"
    fake.enqueue(
        ToolUse((("propose_goal", {"text": "Run a 5k <img src=x onerror=alert(1)>"}),),
                text="Love it!"),
        Reply("Confirm it below."),
    )  # fmt: skip
    await tab.sign_in(await web.token("ada"))
    await tab.send("I want to run a 5k")
    card = tab.page.locator("#messages .message.proposal")
    await expect(card).to_contain_text(f"{summary}. Nothing changes unless you confirm.")
    await expect(tab.coach(-2).locator(".body")).to_have_text("Love it!\n\nConfirm it below.")
    await tab.page.get_by_role("button", name=f"Confirm: {summary}").click()
    await expect(card.get_by_role("status")).to_have_text(
        "Goal added: Run a 5k <img src=x onerror=alert(1)>."
    )
    assert await card.get_by_role("button").count() == 0  # answered once
    await expect(tab.page.locator("#goals li")).to_have_count(1)  # the panel follows
    assert tab.dialogs == [] and await tab.page.locator("img").count() == 0
