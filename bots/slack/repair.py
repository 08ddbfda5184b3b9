"""Finishing the Slack replies a crash cut off (core/in_flight.py), at start and every so often.

A reply's record says where it shows (`Destination.place()`, plus `kind` and `ts` once Slack
showed something). What the user finds afterwards, by what the crash left:

- a native stream (`kind=stream`): stopped, with the note appended (a stream Slack has closed
  already is finished with chat.update instead, as a live reply would be);
- an edited message (`kind=message`): its text without the streaming indicator, then the note;
- nothing shown yet, or a message that cannot be read back (no history scope in a channel):
  the note as a message of its own in the thread.

The text the user had is returned for the Coach to keep as the incomplete reply.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.render import reply_blocks
from bots.slack.stream import STREAM_CLOSED
from bots.stream import STREAMING_INDICATOR

log = logging.getLogger(__name__)


def _code(error: SlackApiError) -> str | None:
    data = error.response.data
    return data.get("error") if isinstance(data, dict) else None


async def shown_text(client: AsyncWebClient, place: Mapping[str, str]) -> str | None:
    """The text of the reply's message as Slack has it, without the indicator; None when it
    cannot be read (no message yet, no history scope, Slack refused)."""
    ts = place.get("ts")
    if not ts:
        return None
    try:
        page = await client.conversations_replies(
            channel=place["channel"], ts=place["thread_ts"], oldest=ts, inclusive=True, limit=5
        )
    except SlackApiError as error:
        code = _code(error) or error.response.status_code
        log.info("cut-off reply %s in %s not readable: %s", ts, place["channel"], code)
        return None
    for message in page.get("messages") or []:
        if message.get("ts") == ts and isinstance(message.get("text"), str):
            return str(message["text"]).removesuffix(STREAMING_INDICATOR).rstrip()
    return None


async def finish_cut_reply(
    client: AsyncWebClient, place: Mapping[str, str], note: str
) -> str | None:
    """End the reply at `place` with `note`; the text it had, if known. Raises when Slack
    refuses even the note, so that the repair is tried again later."""
    channel, thread_ts, ts = place["channel"], place["thread_ts"], place.get("ts")
    text = await shown_text(client, place)
    if ts and place.get("kind") == "stream":
        try:
            await client.chat_stopStream(channel=channel, ts=ts, markdown_text=f"\n\n{note}")
            return text
        except SlackApiError as error:
            if _code(error) not in STREAM_CLOSED:
                raise
    if ts and text is not None:
        whole = f"{text}\n\n{note}" if text else note
        await client.chat_update(channel=channel, ts=ts, text=whole, blocks=reply_blocks(whole))
        return text
    await client.chat_postMessage(
        channel=channel, thread_ts=thread_ts, text=note, blocks=reply_blocks(note)
    )
    return text
