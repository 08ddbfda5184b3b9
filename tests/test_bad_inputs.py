"""The bad-input corpus (tests/data/bad_inputs.json), each case through the real path.

Surfaces: `coach` (Coach.reply on SQLite, the anthropic SDK against FakeAnthropic, a fake
clock), `console` (the terminal adapter, for commands and chat), `slack_dm`, `slack_command`
and `slack_raw` (signed HTTP requests at the real Bolt app, tests/slack_harness.py), and
`discord_message`, `discord_command` and `discord_raw` (stock discord.py against FakeDiscord,
tests/discord_world.py). Expected outcomes are data in the corpus; every key present in a
case's `expect` is asserted exactly. Two rules hold for every case on a platform: nothing the
bot wrote can ping anyone, and after a malformed payload a normal message is still answered.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from bots.commands import run_command
from bots.console import Console
from bots.slack.serve import EVENTS_PATH
from core.coach import Coach
from core.events import Chunk, Denied, Done, Failed
from core.models import Identity, Phase
from core.persona import PHASE_GUIDANCE
from core.store.sqlite import SQLiteStore
from tests.discord_world import World, discord_world
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.discord_api import LOADING, FakeMessage
from tests.fakes.slack_api import (
    USER_ID,
    block_actions_body,
    dm_channel_id,
    json_body,
    message_event,
    sign_request,
    slash_command_body,
)
from tests.slack_harness import SECRET, Deployment, deployment, identity
from tests.support import FakeClock, coach_on, collect, person

CORPUS = Path(__file__).parent / "data" / "bad_inputs.json"
CASES: list[dict[str, Any]] = json.loads(CORPUS.read_text(encoding="utf-8"))["cases"]
DM = dm_channel_id(USER_ID)
# Slack markup that would ping or link if it reached Slack unescaped.
SLACK_PINGS = ("<!", "<@", "<#", "<http")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def text_of(spec: Any) -> str:
    """A corpus text: a string, a `{"repeat": unit, "times": n}`, or a list of those."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, list):
        return "".join(text_of(part) for part in spec)
    return str(spec["repeat"]) * int(spec["times"])


def llm_reply(case: dict[str, Any]) -> str | None:
    return text_of(case["llm_reply"]) if "llm_reply" in case else None


def test_the_corpus_is_well_formed() -> None:
    ids = [case["id"] for case in CASES]
    assert len(ids) == len(set(ids)), "duplicate ids"
    for case in CASES:
        assert {"id", "category", "surface", "input", "expect"} <= case.keys(), case["id"]
        assert case["surface"] in RUNNERS, case["id"]


def marked(case: dict[str, Any]) -> Any:
    """A case whose expected outcome the code does not meet yet fails strictly as xfail: it
    turns into a failure the day the bug is fixed, so the mark must then go."""
    if "known_bug" not in case:
        return case
    return pytest.param(case, marks=pytest.mark.xfail(reason=case["known_bug"], strict=True))


@pytest.mark.parametrize("case", [marked(c) for c in CASES], ids=[c["id"] for c in CASES])
async def test_bad_input(case: dict[str, Any], tmp_path: Path) -> None:
    await RUNNERS[case["surface"]](case, tmp_path)


# --- The Coach and the console -----------------------------------------------------------


@asynccontextmanager
async def coach_for(
    case: dict[str, Any], tmp_path: Path
) -> AsyncIterator[tuple[Coach, FakeAnthropic]]:
    """The Coach on a fresh SQLite file, its model answering as the case says."""
    store = await SQLiteStore.open(str(tmp_path / "coach.db"))
    try:
        async with (
            FakeAnthropic(reply=llm_reply(case)) as llm,
            coach_on(store, llm.base_url, FakeClock()) as coach,
        ):
            yield coach, llm
    finally:
        await store.close()


async def run_coach(case: dict[str, Any], tmp_path: Path) -> None:
    expect = case["expect"]
    async with coach_for(case, tmp_path) as (coach, llm):
        for line in case.get("setup", []):
            await run_command(coach, person(), line)
        events = await collect(coach, person(), text_of(case["input"]))
        kinds = [type(e).__name__ for e in events if not isinstance(e, Chunk)]
        if "events" in expect:
            assert kinds == expect["events"]
        for key, kind in (("failed", Failed), ("denied", Denied), ("done", Done)):
            if key in expect:
                [event] = [e for e in events if isinstance(e, kind)]
                assert said(event) == text_of(expect[key])
        await check_model_and_store(coach, llm, expect)


def said(event: Failed | Denied | Done) -> str:
    """The sentence an event stands for (a refusal is phrased in the user's time)."""
    if isinstance(event, Failed):
        return event.user_text
    if isinstance(event, Denied):
        return event.standing.describe()
    return event.text


async def check_model_and_store(coach: Coach, llm: FakeAnthropic, expect: dict[str, Any]) -> None:
    if "llm_called" in expect:
        assert bool(llm.requests) == expect["llm_called"]
    if "llm_user_text" in expect:
        assert llm.last_request.last_user_text == text_of(expect["llm_user_text"])
        [user_turn] = [m for m in llm.last_request.body["messages"] if m["role"] == "user"]
        assert text_of(expect["llm_user_text"]) in str(user_turn["content"])
        if len(text_of(expect["llm_user_text"])) > 20:  # short words occur in any prompt
            # The user's words reach the model as user content only, never in the system prompt.
            assert text_of(expect["llm_user_text"]) not in llm.last_request.system_text
    if "llm_phase" in expect:
        assert PHASE_GUIDANCE[Phase(expect["llm_phase"])] in llm.last_request.system_text
    user = await coach.user(person())
    if "phase" in expect:
        assert user.phase.value == expect["phase"]
    if "stored" in expect:
        messages = await coach.store.messages_between(user.id)
        stored = [[m.role.value, m.text] for m in messages]
        assert stored == [[role, text_of(text)] for role, text in expect["stored"]]
    if "goals" in expect:
        assert [g.text for g in await coach.goals(person())] == expect["goals"]


async def run_console(case: dict[str, Any], tmp_path: Path) -> None:
    """A line typed at the terminal (a command or a chat message): the exact output."""
    expect = case["expect"]
    async with coach_for(case, tmp_path) as (coach, llm):
        out = io.StringIO()
        console = Console(coach, stdin=io.StringIO(), stdout=out)
        console.identity = person()
        await already_welcomed(coach, person())
        for line in case.get("setup", []):
            await console.handle(line)
        out.seek(0)
        out.truncate()
        await console.handle(text_of(case["input"]))
        if "output" in expect:
            assert out.getvalue() == text_of(expect["output"])
        await check_model_and_store(coach, llm, expect)


async def already_welcomed(coach: Coach, who: Identity) -> None:
    """The welcome is covered elsewhere; here a reply is the coach's words alone."""
    user = await coach.user(who)
    await coach.store.update_user(user.id, welcomed=True)


# --- Slack ---------------------------------------------------------------------------------


def slack_writes(d: Deployment) -> list[str]:
    """Everything the bot wrote to Slack, as JSON: text, streamed markdown and blocks."""
    return [json.dumps(call.args, ensure_ascii=False) for call in d.fake.calls]


def assert_no_slack_pings(d: Deployment, response_texts: list[str]) -> None:
    for written in [*slack_writes(d), *response_texts]:
        assert not any(markup in written for markup in SLACK_PINGS), written
    assert not any(call.args.get("link_names") for call in d.fake.calls)


def thread_replies(d: Deployment, event: dict[str, Any]) -> list[Any]:
    """The bot's messages under the user's. (The fake stores only the bot's messages, and its
    ts counter is not the event builder's: filtering on `ts != event ts` could drop a reply.)"""
    return d.fake.messages(DM, thread_ts=str(event["ts"]))


async def run_slack_dm(case: dict[str, Any], tmp_path: Path) -> None:
    """A DM as Slack delivers it; the coach's messages in its thread, exactly."""
    expect = case["expect"]
    native = bool(case.get("native", False))
    async with deployment(
        tmp_path, llm=FakeAnthropic(reply=llm_reply(case)), slack_native_streaming=native
    ) as d:
        await already_welcomed(d.coach, identity())
        for line in case.get("setup", []):
            await d.command(line)
        event = await d.dm(text_of(case["input"]))
        replies = thread_replies(d, event)
        if "replies" in expect:
            assert [m.text for m in replies] == [text_of(t) for t in expect["replies"]]
            if not native:
                assert [m.blocks for m in replies] == [
                    [{"type": "markdown", "text": text_of(t)}] for t in expect["replies"]
                ]
        if "llm_user_text" in expect:
            assert d.llm.last_request.last_user_text == text_of(expect["llm_user_text"])
        if "llm_called" in expect:
            assert bool(d.llm.requests) == expect["llm_called"]
        if "history" in expect:  # the message bodies of /coach history, newest first
            response = await d.command("history")
            sections = [b["text"]["text"] for b in response["blocks"][1:] if b["type"] == "section"]
            assert sections == [text_of(t) for t in expect["history"]]
        assert_no_slack_pings(d, [])


async def run_slack_command(case: dict[str, Any], tmp_path: Path) -> None:
    """`/coach <text>` as Slack sends it (&, < and > as entities); the ephemeral response."""
    expect = case["expect"]
    async with deployment(tmp_path, llm=FakeAnthropic(reply=llm_reply(case))) as d:
        for line in case.get("setup", []):
            await d.command(line)
        response = await d.command(text_of(case["input"]))
        if "text" in expect:
            assert response["text"] == text_of(expect["text"])
        if "sections" in expect:
            sections = [b["text"]["text"] for b in response["blocks"] if b["type"] == "section"]
            assert sections == [text_of(s) for s in expect["sections"]]
        if "goals" in expect:
            assert [g.text for g in await d.coach.goals(identity())] == expect["goals"]
        assert_no_slack_pings(d, [json.dumps(r) for r in d.fake.responses("cmd")])


async def run_slack_raw(case: dict[str, Any], tmp_path: Path) -> None:
    """A malformed request at the endpoint: the exact status, nothing said, still serving."""
    expect = case["expect"]
    spec = case["input"]
    async with deployment(tmp_path) as d:
        raw, headers = slack_request(d, spec)
        async with d.http.post(d.url + EVENTS_PATH, data=raw, headers=headers) as response:
            await response.read()
            status = response.status
        await d.bot.wait_idle()
        assert status == expect["status"]
        if "reply" in expect:
            [reply] = [m for m in d.fake.messages(DM) if m.thread_ts][-1:]
            assert reply.text == text_of(expect["reply"])
        elif expect.get("nothing_posted", True):
            assert not [c for c in d.fake.calls if c.method.startswith("chat.")]
        if "response" in expect:
            [answer] = d.fake.responses("raw")
            assert answer["text"].startswith(expect["response"])
        event = await d.dm("Still there?")
        [reply] = thread_replies(d, event)[-1:]
        assert reply.text == "Coach: Still there?"
        assert_no_slack_pings(d, [])


def slack_request(d: Deployment, spec: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The body and headers a case describes: an edited DM event, a form, raw bytes."""
    kind = spec["kind"]
    if kind == "event":
        body: Any = message_event(spec.get("text", "hi"))
        for key in spec.get("drop", []):
            body["event"].pop(key)
        body["event"].update(spec.get("set", {}))
        if "envelope" in spec:
            body.update(spec["envelope"])
        raw = json_body(body)
    elif kind == "slash_command":
        form = dict(parse_qsl(slash_command_body(
            "/coach", spec.get("text", ""), response_url=d.fake.response_url("raw")
        ).decode(), keep_blank_values=True))
        for key in spec.get("drop", []):
            form.pop(key)
        raw = urlencode(form).encode()
    elif kind == "block_actions":
        raw = block_actions_body(
            spec["action_id"], spec.get("value"), response_url=d.fake.response_url("raw")
        )
    else:
        raw = spec["body"].encode()
    secret = spec.get("secret", SECRET)
    timestamp = spec.get("age_seconds")
    headers = sign_request(
        secret,
        raw,
        timestamp=None if timestamp is None else int(time.time()) - int(timestamp),
        content_type=spec.get("content_type"),
    )
    for name in spec.get("drop_headers", []):
        headers.pop(name)
    return raw, headers


# --- Discord -------------------------------------------------------------------------------


def assert_no_discord_pings(world: World) -> None:
    """Every message the bot sent or edited mentions nobody: no parse, no users, no roles
    (replied_user alone may notify the person answered)."""
    for channel in world.discord.channel_ids:
        for message in world.bot_messages(channel):
            for mentions in [message.allowed_mentions] + [
                e.get("allowed_mentions") for e in message.edits
            ]:
                assert mentions is not None, message.data
                assert mentions.get("parse") == [], mentions
                assert not mentions.get("users") and not mentions.get("roles"), mentions


async def run_discord_message(case: dict[str, Any], tmp_path: Path) -> None:
    expect = case["expect"]
    async with discord_world(tmp_path, llm_options={"reply": llm_reply(case)}) as w:
        await already_welcomed(w.coach, w.identity(w.alice))
        message_id = await w.say(text_of(case["input"]))
        wanted = [text_of(part) for part in expect["parts"]]
        # Finished: the whole reply is there, with no streaming indicator left on it.
        answer = await w.final_answer(message_id, lambda text: text.endswith(wanted[-1][-10:]))
        assert [m.content for m in answer] == wanted
        if "llm_user_text" in expect:
            assert w.llm.last_request.last_user_text == text_of(expect["llm_user_text"])
        assert_no_discord_pings(w)


async def run_discord_command(case: dict[str, Any], tmp_path: Path) -> None:
    expect = case["expect"]
    spec = case["input"]
    async with discord_world(tmp_path) as w:
        for options, subcommand, group in case.get("setup", []):
            await w.command(options, subcommand=subcommand, group=group)
        _, message = await w.command(
            spec.get("options"), subcommand=spec.get("subcommand"), group=spec.get("group")
        )
        assert message.ephemeral
        if "content" in expect:
            assert message.content == text_of(expect["content"])
        if "embed_description" in expect:
            [embed] = message.embeds
            assert embed["description"] == text_of(expect["embed_description"])
        if "goals" in expect:
            assert [g.text for g in await w.coach.goals(w.identity(w.alice))] == expect["goals"]
        assert_no_discord_pings(w)


async def run_discord_raw(case: dict[str, Any], tmp_path: Path) -> None:
    """A gateway event as a case describes it; then a normal message is still answered."""
    expect = case["expect"]
    spec = case["input"]
    async with discord_world(tmp_path) as w:
        if spec["kind"] == "message":
            payload = w.discord.message_create(spec.get("content", ""))
            payload.update(spec.get("set", {}))
            await w.discord.dispatch("MESSAGE_CREATE", payload)
            target = int(payload["id"])
            if "reply" in expect:
                answer = await w.final_answer(target, lambda text: bool(text))
                assert answer[-1].content.split("\n\n")[-1] == text_of(expect["reply"])
        else:
            interaction = w.discord.command_interaction(
                spec["command"], spec.get("options"), subcommand=spec.get("subcommand"),
                group=spec.get("group"),
            )
            await w.discord.dispatch("INTERACTION_CREATE", interaction)

            def answered() -> FakeMessage | None:
                message = w.discord.original_response(interaction)
                return message if message is not None and not message.flags & LOADING else None

            message = await w.discord.wait_for(answered)
            assert message.ephemeral
            assert message.content == text_of(expect["response"])
        follow_up = await w.say("Still there?")
        await w.final_answer(follow_up, lambda text: text.endswith("Coach: Still there?"))
        if expect.get("ignored"):
            assert w.answers_to(target) == []
        assert_no_discord_pings(w)


RUNNERS = {
    "coach": run_coach,
    "console": run_console,
    "slack_dm": run_slack_dm,
    "slack_command": run_slack_command,
    "slack_raw": run_slack_raw,
    "discord_message": run_discord_message,
    "discord_command": run_discord_command,
    "discord_raw": run_discord_raw,
}
