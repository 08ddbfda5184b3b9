"""A proposal of the coach on Discord: a message with Confirm and Decline buttons under the
reply, answered once, after a restart too, through discord.py against the fake Discord."""

from __future__ import annotations

from pathlib import Path

from bots.discord.proposals import PROPOSAL_ID
from tests.discord_world import World, discord_world
from tests.fakes.anthropic_api import Reply, ToolUse
from tests.fakes.discord_api import FakeMessage
from tests.test_discord_commands import buttons, clicking, press


async def proposal_card(w: World, tool: str, tool_input: dict[str, object]) -> FakeMessage:
    w.llm.enqueue(ToolUse(((tool, tool_input),), text="Love it."), Reply("Confirm below."))
    asked = await w.say("I want to run a 5k")
    await w.final_answer(asked, lambda text: "Confirm below." in text)

    def card() -> FakeMessage | None:
        found = [m for m in w.bot_messages() if PROPOSAL_ID in str(m.data.get("components"))]
        return found[-1] if found else None

    message: FakeMessage = await w.discord.wait_for(card)
    return message


def custom_id(message: FakeMessage, answer: str) -> str:
    ids = [c["custom_id"] for row in message.data["components"] for c in row["components"]]
    [chosen] = [i for i in ids if f":{answer}:" in i]
    return chosen


async def test_confirm_adds_the_goal_once_even_after_a_restart(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        card = await proposal_card(w, "propose_goal", {"text": "Run a 5k"})
        assert buttons(card) == ["Confirm", "Decline"]
        assert "Add the goal “Run a 5k”. Nothing changes unless you confirm." in card.content
        assert await w.coach.goals(w.identity(w.alice)) == []
        second_click = clicking(w, card, custom_id(card, "confirm"))  # a stale copy
        await w.restart()  # the buttons outlive the process that sent them
        first = await press(w, clicking(w, card, custom_id(card, "confirm")))
        assert first.type == 7  # the card is edited into the answer
        answered = w.discord.message(card.id)
        assert answered.content.startswith("Goal added: Run a 5k.")
        assert answered.data["components"] == []
        again = await press(w, second_click)  # the card says so; nothing is done twice
        assert again.type == 7 and "Already done" in again.data["content"]
        assert [g.text for g in await w.coach.goals(w.identity(w.alice))] == ["Run a 5k"]


async def test_another_members_click_and_a_decline_change_nothing(tmp_path: Path) -> None:
    async with discord_world(tmp_path) as w:
        card = await proposal_card(w, "propose_meeting", {"when": "tomorrow 9am"})
        bobs = await press(w, clicking(w, card, custom_id(card, "confirm"), user_id=w.bob))
        assert bobs.type == 4 and "someone else" in bobs.data["content"]
        assert bobs.data["flags"] & 64  # only Bob sees it
        declined = await press(w, clicking(w, card, custom_id(card, "decline")))
        assert declined.type == 7
        assert "left as it is" in w.discord.message(card.id).content
        assert await w.coach.meetings(w.identity(w.alice)) == []
