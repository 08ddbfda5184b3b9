"""Streaming replies: one renderer turns the model's text deltas into throttled platform writes.

An adapter (Slack edit mode, Discord) gives `render` a `Surface` (post or edit one reply's
messages) and the `EditBucket` of the platform rate limit the reply falls under (Discord: the
channel; Slack: the workspace, for chat.update). Every reply in that bucket shares its budget,
so twenty conversations in one channel never out-write the platform together. A write that
falls under two limits at once (Discord: the channel's and the bot's global one) takes a
`Budgets` chain of both.

The decisions are pure and tested exhaustively: bots/split.py (where a long reply breaks into
messages, never breaking a code block) and bots/throttle.py (when the next write may
happen). `render` is the imperative shell around them.

Failures: the adapter maps the Coach's events onto the delta stream (`Chunk.text` -> `str`,
`Failed.user_text` -> `Failure(note)`, stop at `Done`). A stream that raises instead ends
with `fail_note`. Either way the user keeps the text so far, followed by the note.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar, runtime_checkable

from bots.split import (
    FENCE_CLOSE,
    MIN_SPLIT_LIMIT,
    Cut,
    Fences,
    closed_fences,
    last_visible,
    next_cut,
    split_message,
)
from bots.throttle import Budget, Clock

STREAMING_INDICATOR = " ▌"  # appended while a message is still growing
DEFAULT_FAIL_NOTE = "⚠️ Sorry, my reply was cut short by an error. Please try again in a moment."
SETTLE_LOOKAHEAD = 32  # text past a message's window that makes its cut final
MAX_RATE_LIMIT_RETRIES = 5  # consecutive 429s on one reply before giving up
UNFREEZE_WAIT_SECONDS = 5.0  # the most a reply given up on waits to take its indicator off
CUT_WRITE_SECONDS = 5.0  # a reply stopped from outside (shutdown) has this long for its note

log = logging.getLogger(__name__)

H = TypeVar("H")  # an adapter's message handle (a Slack ts, a discord.Message, ...)

class RateLimited(Exception):
    """Raised by a Surface's post/edit when the platform answers 429 despite the bucket."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited; retry after {retry_after:.3f}s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Failure:
    """A failure marker in the delta stream: the reply ends here, followed by `note`."""

    note: str


class Surface(Protocol[H]):
    """Where one reply appears. An adapter implements it per reply (channel, thread, ...)."""

    @property
    def limit(self) -> int:
        """The platform's characters per message (Discord 2000)."""
        ...

    async def post(self, text: str) -> H:
        """Send a new message; return what `edit` needs to change it."""
        ...

    async def edit(self, handle: H, text: str) -> None: ...


@runtime_checkable
class Indicates(Protocol):
    """Optional on a Surface: show typing/status at once, before the first token."""

    async def indicate(self) -> None: ...


@dataclass
class RenderResult(Generic[H]):
    """What a reply became: one handle and final text per message, and what it cost."""

    handles: list[H] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    text: str = ""  # the whole final text, note included
    posts: int = 0
    edits: int = 0
    rate_limited: int = 0  # 429s answered by the platform
    started_at: float = 0.0  # bucket clock
    first_visible_at: float | None = None  # when the first message was posted
    note: str | None = None  # the failure note shown, if the stream failed
    error: Exception | None = None  # what the delta stream raised, if it did


class _Draft:
    """The reply as it streams: settled messages (their cut can no longer move) and the one
    still growing. Settling uses the same cuts as `split_message` on the final text."""

    def __init__(self, limit: int, indicator: str) -> None:
        self.limit, self.indicator = limit, indicator
        self.text = ""
        self.done = False
        self.note: str | None = None
        self.error: Exception | None = None
        self.unshown_since: float | None = None  # when the oldest text not yet written came
        self._settled: list[str] = []
        self._pos = 0  # where the growing message's text begins
        self._lang: str | None = None  # the code block open there, if any

    def final_text(self) -> str:
        text = closed_fences(self.text)
        if self.note:
            text = f"{text.rstrip()}\n\n{self.note}" if text.strip() else self.note
        return text

    def targets(self) -> list[str]:
        """What every message should show now."""
        if self.done:
            final = self.final_text()
            return split_message(final, self.limit) if final.strip() else []
        text, last = self.text, last_visible(self.text)
        fences = Fences(text, self._pos, self._lang)
        growing: Cut | None = None
        while self._pos <= last:
            cut = next_cut(text, self._pos, self.limit, fences)
            if cut.last or last < cut.span.start + self.limit + SETTLE_LOOKAHEAD:
                growing = cut  # more text could still move this cut
                break
            self._settled.append(cut.span.of(text))
            self._pos, self._lang = cut.resume, fences.open_lang(cut.resume)
        targets = list(self._settled)
        if growing is not None:
            span = growing.span
            body = text[span.start : span.end]
            if body.strip():
                still_open = growing.last and fences.open_lang(len(text)) is not None
                close = FENCE_CLOSE if still_open else span.close
                targets.append(f"{span.reopen}{body}{close}{self.indicator}")
        return targets


class _Screen(Generic[H]):
    """The reply's messages as the platform shows them; every write goes through here."""

    def __init__(
        self,
        surface: Surface[H],
        result: RenderResult[H],
        clock: Clock,
        on_first_visible: Callable[[float], object] | None,
    ) -> None:
        self.surface, self.result, self.clock = surface, result, clock
        self.on_first_visible = on_first_visible

    def first_stale(self, targets: list[str]) -> int | None:
        shown = self.result.texts
        return next((i for i, t in enumerate(targets) if i >= len(shown) or shown[i] != t), None)

    async def write(self, i: int, text: str) -> None:
        result = self.result
        if i < len(result.handles):
            await self.surface.edit(result.handles[i], text)
            result.texts[i] = text
            result.edits += 1
            return
        result.handles.append(await self.surface.post(text))
        result.texts.append(text)
        result.posts += 1
        if result.first_visible_at is None:
            result.first_visible_at = self.clock()
            if self.on_first_visible is not None:
                self.on_first_visible(result.first_visible_at)


async def _read(
    deltas: AsyncIterable[str | Failure],
    draft: _Draft,
    changed: asyncio.Event,
    fail_note: str,
    clock: Clock,
) -> None:
    stream = aiter(deltas)
    try:
        async for delta in stream:
            if isinstance(delta, Failure):
                draft.note = delta.note or fail_note
                break
            draft.text += delta
            if draft.unshown_since is None:
                draft.unshown_since = clock()
            changed.set()
    except Exception as error:
        log.warning("reply stream failed; finishing the reply with the failure note", exc_info=True)
        draft.note, draft.error = fail_note, error
    finally:
        draft.done = True
        changed.set()
        close: Callable[[], Awaitable[object]] | None = getattr(stream, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:
                log.warning("closing the reply stream failed", exc_info=True)


def _can_wait(screen: _Screen[H], draft: _Draft) -> bool:
    """The next write is an in-between edit of a growing message: one that may be skipped."""
    stale = screen.first_stale(draft.targets())
    return not draft.done and stale is not None and stale < len(screen.result.handles)


async def _indicate(surface: Indicates) -> None:
    try:
        await surface.indicate()
    except Exception:  # the indicator is a courtesy: the reply goes on without it
        log.warning("typing/status indicator failed", exc_info=True)


async def _unfreeze(screen: _Screen[H], bucket: Budget, indicator: str) -> None:
    """Giving up on a reply after the platform's last short wait: one try at taking the
    indicator off its messages, so that a reply cut off mid-sentence does not look alive.
    The adapter's note about the failure follows either way, at most this much later."""
    try:
        async with asyncio.timeout(UNFREEZE_WAIT_SECONDS):
            for i, text in enumerate(screen.result.texts):
                if text.endswith(indicator):
                    await bucket.acquire()
                    await screen.write(i, text.removesuffix(indicator).rstrip())
    except Exception as error:  # still refused, or slower than a note may be late
        log.warning("could not take the indicator off a reply given up on: %r", error)


async def _cut(screen: _Screen[H], draft: _Draft, bucket: Budget, note: str) -> None:
    """The reply is being stopped from outside (shutdown): what was shown stays, without the
    indicator, followed by `note`, within CUT_WRITE_SECONDS."""
    draft.note, draft.done = note, True

    async def write_final() -> None:
        while (stale := screen.first_stale(targets := draft.targets())) is not None:
            await bucket.acquire()
            await screen.write(stale, targets[stale])

    try:
        # wait_for, not asyncio.timeout: this runs in a task being cancelled, where before
        # 3.12 a timeout ends in CancelledError instead of TimeoutError.
        await asyncio.wait_for(write_final(), CUT_WRITE_SECONDS)
    except Exception as error:  # refused, or too slow: the reply stays as it was
        log.warning("could not end a stopped reply with its note: %r", error)


async def _keep_up(
    screen: _Screen[H],
    draft: _Draft,
    bucket: Budget,
    changed: asyncio.Event,
    indicating: asyncio.Task[None] | None,
    indicator: str,
    on_lag: Callable[[float], object] | None,
) -> None:
    """Write until every message shows its final text (the loop `render` describes)."""
    refused = 0  # consecutive 429s
    while True:
        changed.clear()
        if screen.first_stale(draft.targets()) is None:
            if draft.done:
                return
            await changed.wait()
            continue
        if indicating is not None:
            await indicating  # the indicator must not land after the first message
            indicating = None
        if _can_wait(screen, draft) and bucket.crowded():
            # Others are queued for the budget (a first post, a final edit): this
            # in-between edit yields to them; a later one will carry its text.
            await changed.wait()
            continue
        await bucket.acquire()
        targets = draft.targets()  # the newest text, not what was there when we queued
        stale = screen.first_stale(targets)
        if stale is None:
            continue
        since, draft.unshown_since = draft.unshown_since, None  # this write carries that text
        try:
            await screen.write(stale, targets[stale])
            refused = 0
            if since is not None and on_lag is not None:
                on_lag(screen.clock() - since)
        except RateLimited as limited:
            draft.unshown_since = since if since is not None else draft.unshown_since
            refused += 1
            screen.result.rate_limited += 1
            bucket.penalize(limited.retry_after)
            if refused > MAX_RATE_LIMIT_RETRIES:
                if limited.retry_after <= UNFREEZE_WAIT_SECONDS:
                    await _unfreeze(screen, bucket, indicator)
                raise


async def render(
    deltas: AsyncIterable[str | Failure],
    surface: Surface[H],
    bucket: Budget,
    *,
    fail_note: str = DEFAULT_FAIL_NOTE,
    cut_note: str | None = None,
    indicator: str = STREAMING_INDICATOR,
    on_first_visible: Callable[[float], object] | None = None,
    on_lag: Callable[[float], object] | None = None,
) -> RenderResult[H]:
    """Stream `deltas` into `surface`, writing no faster than `bucket` allows.

    The indicator shows at once; the first text is posted when the first delta arrives (posts
    spend the bucket too). Deltas keep accumulating while a write waits or is in flight, and
    each write carries the newest text, so edits coalesce instead of queueing. When others
    are queued for the bucket (`crowded`), an in-between edit is skipped: first posts and
    final edits, which a user waits for, go first. Past the
    message limit the message is finished and the reply continues in a new one. At the end
    every message gets its final text without the indicator (skipped only if it shows exactly
    that already). A `Failure(note)` in the stream, or an exception from it, ends the reply
    with the text so far plus the note (`fail_note` for exceptions, which are also returned
    in `RenderResult.error`). A `RateLimited` write penalizes the bucket and is retried with
    the newest text; past `MAX_RATE_LIMIT_RETRIES` in a row it propagates, after one try at
    taking the indicator off (`_unfreeze`). Errors from the surface itself propagate.

    Messages are cut at `surface.limit - len(indicator) - len(FENCE_CLOSE)`, so a growing
    message always has room to close an open code block and show the indicator.

    `on_lag` is told, at each write that shows new text, how long ago the oldest text in
    it arrived (bucket clock seconds): the delay between the model's words and the screen.

    Cancelled (a shutdown whose grace ran out), the reply stops reading `deltas` and, with a
    `cut_note`, ends as a failed one does: the text shown so far, then the note.
    """
    limit = surface.limit - len(indicator) - len(FENCE_CLOSE)
    if limit < MIN_SPLIT_LIMIT:
        raise ValueError(f"surface.limit {surface.limit} is too small to stream into")
    draft = _Draft(limit, indicator)
    result: RenderResult[H] = RenderResult(started_at=bucket.clock())
    screen = _Screen(surface, result, bucket.clock, on_first_visible)
    changed = asyncio.Event()
    indicating = asyncio.create_task(_indicate(surface)) if isinstance(surface, Indicates) else None
    reader = asyncio.create_task(_read(deltas, draft, changed, fail_note, bucket.clock))
    try:
        await _keep_up(screen, draft, bucket, changed, indicating, indicator, on_lag)
    except asyncio.CancelledError:
        reader.cancel()  # first, so the coach keeps what was said before the note shows
        await asyncio.gather(reader, return_exceptions=True)
        if cut_note is not None:
            await _cut(screen, draft, bucket, cut_note)
        raise
    finally:
        tasks = [t for t in (reader, indicating) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    result.text, result.note, result.error = draft.final_text(), draft.note, draft.error
    return result
