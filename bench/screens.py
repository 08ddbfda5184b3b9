"""What each user saw, rebuilt from the platform fakes' call logs (successful calls only).

A bench reply fits one message, so the screen of a conversation is one growing text. The
web has no platform fake: its screen is what the bench's WebSocket client received.
"""

from __future__ import annotations

import re
from typing import Any

from bench.measure import Write, visible
from bots.stream import STREAMING_INDICATOR
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.slack_api import FakeSlack

_DISCORD_WRITE = re.compile(r"/channels/(\d+)/(typing|messages)(/\d+)?")


def _stream_text(args: dict[str, Any]) -> str:
    """The markdown a chat.*Stream call adds (as text or as markdown_text chunks)."""
    chunks = args.get("chunks") or []
    return (args.get("markdown_text") or "") + "".join(
        c.get("text", "") for c in chunks if c.get("type") == "markdown_text"
    )


def slack_screens(slack: FakeSlack) -> dict[str, tuple[list[Write], bool]]:
    """By DM channel: the writes a user saw, and whether the reply was finished."""
    text: dict[str, str] = {}
    writes: dict[str, list[Write]] = {}
    finished: dict[str, bool] = {}
    for call in sorted(slack.calls, key=lambda c: c.time):
        if call.status != 200 or call.error is not None:
            continue
        args, method = call.args, call.method
        channel = args.get("channel_id") if method.startswith("assistant.") else args.get("channel")
        if not isinstance(channel, str):
            continue
        shown: str | None
        if method == "assistant.threads.setStatus":
            if not args.get("status"):
                continue  # clearing the status shows nothing new
            shown = None
        elif method == "chat.startStream":
            shown = text[channel] = _stream_text(args)
        elif method in ("chat.appendStream", "chat.stopStream"):
            shown = text[channel] = text.get(channel, "") + _stream_text(args)
            finished[channel] = method == "chat.stopStream"
        elif method in ("chat.postMessage", "chat.update"):
            shown = text[channel] = str(args.get("text") or "")
            finished[channel] = not shown.endswith(STREAMING_INDICATOR)
        else:
            continue
        writes.setdefault(channel, []).append(
            Write(call.time, None if shown is None else visible(shown))
        )
    return {channel: (w, finished.get(channel, False)) for channel, w in writes.items()}


def discord_screens(discord: FakeDiscord) -> dict[int, tuple[list[Write], bool]]:
    """By channel id: the writes a user saw, and whether the reply was finished."""
    writes: dict[int, list[Write]] = {}
    finished: dict[int, bool] = {}
    for call in sorted(discord.calls, key=lambda c: c.time):
        match = _DISCORD_WRITE.fullmatch(call.path)
        if match is None or call.status not in (200, 204) or call.method == "GET":
            continue
        channel = int(match[1])
        if match[2] == "typing":
            writes.setdefault(channel, []).append(Write(call.time, None))
            continue
        content = (call.body or {}).get("content") if isinstance(call.body, dict) else None
        if content is None:
            continue
        finished[channel] = not content.endswith(STREAMING_INDICATOR)
        writes.setdefault(channel, []).append(Write(call.time, visible(content)))
    return {channel: (w, finished.get(channel, False)) for channel, w in writes.items()}


def web_screen(frames: list[tuple[float, dict[str, Any]]]) -> tuple[list[Write], bool]:
    """One WebSocket conversation, from the frames its client received, (at, frame) in order:
    `typing` is the indicator, each `response_chunk` adds its text, `response` holds the
    whole reply and ends it."""
    writes: list[Write] = []
    text, finished = "", False
    for at, frame in frames:
        kind = frame.get("type")
        if kind == "typing":
            writes.append(Write(at, None))
            continue
        if kind == "response_chunk":
            text += str(frame.get("content") or "")
        elif kind == "response":
            text, finished = str(frame.get("content") or ""), True
        else:
            continue
        writes.append(Write(at, visible(text)))
    return writes, finished
