"""Streaming replies: one renderer turns the model's text deltas into throttled platform writes.

An adapter (Slack edit mode, Discord) gives `render` a `Surface` (post or edit one reply's
messages) and the `EditBucket` of the platform rate limit the reply falls under (Discord: the
channel; Slack: the workspace, for chat.update). Every reply in that bucket shares its budget,
so twenty conversations in one channel never out-write the platform together. A write that
falls under two limits at once (Discord: the channel's and the bot's global one) takes a
`Budgets` chain of both.

The decisions are pure and tested exhaustively: `split_spans` / `split_message` (where a long
reply breaks into messages, never breaking a code block) and `next_write_at` (when the next
write may happen). `render` is the imperative shell around them.

Failures: the adapter maps the Coach's events onto the delta stream (`Chunk.text` -> `str`,
`Failed.user_text` -> `Failure(note)`, stop at `Done`). A stream that raises instead ends
with `fail_note`. Either way the user keeps the text so far, followed by the note.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import weakref
from bisect import bisect_left
from collections.abc import AsyncIterable, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

STREAMING_INDICATOR = " ▌"  # appended while a message is still growing
DEFAULT_FAIL_NOTE = "⚠️ Sorry, my reply was cut short by an error. Please try again in a moment."
FENCE = "```"
FENCE_CLOSE = "\n" + FENCE  # what closes a code block at the end of a message part
MIN_SPLIT_LIMIT = 100  # below this a part could not hold a reopened fence and some text
MAX_LANG_TAG = 24  # a longer "```word" is not a language tag (bounds the reopen line)
SETTLE_LOOKAHEAD = 32  # text past a message's window that makes its cut final
MAX_RATE_LIMIT_RETRIES = 5  # consecutive 429s on one reply before giving up
UNFREEZE_WAIT_SECONDS = 5.0  # the most a reply given up on waits to take its indicator off
CUT_WRITE_SECONDS = 5.0  # a reply stopped from outside (shutdown) has this long for its note
ACTIVE_BUCKETS_KEPT = 1024  # idle buckets beyond this are kept only while someone holds them

_WHITESPACE = re.compile(r"\s+")
# Slack sends and shows `<`, `>` and `&` as &lt; &gt; &amp;: a hard cut must not halve one.
_ENTITY = re.compile(r"&(?:[A-Za-z]{2,8}|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});")
MAX_ENTITY = 10  # the longest _ENTITY match
_LANG_TAG = re.compile(rf"[A-Za-z0-9_+\-.#]{{1,{MAX_LANG_TAG}}}(?=\r?\n)")

log = logging.getLogger(__name__)

H = TypeVar("H")  # an adapter's message handle (a Slack ts, a discord.Message, ...)
Clock = Callable[[], float]  # monotonic seconds
Sleep = Callable[[float], Awaitable[None]]


# --- Splitting (pure) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """One message of a split text: `text[start:end]` between the fence lines that keep a code
    block whole across cuts (`reopen` before, `close` after; both empty outside a block)."""

    start: int
    end: int
    reopen: str = ""
    close: str = ""

    def of(self, text: str) -> str:
        return f"{self.reopen}{text[self.start : self.end]}{self.close}"


class _Fences:
    """Every ``` of a text, paired as Slack and Discord pair them: in order, wherever they
    stand, the 1st, 3rd, ... opening a code block. An opening fence owns its language tag
    (`MAX_LANG_TAG` chars of [A-Za-z0-9_+-.#] followed by a newline); no cut lands inside.

    Scanning may begin at a cut point `start` whose state is known (`open_lang`): a streaming
    reply then rescans only its growing message. Ask only about positions from `start` on.
    """

    def __init__(self, text: str, start: int = 0, open_lang: str | None = None) -> None:
        known = open_lang is not None  # a block opened before `start`: a stand-in fence at -1
        self.starts: list[int] = [-1] if known else []
        self.ends: list[int] = [-1] if known else []
        self.langs: list[str] = [open_lang] if open_lang is not None else []
        at = text.find(FENCE, start)
        while at != -1:
            end, lang = at + len(FENCE), ""
            if len(self.starts) % 2 == 0 and (tag := _LANG_TAG.match(text, end)):
                end, lang = tag.end(), tag.group()
            self.starts.append(at)
            self.ends.append(end)
            self.langs.append(lang)
            at = text.find(FENCE, end)

    def open_lang(self, i: int) -> str | None:
        """The language of the block open at cut point `i` ("" untagged), None outside one."""
        n = bisect_left(self.starts, i)
        return self.langs[n - 1] if n % 2 else None

    def splits_fence(self, i: int) -> bool:
        n = bisect_left(self.starts, i)
        return n > 0 and self.ends[n - 1] > i

    def ends_opening(self, i: int) -> bool:
        """A cut here would leave an empty block: the opening fence at the end, its body next."""
        n = bisect_left(self.starts, i)
        return n % 2 == 1 and self.ends[n - 1] == i


class _Cut(NamedTuple):
    span: Span
    resume: int  # where the next message's text begins; the whitespace before it is dropped
    last: bool  # the rest of the text fits: this span ends it


def _next_cut(text: str, pos: int, limit: int, fences: _Fences) -> _Cut:
    """The message starting at `pos`: cut at the latest paragraph break that fits, else line
    break, else space, else the latest point that splits no fence."""
    while True:
        lang = fences.open_lang(pos)
        reopen = "" if lang is None else f"{FENCE}{lang}\n"
        room = limit - len(reopen)
        if len(text) - pos <= room:
            return _Cut(Span(pos, len(text), reopen), len(text), True)

        def fits(c: int, pos: int = pos, room: int = room) -> bool:
            return c - pos + (len(FENCE_CLOSE) if fences.open_lang(c) is not None else 0) <= room

        # A whitespace run is a cut: the text before it stays, the run goes, except the
        # indentation after its last newline (code keeps its shape).
        best: list[tuple[int, int] | None] = [None, None, None]  # paragraph, line, space
        for run in _WHITESPACE.finditer(text, pos):
            c, gap = run.start(), run.group()
            if c > pos + room:
                break
            if c == pos or not fits(c) or fences.ends_opening(c):
                continue
            newlines = gap.count("\n")
            best[2 - min(newlines, 2)] = (c, c + gap.rfind("\n") + 1 if newlines else run.end())
        choice = next((b for b in best if b is not None), None)
        if choice is None:
            lead = _WHITESPACE.match(text, pos)
            first = lead.end() if lead else pos
            for c in range(pos + room, first, -1):
                if not fences.splits_fence(c) and not _splits_entity(text, c) and fits(c):
                    choice = (c, c)
                    break
            else:
                # Only whitespace fits before a fence we may not split: drop it as whitespace
                # at a split point. MIN_SPLIT_LIMIT leaves room for any fence after it.
                if first == pos:
                    raise AssertionError(f"unreachable for limit >= {MIN_SPLIT_LIMIT}")
                pos = first
                continue
        c, resume = choice
        close = "" if fences.open_lang(c) is None else FENCE_CLOSE
        return _Cut(Span(pos, c, reopen, close), resume, False)


def _splits_entity(text: str, c: int) -> bool:
    """Would a cut at `c` fall inside an HTML entity such as &lt;?"""
    start = text.rfind("&", max(0, c - MAX_ENTITY), c)
    if start < 0:
        return False
    entity = _ENTITY.match(text, start)
    return entity is not None and entity.end() > c


def _last_visible(text: str) -> int:
    i = len(text) - 1
    while i >= 0 and text[i].isspace():
        i -= 1
    return i


def split_spans(text: str, limit: int) -> list[Span]:
    """Where `text` breaks into messages of at most `limit` characters.

    Text that fits is one span, unchanged ([] for ""). Otherwise each cut prefers a paragraph
    break, then a line break, then a space, then any point that splits no ``` fence and no
    HTML entity (&lt;); a cut inside a code block closes it (`close`) and the next part
    reopens it with the same language tag (`reopen`). The contract, precisely: the spans are
    in order, non-empty and hold visible text; everything of `text` outside them is whitespace
    (the whitespace at each split point, except indentation after its last newline, which
    stays with the next part); every part but the last has balanced fences, and the last is
    open only if `text` is.
    """
    if limit < MIN_SPLIT_LIMIT:
        raise ValueError(f"limit must be at least {MIN_SPLIT_LIMIT}, got {limit}")
    if len(text) <= limit:
        return [Span(0, len(text))] if text else []
    fences, spans, pos, last = _Fences(text), [], 0, _last_visible(text)
    while pos <= last:
        cut = _next_cut(text, pos, limit, fences)
        spans.append(cut.span)
        if cut.last:
            break
        pos = cut.resume
    if spans and spans[-1].close:  # whitespace alone followed: fence lines go at split points only
        spans[-1] = Span(spans[-1].start, spans[-1].end, spans[-1].reopen)
    return spans


def split_message(text: str, limit: int) -> list[str]:
    """`text` as messages of at most `limit` characters; see `split_spans` for where it cuts."""
    return [span.of(text) for span in split_spans(text, limit)]


def closed_fences(text: str) -> str:
    """`text` with a code block left open at its end closed, so nothing after it is swallowed."""
    if _Fences(text).open_lang(len(text)) is None:
        return text
    return text + (FENCE if text.endswith("\n") else FENCE_CLOSE)


# --- Throttling -------------------------------------------------------------------------------


def next_write_at(
    last_write: float | None, interval: float, now: float, blocked_until: float = -math.inf
) -> float:
    """The earliest time, not before `now`, for the next write of a bucket that spaces its
    writes `interval` apart and was told by the platform to wait until `blocked_until`.

    Even spacing (not bursts) keeps edits smooth and honours "N per T" in every window of T.
    """
    earliest = now if last_write is None else max(now, last_write + interval)
    return max(earliest, blocked_until)


class EditBucket:
    """The write budget of one platform rate-limit bucket, shared by every reply in it.

    `max_calls` per `per_seconds`, spaced evenly. With `burst` > 1, that many writes may go
    back to back after a quiet spell (GCRA: any `per_seconds` then holds at most about
    `max_calls + burst - 1`), for limits counted over a window rather than as a pace.
    Waiters are served first come, first served (asyncio.Lock is FIFO), and a waiter
    re-checks after sleeping, so a `penalize` from a 429 holds back everyone already queued.
    """

    def __init__(
        self,
        max_calls: int,
        per_seconds: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        burst: int = 1,
    ) -> None:
        if max_calls < 1 or per_seconds <= 0 or burst < 1:
            raise ValueError(f"need max_calls, burst >= 1, per_seconds > 0: {max_calls}, {burst}")
        self.interval = per_seconds / max_calls
        self.burst = burst
        self.clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._last: float | None = None  # the latest write, as if all had been spaced evenly
        self._blocked_until = -math.inf
        self._waiting = 0

    def _free_at(self, now: float) -> float:
        last = None if self._last is None else self._last - (self.burst - 1) * self.interval
        return next_write_at(last, self.interval, now, self._blocked_until)

    def _take(self, now: float) -> None:
        self._last = now if self._last is None else max(self._last + self.interval, now)

    async def acquire(self) -> None:
        """Wait for this caller's turn and a free slot; the write should follow at once."""
        self._waiting += 1
        try:
            async with self._lock:
                while True:
                    now = self.clock()
                    at = self._free_at(now)
                    if at <= now:
                        self._take(now)
                        return
                    await self._sleep(at - now)
        finally:
            self._waiting -= 1

    def backlog(self) -> float:
        """About how long a write queued now would wait for its slot, in seconds."""
        now = self.clock()
        return self._free_at(now) - now + self._waiting * self.interval

    def try_acquire(self) -> bool:
        """Take a slot if one is free now and nobody is queued; never waits. For writers that
        keep reading while they may not write, so that their next write carries more text."""
        now = self.clock()
        if self._lock.locked() or self._free_at(now) > now:
            return False
        self._take(now)
        return True

    def crowded(self) -> bool:
        """Someone is queued for a slot: a write that may be skipped should let them go."""
        return self._lock.locked()

    def restamp(self) -> None:
        """The write of the slot just taken goes out only now (it waited for another
        budget): space the next write from now, as the platform will count it."""
        now = self.clock()
        self._last = now if self._last is None else max(self._last, now)

    def penalize(self, retry_after: float) -> None:
        """The platform still said 429: nobody in this bucket writes for `retry_after` s."""
        self._blocked_until = max(self._blocked_until, self.clock() + max(0.0, retry_after))

    def idle(self) -> bool:
        """True when this bucket behaves exactly like a new one (so it may be forgotten)."""
        now = self.clock()
        idle_since = None if self._last is None else self._last + self.interval
        return not self._lock.locked() and (idle_since is None or idle_since <= now) and (
            self._blocked_until <= now
        )


class Buckets:
    """The buckets of one platform limit, by bucket id (a channel id, a workspace id, ...).

    A bucket is created on first use. Past `ACTIVE_BUCKETS_KEPT`, idle buckets are held only
    weakly: a reply still holding one keeps it shared, and a forgotten one equals a new one.
    """

    def __init__(
        self,
        max_calls: int,
        per_seconds: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._make: Callable[[], EditBucket] = lambda: EditBucket(
            max_calls, per_seconds, clock=clock, sleep=sleep
        )
        self._active: dict[Hashable, EditBucket] = {}
        self._resting: weakref.WeakValueDictionary[Hashable, EditBucket] = (
            weakref.WeakValueDictionary()
        )

    def get(self, key: Hashable) -> EditBucket:
        bucket = self._active.get(key) or self._resting.pop(key, None) or self._make()
        self._active[key] = bucket
        if len(self._active) > ACTIVE_BUCKETS_KEPT:
            for idle in [k for k, b in self._active.items() if b.idle()]:
                self._resting[idle] = self._active.pop(idle)
        return bucket

    def __len__(self) -> int:
        return len(self._active) + len(self._resting)


class Budget(Protocol):
    """What `render` needs of a write budget: an `EditBucket`, or a chain of them."""

    clock: Clock

    async def acquire(self) -> None: ...
    def crowded(self) -> bool: ...
    def penalize(self, retry_after: float) -> None: ...


class Budgets:
    """A write that spends from several buckets: each in turn, narrowest first (the route's
    own, then the global one), so a write queues globally only once its route is free.

    A 429 (`penalize`) holds back the first bucket only: the wider ones are paced below the
    platform's limit, so a refusal means the route's own limit was met.
    """

    def __init__(self, first: EditBucket, *wider: EditBucket) -> None:
        self._buckets = (first, *wider)
        self.clock = first.clock

    async def acquire(self) -> None:
        for bucket in self._buckets:
            await bucket.acquire()
        for bucket in self._buckets[:-1]:
            bucket.restamp()  # it waited for the wider ones: keep its spacing as sent

    def crowded(self) -> bool:
        return any(bucket.crowded() for bucket in self._buckets)

    def penalize(self, retry_after: float) -> None:
        self._buckets[0].penalize(retry_after)


# --- The renderer ------------------------------------------------------------------------------


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
        text, last = self.text, _last_visible(self.text)
        fences = _Fences(text, self._pos, self._lang)
        growing: _Cut | None = None
        while self._pos <= last:
            cut = _next_cut(text, self._pos, self.limit, fences)
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
    deltas: AsyncIterable[str | Failure], draft: _Draft, changed: asyncio.Event, fail_note: str
) -> None:
    stream = aiter(deltas)
    try:
        async for delta in stream:
            if isinstance(delta, Failure):
                draft.note = delta.note or fail_note
                break
            draft.text += delta
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


async def render(
    deltas: AsyncIterable[str | Failure],
    surface: Surface[H],
    bucket: Budget,
    *,
    fail_note: str = DEFAULT_FAIL_NOTE,
    cut_note: str | None = None,
    indicator: str = STREAMING_INDICATOR,
    on_first_visible: Callable[[float], object] | None = None,
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
    reader = asyncio.create_task(_read(deltas, draft, changed, fail_note))
    refused = 0  # consecutive 429s
    try:
        while True:
            changed.clear()
            if screen.first_stale(draft.targets()) is None:
                if draft.done:
                    break
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
            try:
                await screen.write(stale, targets[stale])
                refused = 0
            except RateLimited as limited:
                refused += 1
                result.rate_limited += 1
                bucket.penalize(limited.retry_after)
                if refused > MAX_RATE_LIMIT_RETRIES:
                    if limited.retry_after <= UNFREEZE_WAIT_SECONDS:
                        await _unfreeze(screen, bucket, indicator)
                    raise
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
