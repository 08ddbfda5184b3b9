"""A proposal of the coach on Slack: a card with Block Kit buttons in the reply's thread,
answered once by a click, through the real Bolt app and slack_sdk against the fake Slack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bots.slack.render import ACTION_PROPOSAL_CONFIRM, ACTION_PROPOSAL_DECLINE
from tests.fakes.anthropic_api import FakeAnthropic, Reply, ToolUse
from tests.fakes.slack_api import block_actions_body
from tests.slack_harness import Deployment, block_texts, deployment, identity


async def proposal_card(d: Deployment, tool: str, tool_input: dict[str, Any]) -> Any:
    d.llm.enqueue(ToolUse(((tool, tool_input),), text="Love it."), Reply("Confirm below."))
    event = await d.dm("I want to run a 5k")
    thread = d.fake.messages(event["channel"], event["ts"])
    [card] = [m for m in thread if m.blocks and ACTION_PROPOSAL_CONFIRM in block_texts(m.blocks)]
    return card


def click(d: Deployment, action: str, value: str, user: str | None = None) -> dict[str, Any]:
    more = {"user": user} if user else {}
    return block_actions_body(action, value, response_url=d.fake.response_url("card"), **more)


async def test_confirm_on_the_card_adds_the_goal_once(tmp_path: Path) -> None:
    async with deployment(tmp_path, llm=FakeAnthropic()) as d:
        card = await proposal_card(d, "propose_goal", {"text": "Run a 5k"})
        assert "Add the goal “Run a 5k”. Nothing changes unless you confirm." in card.text
        confirm, decline = card.blocks[-1]["elements"]
        assert decline["action_id"] == ACTION_PROPOSAL_DECLINE
        assert await d.coach.goals(identity()) == []  # shown, not done

        await d.deliver(click(d, ACTION_PROPOSAL_CONFIRM, confirm["value"]))
        done = d.fake.responses("card")[-1]
        assert done["replace_original"] is True and done["text"] == "Goal added: Run a 5k."
        assert "coach_proposal" not in block_texts(done["blocks"])  # the buttons are gone
        await d.deliver(click(d, ACTION_PROPOSAL_CONFIRM, confirm["value"]))  # a double click
        assert "Already done" in d.fake.responses("card")[-1]["text"]
        assert [g.text for g in await d.coach.goals(identity())] == ["Run a 5k"]


async def test_decline_and_someone_elses_click_change_nothing(tmp_path: Path) -> None:
    async with deployment(tmp_path, llm=FakeAnthropic()) as d:
        card = await proposal_card(d, "propose_meeting", {"when": "tomorrow 9am"})
        value = card.blocks[-1]["elements"][0]["value"]
        await d.deliver(click(d, ACTION_PROPOSAL_CONFIRM, value, user="U0INTRUDER"))
        other = d.fake.responses("card")[-1]
        assert other["replace_original"] is False and "someone else" in other["text"]
        await d.deliver(click(d, ACTION_PROPOSAL_DECLINE, value))
        declined = d.fake.responses("card")[-1]
        assert declined["replace_original"] is True and "left as it is" in declined["text"]
        assert await d.coach.meetings(identity()) == []
