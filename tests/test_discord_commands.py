"""`/coach` app commands against the fake Discord: each subcommand, autocomplete, deferral,
the confirmation buttons (also after a restart), and the explicit `discord-sync`."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bots.commands import Reply, run_command
from bots.discord import confirm as discord_confirm
from bots.discord.confirm import (
    ALREADY_SETTLED,
    CONFIRM_ID,
    CONFIRM_TIMEOUT_SECONDS,
    EXPIRED,
    KEEP_ID,
    NO_ANSWER,
    NOT_YOURS,
    NOTHING_DELETED,
)
from bots.discord.render import EXPORT_FILENAME
from bots.discord.run import sync_commands
from core.models import GoalStatus, Identity, Platform
from tests.discord_world import World, discord_world
from tests.fakes.discord_api import EPHEMERAL, FakeMessage, InteractionResponse
from tests.support import T0


def text_of(message: FakeMessage) -> str:
    """What the user sees: content and embed titles, descriptions, footers."""
    parts = [message.content]
    for embed in message.embeds:
        parts += [embed.get("title", ""), embed.get("description", "")]
        parts.append(embed.get("footer", {}).get("text", ""))
    return "\n".join(parts)


async def ask(world: World, subcommand: str, options: dict[str, Any] | None = None,
              **where: Any) -> FakeMessage:
    _, message = await world.command(options, subcommand=subcommand, **where)
    assert message.ephemeral, f"/coach {subcommand} answered publicly"
    return message


async def choices(world: World, focused: str, options: dict[str, Any], **where: Any) -> list[Any]:
    interaction = world.discord.autocomplete_interaction("coach", options, focused, **where)
    await world.discord.dispatch("INTERACTION_CREATE", interaction)
    (response,) = await world.discord.wait_for(lambda: world.discord.responses_to(interaction))
    assert response.type == 8
    return [(c["name"], c["value"]) for c in response.data["choices"]]


async def test_help_access_and_goals(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        help_text = text_of(await ask(w, "help"))
        assert "/coach goal add" in help_text and "/coach forget" in help_text
        assert "goal setting" in text_of(await ask(w, "access"))
        assert "No active goals yet" in text_of(await ask(w, "goals"))


async def test_goal_add_done_drop_with_autocomplete(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        added = await ask(w, "add", {"goal": "Run 5 km by March"}, group="goal")
        assert "Saved: Run 5 km by March" in text_of(added)
        await ask(w, "add", {"goal": "Read 12 books"}, group="goal")
        listed = text_of(await ask(w, "goals"))
        assert "1. Run 5 km by March" in listed and "2. Read 12 books" in listed

        offered = await choices(w, "number", {"number": "read"}, group="goal", subcommand="done")
        assert offered == [("2. Read 12 books", 2)]

        done = await ask(w, "done", {"number": 2}, group="goal")
        assert "Done: Read 12 books" in text_of(done)
        dropped = await ask(w, "drop", {"number": 1}, group="goal")
        assert "Dropped: Run 5 km by March" in text_of(dropped)
        missing = await ask(w, "done", {"number": 1}, group="goal")
        assert missing.content.startswith("⚠️") and "no goals" in missing.content
        goals = await w.coach.goals(w.identity(w.alice), include_closed=True)
        assert {g.status for g in goals} == {GoalStatus.DONE, GoalStatus.DROPPED}


async def test_log_progress_with_goal_autocomplete_shows_it_under_the_goal(
    tmp_path: Path,
) -> None:
    async with discord_world(tmp_path) as w:
        await ask(w, "add", {"goal": "Run 5k"}, group="goal")
        await ask(w, "add", {"goal": "Read 12 books"}, group="goal")
        offered = await choices(w, "goal", {"goal": "run", "text": ""}, subcommand="log")
        assert offered == [("1. Run 5k", 1)]

        logged = text_of(await ask(w, "log", {"goal": 1, "text": "ran *3* km"}))
        assert "Logged for goal 1 (Run 5k): ran \\*3\\* km." in logged  # as typed, escaped
        assert "On the board this week" in logged
        listed = text_of(await ask(w, "goals"))
        assert "1. Run 5k\n  ↳ last Mon 23 Nov 2026: ran \\*3\\* km · 🔥 1 week in a row" in listed
        assert "2. Read 12 books\n" in listed  # nothing logged: no line under it

        wrong = await ask(w, "log", {"goal": 3, "text": "read"})
        assert wrong.content.startswith("⚠️") and "(1 to 2)" in wrong.content


async def test_schedule_meetings_cancel_in_discord_time(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        booked = await ask(w, "schedule", {"when": "tomorrow 9am", "minutes": 30, "weekly": True})
        start = int((T0 + timedelta(days=1)).timestamp())
        last = int((T0 + timedelta(days=1, weeks=7)).timestamp())
        assert booked.content == (
            f"Booked weekly: <t:{start}:F>, 30 min, and at the same time every week until "
            f"<t:{last}:F>: 8 meetings in all. See all your meetings with /coach meetings."
        )
        assert booked.embeds == []  # the list is /coach meetings' answer

        listed = text_of(await ask(w, "meetings"))
        assert listed.count("(weekly)") == 8

        offered = await choices(w, "number", {"number": ""}, subcommand="cancel")
        assert len(offered) == 8 and offered[0] == ("1. Tue 24 Nov 2026, 09:00 (UTC)", 1)

        cancelled = await ask(w, "cancel", {"number": 2})
        assert "Cancelled:" in text_of(cancelled) and text_of(cancelled).count("(weekly)") == 7
        series = await ask(w, "cancel", {"number": 1, "series": True})
        assert "Cancelled: 7 meetings of the series" in text_of(series)
        assert await w.coach.meetings(w.identity(w.alice)) == []

        bad = await ask(w, "schedule", {"when": "yesterday 9am"})
        assert bad.content.startswith("⚠️ That time has already passed: Sun 22 Nov 2026")
        vague = await ask(w, "schedule", {"when": "tomorrow 9am sharp"})
        assert vague.content.startswith("⚠️ I didn't understand 'sharp'. Leave it out")


async def test_track_then_access_then_timezone(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        refused = await ask(w, "track")
        assert refused.content.startswith("⚠️") and "/coach goal add" in refused.content
        await ask(w, "add", {"goal": "Run"}, group="goal")
        await ask(w, "schedule", {"when": "tomorrow 9am"})
        tracking = await ask(w, "track")
        opens = int((T0 + timedelta(days=1, minutes=-30)).timestamp())
        assert tracking.content == (
            "⏸️ You're in tracking now: I'm available from 30 minutes before a meeting until "
            f"60 minutes after it ends. Your next window opens <t:{opens}:F>."
        )

        access = await ask(w, "access")
        assert access.content.startswith("⏸️") and f"<t:{opens}:F>" in access.content

        offered = await choices(w, "name", {"name": "paris"}, subcommand="timezone")
        assert offered == [("Europe/Paris", "Europe/Paris")]
        set_zone = await ask(w, "timezone", {"name": "Europe/Paris"})
        assert "Timezone set to Europe/Paris" in set_zone.content
        assert "Europe/Paris" in (await ask(w, "timezone")).content
        assert "09:30 (Europe/Paris)" in (await ask(w, "access")).content

        back = await ask(w, "goalsetting")
        assert "goal setting" in back.content


async def test_history_is_deferred_and_paged(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        assert "No conversation yet" in (await ask(w, "history")).content
        for n in range(6):
            asked = await w.say(f"message {n}")
            await w.final_answer(asked, lambda text, n=n: f"Coach: message {n}" in text)
        interaction, first = await w.command({}, subcommand="history")
        assert [r.type for r in w.discord.responses_to(interaction)] == [5]  # deferred
        assert "History, page 1 of 2" in text_of(first) and "history page:2" in text_of(first)
        second = await ask(w, "history", {"page": 2})
        assert "page 2 of 2" in text_of(second) and "message 0" in text_of(second)
        too_far = await ask(w, "history", {"page": 3})
        assert too_far.content.startswith("⚠️")


async def test_export_is_a_json_file(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        await ask(w, "add", {"goal": "Run"}, group="goal")
        interaction, answer = await w.command({}, subcommand="export")
        assert [r.type for r in w.discord.responses_to(interaction)] == [5]  # deferred
        assert answer.ephemeral
        assert [a["filename"] for a in answer.data["attachments"]] == [EXPORT_FILENAME]


async def test_slow_commands_are_deferred(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        w.bot.commands.defer_after = 0.0  # as if the store were slow
        interaction, answer = await w.command({}, subcommand="goals")
        assert [r.type for r in w.discord.responses_to(interaction)] == [5]
        assert answer.ephemeral and "No active goals yet" in text_of(answer)


def button(message: FakeMessage, kind: str) -> str:
    """The custom_id of the message's CONFIRM_ID or KEEP_ID button."""
    (custom_id,) = [
        c["custom_id"]
        for row in message.data["components"]
        for c in row["components"]
        if c["custom_id"] == kind or c["custom_id"].startswith(f"{kind}:")
    ]
    return custom_id


def buttons(message: FakeMessage) -> list[str]:
    """The labels the user sees under the message."""
    return [c["label"] for row in message.data["components"] for c in row["components"]]


QUESTION_BUTTONS = ["Yes, delete", "Keep everything"]


def clicking(
    world: World, message: FakeMessage, custom_id: str, *, user_id: int | None = None
) -> dict[str, Any]:
    """A click (by Alice unless told), carrying the message as it is now: built before
    another click is answered, it is the second half of a double click."""
    return world.discord.component_interaction(message.id, custom_id, user_id=user_id)


async def press(world: World, interaction: dict[str, Any]) -> InteractionResponse:
    """Send the click; the bot's one answer to it."""
    await world.discord.dispatch("INTERACTION_CREATE", interaction)
    await world.discord.wait_for(lambda: world.discord.responses_to(interaction))
    (response,) = world.discord.responses_to(interaction)
    return response


async def click(world: World, message: FakeMessage, custom_id: str) -> FakeMessage:
    response = await press(world, clicking(world, message, custom_id))
    assert response.type == 7  # the question is edited into the answer
    return world.discord.message(message.id)


async def messages_of(world: World, user_id: int) -> list[str]:
    user = await world.coach.user(world.identity(user_id))
    return [m.text for m in await world.coach.store.messages_between(user.id)]


async def test_clear_asks_first_then_deletes_history(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        asked = await w.say("remember this")
        await w.final_answer(asked, lambda text: "Coach: remember this" in text)
        question = await ask(w, "clear")
        assert question.content.startswith("⚠️") and buttons(question) == QUESTION_BUTTONS
        kept = await click(w, question, button(question, KEEP_ID))
        assert kept.content == NOTHING_DELETED and kept.data["components"] == []
        assert len(await messages_of(w, w.alice)) == 2

        question = await ask(w, "clear")
        cleared = await click(w, question, button(question, CONFIRM_ID))
        assert "2 messages deleted" in cleared.content and cleared.data["components"] == []
        assert await messages_of(w, w.alice) == []


async def test_forget_asks_first_then_deletes_everything(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        alice = w.identity(w.alice)
        await run_command(w.coach, alice, "goal add Run")
        before = await w.coach.user(alice)
        question = await ask(w, "forget")
        assert "can't be undone" in question.content
        gone = await click(w, question, button(question, CONFIRM_ID))
        assert gone.content.startswith("Everything is deleted")
        assert await w.coach.store.get_user(before.id) is None


async def test_only_the_asker_can_press_the_buttons(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        question = await ask(w, "forget")
        refusal = await press(w, clicking(w, question, button(question, CONFIRM_ID), user_id=w.bob))
        assert refusal.type == 4 and refusal.ephemeral and refusal.data["content"] == NOT_YOURS
        assert await w.coach.store.get_user((await w.coach.user(w.identity(w.alice))).id)
        assert buttons(w.discord.message(question.id)) == QUESTION_BUTTONS


# --- the buttons after a restart: a new process, no memory of the question -----------------


async def test_confirm_works_after_a_restart(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        asked = await w.say("remember this")
        await w.final_answer(asked, lambda text: "Coach: remember this" in text)
        question = await ask(w, "clear")
        first_bot = w.bot
        await w.restart()
        assert w.bot is not first_bot and first_bot.is_closed()

        cleared = await click(w, question, button(question, CONFIRM_ID))
        assert "2 messages deleted" in cleared.content and cleared.data["components"] == []
        assert await messages_of(w, w.alice) == []


async def test_after_a_restart_only_the_asker_can_answer(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        alice = w.identity(w.alice)
        await run_command(w.coach, alice, "goal add Run")
        question = await ask(w, "forget")
        await w.restart()

        for kind in (CONFIRM_ID, KEEP_ID):
            refusal = await press(w, clicking(w, question, button(question, kind), user_id=w.bob))
            assert refusal.type == 4 and refusal.ephemeral
            assert refusal.data["content"] == NOT_YOURS
        assert [g.text for g in await w.coach.goals(alice)] == ["Run"]
        assert buttons(w.discord.message(question.id)) == QUESTION_BUTTONS

        gone = await click(w, question, button(question, CONFIRM_ID))  # Alice still can
        assert gone.content.startswith("Everything is deleted")


async def test_keep_after_a_restart_deletes_nothing_and_settles_the_question(
    tmp_path: Path,
) -> None:
    async with discord_world(tmp_path) as w:
        alice = w.identity(w.alice)
        await run_command(w.coach, alice, "goal add Run")
        question = await ask(w, "forget")
        # "Yes" clicked while "keep" was on its way: it cannot turn "keep" into "delete".
        racing = clicking(w, question, button(question, CONFIRM_ID))
        await w.restart()

        kept = await click(w, question, button(question, KEEP_ID))
        assert kept.content == NOTHING_DELETED and kept.data["components"] == []
        late = await press(w, racing)
        assert late.type == 4 and late.ephemeral and late.data["content"] == ALREADY_SETTLED
        assert [g.text for g in await w.coach.goals(alice)] == ["Run"]
        assert w.discord.message(question.id).content == NOTHING_DELETED


async def test_an_expired_question_deletes_nothing_and_says_so(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        asked = await w.say("remember this")
        await w.final_answer(asked, lambda text: "Coach: remember this" in text)
        question = await ask(w, "clear")
        w.clock.advance(seconds=CONFIRM_TIMEOUT_SECONDS)  # the coach's clock: no waiting

        expired = await click(w, question, button(question, CONFIRM_ID))
        assert expired.content == EXPIRED.format(action="clear")
        assert "expired" in expired.content and "`/coach clear` again" in expired.content
        assert expired.data["components"] == []
        assert len(await messages_of(w, w.alice)) == 2

        again = await ask(w, "clear")  # doing what it says works
        await w.restart()
        w.clock.advance(seconds=CONFIRM_TIMEOUT_SECONDS - 1)
        cleared = await click(w, again, button(again, CONFIRM_ID))
        assert "2 messages deleted" in cleared.content
        assert await messages_of(w, w.alice) == []


async def test_a_second_click_does_not_repeat_the_action(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        asked = await w.say("remember this")
        await w.final_answer(asked, lambda text: "Coach: remember this" in text)
        question = await ask(w, "clear")
        confirm = button(question, CONFIRM_ID)
        # A double click: both clicks carry the message as it was, buttons and all.
        second = clicking(w, question, confirm)
        cleared = await click(w, question, confirm)
        assert "2 messages deleted" in cleared.content and cleared.data["components"] == []

        asked = await w.say("remember this too")
        await w.final_answer(asked, lambda text: "Coach: remember this too" in text)
        await w.restart()  # the claim is in the store, not in the process
        again = await press(w, second)
        assert again.type == 4 and again.ephemeral and again.data["content"] == ALREADY_SETTLED
        assert await messages_of(w, w.alice) == ["remember this too", "Coach: remember this too"]
        assert w.discord.message(question.id).content == cleared.content


async def test_an_unanswered_question_says_so_at_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discord_confirm, "CONFIRM_TIMEOUT_SECONDS", 0.1)  # not 2 minutes
    async with discord_world(tmp_path) as w:
        asked = await w.say("remember this")
        await w.final_answer(asked, lambda text: "Coach: remember this" in text)
        question = await ask(w, "clear")
        late = clicking(w, question, button(question, CONFIRM_ID))
        await w.discord.wait_for(lambda: w.discord.message(question.id).content == NO_ANSWER)
        assert w.discord.message(question.id).data["components"] == []

        answer = await press(w, late)  # clicked just as the question closed
        assert answer.type == 4 and answer.ephemeral and answer.data["content"] == ALREADY_SETTLED
        assert len(await messages_of(w, w.alice)) == 2


async def test_commands_work_in_dms(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        answer = await ask(w, "add", {"goal": "Sleep by 23:00"}, group="goal", dm=True)
        assert answer.flags & EPHEMERAL and "Saved: Sleep by 23:00" in text_of(answer)


async def test_discord_sync_registers_the_group_and_start_never_does(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        assert not [c for c in w.discord.calls if c.path.endswith("/commands")]
        with w.discord.install():
            names = await sync_commands(w.coach, w.coach.settings, w.discord.guild_id)
            assert names == ["coach"]
            await sync_commands(w.coach, w.coach.settings, None)
    (guild_command,) = w.discord.commands[w.discord.guild_id]
    (global_command,) = w.discord.commands[None]
    subcommands = {option["name"] for option in global_command["options"]}
    assert subcommands == {
        "help", "access", "history", "clear", "goals", "goal", "log", "commitments",
        "schedule", "meetings", "cancel", "track", "goalsetting", "timezone", "memory", "link",
        "unlink", "web", "calendar", "export", "forget",
    }
    assert guild_command["options"] == global_command["options"]
    goal = next(o for o in global_command["options"] if o["name"] == "goal")
    done = next(o for o in goal["options"] if o["name"] == "done")
    assert done["options"][0]["autocomplete"] is True and done["options"][0]["type"] == 4
    log = next(o for o in global_command["options"] if o["name"] == "log")
    assert [(o["name"], o["type"], o.get("autocomplete", False)) for o in log["options"]] == [
        ("goal", 4, True),
        ("text", 3, False),
    ]


async def test_a_link_code_from_another_platform_joins_the_two_users(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        slack = Identity(platform=Platform.SLACK, external_id="U_ADA")
        await run_command(w.coach, slack, "/goal add Run 5k")
        made = await run_command(w.coach, slack, "/link")
        assert isinstance(made, Reply)
        code = made.text.split("Your link code: ")[1].split(".")[0]
        answer = await ask(w, "link", {"code": code})
        assert "are one Momentum user now" in answer.content
        goals = await ask(w, "goals")
        assert "Run 5k" in goals.content + json.dumps(goals.embeds)
        again = await ask(w, "link", {"code": code})
        assert "expired" in again.content or "used" in again.content


async def test_coach_web_gives_a_one_time_sign_in_link_only_the_user_sees(
    tmp_path: Path,
) -> None:
    async with discord_world(tmp_path, web_enabled=True,
                             web_public_url="https://coach.example") as w:  # fmt: skip
        answer = await ask(w, "web")  # ask() checks it is ephemeral
        code = answer.content.split("https://coach.example/#sign-in=")[1].split()[0]
        assert await w.coach.keys.sign_in(code) is not None
        assert await w.coach.keys.sign_in(code) is None  # once


async def test_coach_calendar_gives_a_feed_address_only_the_user_sees(tmp_path: Path) -> None:
    async with discord_world(tmp_path, web_enabled=True,
                             web_public_url="https://coach.example") as w:  # fmt: skip
        answer = await ask(w, "calendar")  # ask() checks it is ephemeral
        key = answer.content.split("https://coach.example/api/v1/calendar/")[1].split(".ics")[0]
        assert "webcal://coach.example/api/v1/calendar/" in answer.content
        assert await w.coach.keys.calendar_user_id(key) is not None
