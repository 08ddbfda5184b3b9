"""The streaming renderer: pure splitting and throttling, then render against a fake platform.

Time is virtual (`VirtualTime`): sleeps wait on a clock that jumps to the next timer once all
tasks are quiet, so throttled streams run deterministically in microseconds of real time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bots import throttle
from bots.split import FENCE_CLOSE, closed_fences, split_message, split_spans
from bots.stream import (
    DEFAULT_FAIL_NOTE,
    MAX_RATE_LIMIT_RETRIES,
    STREAMING_INDICATOR,
    UNFREEZE_WAIT_SECONDS,
    Failure,
    RateLimited,
    RenderResult,
    render,
)
from bots.throttle import Buckets, Budgets, EditBucket, next_write_at

T = TypeVar("T")


class VirtualTime:
    """Monotonic virtual time. `sleep` parks on a timer; `run` lets every task go quiet, then
    jumps the clock to the earliest timer and wakes it."""

    SPINS = 20  # loop iterations that count as "every task is quiet"

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        if delay <= 0:
            await asyncio.sleep(0)
            return
        timer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + delay, next(self._order), timer))
        await timer

    async def run(self, main: Awaitable[T]) -> T:
        task = asyncio.ensure_future(main)
        while True:
            for _ in range(self.SPINS):
                await asyncio.sleep(0)
            if task.done():
                return task.result()
            while self._timers and self._timers[0][2].done():
                heapq.heappop(self._timers)  # its sleeper was cancelled
            if not self._timers:
                task.cancel()
                raise RuntimeError("deadlock: tasks wait, but no timer is set")
            when, _, timer = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            timer.set_result(None)


@dataclass(frozen=True)
class Write:
    at: float
    kind: str  # "indicate", "post", "edit" or "429"
    message: int
    text: str
    newest: str  # what the model had said when the write was sent


class FakeSurface:
    """A test double of the platform for one reply: messages by index, every write on record.

    `refuse` maps a write attempt (1-based, indicator excluded) to a 429's retry_after.
    """

    def __init__(
        self,
        clock: VirtualTime,
        *,
        limit: int = 2000,
        latency: float = 0.0,
        refuse: dict[int, float] | None = None,
        newest: Callable[[], str] = lambda: "",
    ) -> None:
        self.limit = limit
        self.clock, self.latency, self.refuse, self.newest = clock, latency, refuse or {}, newest
        self.messages: list[str] = []
        self.writes: list[Write] = []
        self.attempts = 0

    def _record(self, kind: str, message: int, text: str) -> None:
        self.writes.append(Write(self.clock.now, kind, message, text, self.newest()))
        if kind == "indicate":
            return
        assert len(text) <= self.limit, "the platform would reject this"
        self.attempts += 1
        if self.attempts in self.refuse:
            self.writes[-1] = Write(self.clock.now, "429", message, text, self.newest())
            raise RateLimited(self.refuse[self.attempts])

    async def indicate(self) -> None:
        self._record("indicate", -1, "")

    async def post(self, text: str) -> int:
        self._record("post", len(self.messages), text)
        await self.clock.sleep(self.latency)
        self.messages.append(text)
        return len(self.messages) - 1

    async def edit(self, handle: int, text: str) -> None:
        self._record("edit", handle, text)
        await self.clock.sleep(self.latency)
        self.messages[handle] = text

    def sent(self) -> list[Write]:
        return [w for w in self.writes if w.kind != "indicate"]


class PlainSurface:
    """A platform with no typing indicator: `indicate` is optional."""

    limit = 500

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def post(self, text: str) -> int:
        self.messages.append(text)
        return len(self.messages) - 1

    async def edit(self, handle: int, text: str) -> None:
        self.messages[handle] = text


def bucket_for(clock: VirtualTime, max_calls: int = 5, per_seconds: float = 1.0) -> EditBucket:
    return EditBucket(max_calls, per_seconds, clock=clock, sleep=clock.sleep)


async def paced(
    clock: VirtualTime, pieces: list[str], every: float, said: list[str] | None = None
) -> AsyncIterator[str]:
    for piece in pieces:
        await clock.sleep(every)
        if said is not None:
            said.append(piece)
        yield piece


def layout_limit(surface_limit: int) -> int:
    return surface_limit - len(STREAMING_INDICATOR) - len(FENCE_CLOSE)


# --- split_message: examples --------------------------------------------------------------


def test_text_that_fits_is_one_part_unchanged() -> None:
    assert split_message("hi  \n", 100) == ["hi  \n"]
    assert split_message("", 100) == []


def test_limits_below_the_minimum_are_refused() -> None:
    with pytest.raises(ValueError):
        split_message("x" * 200, 99)


def test_prefers_paragraph_then_line_then_space() -> None:
    paragraph = "a" * 60 + "\n\n" + "b" * 30 + "\n" + "c" * 30 + " " + "d" * 30
    assert split_message(paragraph, 130) == ["a" * 60, "b" * 30 + "\n" + "c" * 30 + " " + "d" * 30]
    line = "a" * 60 + "\n" + "b" * 30 + " " + "c" * 50
    assert split_message(line, 100) == ["a" * 60, "b" * 30 + " " + "c" * 50]
    words = "a " * 80
    assert split_message(words, 100)[0] == ("a " * 50)[:-1]


def test_text_without_spaces_is_cut_hard() -> None:
    assert split_message("x" * 250, 100) == ["x" * 100, "x" * 100, "x" * 50]


def test_a_hard_cut_never_halves_an_html_entity() -> None:
    """Slack shows <, > and & escaped: a part ending '&l' would show as garbage."""
    for text in ("&lt;" * 60, "x" + "&amp;" * 50, "&#128512;" * 30):
        parts = split_message(text, 100)
        assert "".join(parts) == text
        assert all(p.endswith(";") for p in parts)


def test_indentation_after_a_line_break_stays_with_the_next_part() -> None:
    assert split_message("a" * 95 + "\n    indented", 100) == ["a" * 95, "    indented"]


def test_whitespace_too_long_for_any_part_is_dropped() -> None:
    assert split_message(" " * 150 + "hello", 100) == ["hello"]
    assert split_message(" " * 150, 100) == []


def test_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "".join(f"value_{i} = {i}\n" for i in range(30))
    text = f"Intro line.\n```python\n{code}```\nOutro."
    parts = split_message(text, 120)
    assert len(parts) > 2
    inside = [p for p in parts if p.startswith("```python\n") and p.endswith("\n```")]
    assert len(inside) >= 2
    assert all(p.count("```") % 2 == 0 for p in parts)
    assert "".join(parts).count("value_") == 30


def test_huge_code_block() -> None:
    text = "```py\n" + "print(1)\n" * 500 + "```"
    parts = split_message(text, 2000)
    assert len(parts) == 3
    for part in parts:
        assert len(part) <= 2000 and part.startswith("```py\n") and part.endswith("```")
        assert set(part.splitlines()) <= {"```py", "print(1)", "```"}


def test_unclosed_fence_stays_open_only_in_the_last_part() -> None:
    parts = split_message("```\n" + "y = 2\n" * 100, 120)
    assert [p.count("```") % 2 for p in parts] == [0] * (len(parts) - 1) + [1]
    assert closed_fences("```\ny") == "```\ny\n```"
    assert closed_fences("```\ny\n") == "```\ny\n```"
    assert closed_fences("```\ny\n```") == "```\ny\n```"


# --- split_message: properties ------------------------------------------------------------

_PIECES = [
    "```", "```python\n", "```js\n", "\n```\n", "\n", "\n\n", " ", "   ", "\t", "\r\n", "`",
    "``", "word", "another", "x" * 60, " " * 150, "    indented = 1\n", "```" + "t" * 30 + "\n",
]  # fmt: skip
texts = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=12)), max_size=120).map(
    "".join
)
_LANG = re.compile(r"[A-Za-z0-9_+\-.#]{1,24}(?=\r?\n)")


def opening_lang(text: str, before: int) -> str:
    """The language tag of the last ``` before `before` (counted as str.count counts)."""
    last, at = -1, text.find("```")
    while at != -1 and at < before:
        last, at = at, text.find("```", at + 3)
    tag = _LANG.match(text, last + 3)
    return tag.group() if tag else ""


@settings(max_examples=400, deadline=None)
@given(text=texts, limit=st.integers(100, 400))
def test_split_properties(text: str, limit: int) -> None:
    spans = split_spans(text, limit)
    parts = split_message(text, limit)
    assert parts == [span.of(text) for span in spans]
    assert all(0 < len(part) <= limit for part in parts)
    if len(text) > limit:
        assert all(part.strip() for part in parts)

    # Reconstruction: the parts' own text, in order, with only whitespace between and around.
    covered = 0
    for span in spans:
        assert covered <= span.start < span.end
        assert text[covered : span.start].strip() == ""
        covered = span.end
    assert text[covered:].strip() == ""

    # Fences: every cut inside a block closes it and the next part reopens it, same language.
    for i, (span, part) in enumerate(zip(spans, parts, strict=True)):
        open_before = text[: span.start].count("```") % 2 == 1
        open_after = text[: span.end].count("```") % 2 == 1
        last = i == len(spans) - 1
        assert span.reopen == (f"```{opening_lang(text, span.start)}\n" if open_before else "")
        assert span.close == ("\n```" if open_after and not last else "")
        assert part.count("```") % 2 == (open_after if last else 0)


# --- Throttle --------------------------------------------------------------------------------


@given(
    interval=st.floats(0.001, 10),
    steps=st.lists(st.tuples(st.floats(0, 5), st.one_of(st.none(), st.floats(0, 5))), max_size=60),
)
def test_throttle_never_writes_closer_than_the_interval(
    interval: float, steps: list[tuple[float, float | None]]
) -> None:
    now, last, blocked = 0.0, None, -math.inf
    for wait, penalty in steps:
        now += wait
        if penalty is not None:
            blocked = max(blocked, now + penalty)
        at = next_write_at(last, interval, now, blocked)
        assert at >= now and at >= blocked
        if last is not None:
            assert at >= last + interval
        assert at in {now, blocked} or (last is not None and at == last + interval)  # no later
        now = last = at


@settings(max_examples=60, deadline=None)
@given(
    arrivals=st.lists(st.floats(0, 3), min_size=1, max_size=25),
    penalties=st.lists(st.tuples(st.floats(0, 3), st.floats(0, 2)), max_size=4),
)
def test_bucket_grants_are_spaced_fifo_and_respect_penalties(
    arrivals: list[float], penalties: list[tuple[float, float]]
) -> None:
    async def main() -> tuple[list[tuple[float, int]], list[tuple[float, float]], float]:
        clock = VirtualTime()
        bucket = bucket_for(clock, max_calls=4, per_seconds=1.0)
        grants: list[tuple[float, int]] = []
        blocks: list[tuple[float, float]] = []

        async def writer(k: int, at: float) -> None:
            await clock.sleep(at)
            await bucket.acquire()
            grants.append((clock.now, k))

        async def penalizer(at: float, retry_after: float) -> None:
            await clock.sleep(at)
            bucket.penalize(retry_after)
            blocks.append((clock.now, clock.now + retry_after))

        jobs = [writer(k, at) for k, at in enumerate(arrivals)]
        jobs += [penalizer(at, retry) for at, retry in penalties]
        await clock.run(asyncio.gather(*jobs))
        return grants, blocks, bucket.interval

    grants, blocks, interval = asyncio.run(main())
    assert len(grants) == len(arrivals)
    times = [t for t, _ in grants]
    assert all(b >= a + interval - 1e-9 for a, b in itertools.pairwise(times))
    for start, end in blocks:
        assert not any(start < t < end - 1e-9 for t in times)
    # FIFO: among writers that arrived while others waited, grants follow arrival order.
    waited = [k for t, k in grants if t > arrivals[k]]
    assert waited == sorted(waited, key=lambda k: (arrivals[k], k))


async def test_penalize_holds_back_a_waiter_already_queued() -> None:
    clock = VirtualTime()
    bucket = bucket_for(clock, max_calls=1, per_seconds=1.0)
    grants: list[float] = []

    async def main() -> None:
        await bucket.acquire()  # t=0
        queued = asyncio.create_task(bucket.acquire())  # would get t=1
        await clock.sleep(0.5)
        bucket.penalize(3.0)  # 429 at t=0.5: nobody before t=3.5
        await queued
        grants.append(clock.now)

    await clock.run(main())
    assert grants == [3.5]


async def test_chained_budgets_keep_every_channel_and_the_global_limit_as_sent() -> None:
    """Discord: a write spends its channel's bucket and the bot's global one (4/s here).
    Three channels write once, a fourth three times, all from t=0: the fourth's first write
    waits for the global budget until 0.75 s, and its next is spaced from then, as sent."""
    clock = VirtualTime()
    global_budget = bucket_for(clock, max_calls=4, per_seconds=1.0)
    channels = [bucket_for(clock, max_calls=1, per_seconds=1.0) for _ in range(4)]
    sent: list[tuple[float, int]] = []

    async def writer(channel: int, writes: int) -> None:
        budget = Budgets(channels[channel], global_budget)
        for _ in range(writes):
            await budget.acquire()
            sent.append((clock.now, channel))

    await clock.run(asyncio.gather(*(writer(c, 1 if c < 3 else 3) for c in range(4))))
    times = [t for t, _ in sent]
    assert all(b - a >= 0.25 - 1e-9 for a, b in itertools.pairwise(times))
    assert [t for t, c in sent if c == 3] == pytest.approx([0.75, 1.75, 2.75])


def test_buckets_share_by_key_and_forget_only_idle_unheld_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(throttle, "ACTIVE_BUCKETS_KEPT", 2)
    clock = VirtualTime()
    buckets = Buckets(5, 5.0, clock=clock, sleep=clock.sleep)
    held = buckets.get("channel-1")
    assert buckets.get("channel-1") is held
    assert buckets.get("channel-2") is not held
    for n in range(3, 10):
        buckets.get(f"channel-{n}")  # pushes idle ones to weak references
    assert buckets.get("channel-1") is held  # still held here, so still shared
    assert len(buckets) < 9  # the unheld idle ones are gone (a new one would equal them)


# --- render ------------------------------------------------------------------------------------


async def test_indicator_at_once_and_first_text_on_the_first_delta() -> None:
    clock = VirtualTime()
    surface = FakeSurface(clock)
    seen: list[float] = []

    async def deltas() -> AsyncIterator[str]:
        await clock.sleep(0.8)
        yield "Hel"
        await clock.sleep(0.1)
        yield "lo!"

    result = await clock.run(
        render(deltas(), surface, bucket_for(clock), on_first_visible=seen.append)
    )
    first, second = surface.writes[:2]
    assert (first.kind, first.at) == ("indicate", 0.0)
    assert (second.kind, second.at, second.text) == ("post", 0.8, "Hel" + STREAMING_INDICATOR)
    assert result.first_visible_at == 0.8 and seen == [0.8]
    assert surface.messages == result.texts == ["Hello!"]
    assert (result.posts, result.edits, result.error, result.note) == (1, 1, None, None)


async def test_concurrent_replies_in_one_bucket_never_outrun_it() -> None:
    clock = VirtualTime()
    bucket = bucket_for(clock, max_calls=10, per_seconds=1.0)
    surfaces = [FakeSurface(clock, latency=0.03) for _ in range(20)]
    words = [[f"r{k}w{i} " for i in range(15)] for k in range(20)]
    results = await clock.run(
        asyncio.gather(
            *(
                render(paced(clock, words[k], 0.25 + k / 1000), surface, bucket)
                for k, surface in enumerate(surfaces)
            )
        )
    )
    times = sorted(w.at for surface in surfaces for w in surface.sent())
    assert len(times) >= 2 * len(surfaces)  # they did stream: a post and edits each
    assert all(b >= a + bucket.interval - 1e-9 for a, b in itertools.pairwise(times))
    for k, (surface, result) in enumerate(zip(surfaces, results, strict=True)):
        assert surface.messages == result.texts == ["".join(words[k])]
        assert result.posts == 1


async def test_a_new_reply_is_not_queued_behind_in_between_edits() -> None:
    """Eight replies streaming through one budget of 4 writes/s; a ninth asks at t=5. Its
    first text waits for at most the one write already queued (plus its own slot), not
    behind an in-between edit of each of the eight; and every reply still ends whole."""
    clock = VirtualTime()
    bucket = bucket_for(clock, max_calls=4, per_seconds=1.0)
    surfaces = [FakeSurface(clock) for _ in range(9)]
    words = [[f"r{k}w{i} " for i in range(40)] for k in range(9)]

    async def late(k: int) -> RenderResult[int]:
        await clock.sleep(5.0 if k == 8 else k / 100)
        return await render(paced(clock, words[k], 0.25), surfaces[k], bucket)

    results = await clock.run(asyncio.gather(*(late(k) for k in range(9))))
    first_post = next(w.at for w in surfaces[8].sent() if w.kind == "post")
    assert first_post - (5.0 + 0.25) <= 2 * bucket.interval + 1e-9
    for k, (surface, result) in enumerate(zip(surfaces, results, strict=True)):
        assert surface.messages == result.texts == ["".join(words[k])]


async def test_fast_deltas_coalesce_and_every_edit_carries_the_newest_text() -> None:
    clock = VirtualTime()
    said: list[str] = []
    surface = FakeSurface(clock, newest=lambda: "".join(said))
    pieces = [f"t{i} " for i in range(100)]
    result = await clock.run(
        render(paced(clock, pieces, 0.01, said), surface, bucket_for(clock, 1, 0.25))
    )
    sent = surface.sent()
    assert result.posts == 1 and 2 <= result.edits <= 5  # 1 s of tokens, a write per 0.25 s
    for write in sent[:-1]:
        assert write.text == write.newest + STREAMING_INDICATOR  # never a stale partial
    assert sent[-1].text == "".join(pieces) == surface.messages[0]


async def test_lag_is_the_wait_of_the_oldest_text_each_write_shows() -> None:
    """A write per 0.25 s, a delta per 0.01 s: the oldest text in each write waited up to
    one interval, never more (what momentum_reply_lag_seconds records)."""
    clock = VirtualTime()
    lags: list[float] = []
    surface = FakeSurface(clock)
    pieces = [f"t{i} " for i in range(100)]
    result = await clock.run(
        render(paced(clock, pieces, 0.01), surface, bucket_for(clock, 1, 0.25), on_lag=lags.append)
    )
    assert len(lags) == result.posts + result.edits  # each write here shows new text
    assert lags[0] == 0.0  # the first text is posted as it arrives
    assert all(0.0 <= lag <= 0.25 + 1e-9 for lag in lags) and max(lags) > 0.2


async def test_long_reply_continues_in_new_messages_with_the_fence_reopened() -> None:
    clock = VirtualTime()
    surface = FakeSurface(clock, limit=160)
    text = "Here is the plan.\n\n```python\n" + "".join(f"step_{i}()\n" for i in range(40))
    text += "```\nGo get it!"
    pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
    result = await clock.run(render(paced(clock, pieces, 0.01), surface, bucket_for(clock, 10)))
    assert surface.messages == result.texts == split_message(text, layout_limit(160))
    assert len(result.texts) >= 4
    assert result.texts[0] == "Here is the plan."
    for middle in result.texts[1:-1]:
        assert middle.startswith("```python\n") and middle.endswith("\n```")
    assert result.texts[-1].endswith("```\nGo get it!")
    order = [w.message for w in surface.sent()]
    assert order == sorted(order)  # a message is finished before the next one starts


async def test_stream_error_keeps_the_text_so_far_and_adds_the_note() -> None:
    clock = VirtualTime()
    surface = FakeSurface(clock)

    async def deltas() -> AsyncIterator[str]:
        yield "Let's look at "
        await clock.sleep(2)
        yield "your goals"
        raise RuntimeError("the model went away")

    note = "⚠️ I lost my train of thought. Please try again."
    result = await clock.run(render(deltas(), surface, bucket_for(clock), fail_note=note))
    assert surface.messages == [f"Let's look at your goals\n\n{note}"]
    assert isinstance(result.error, RuntimeError) and result.note == note


async def test_failure_marker_inside_a_code_block_closes_it_before_the_note() -> None:
    clock = VirtualTime()
    surface = FakeSurface(clock)
    closed: list[bool] = []

    async def deltas() -> AsyncIterator[str | Failure]:
        try:
            yield "Try:\n```bash\nls -la"
            yield Failure("⚠️ The coach timed out.")
            yield "never shown"
        finally:
            closed.append(True)

    result = await clock.run(render(deltas(), surface, bucket_for(clock)))
    assert surface.messages == ["Try:\n```bash\nls -la\n```\n\n⚠️ The coach timed out."]
    assert result.error is None and result.note == "⚠️ The coach timed out." and closed == [True]


async def test_failure_before_any_text_still_tells_the_user() -> None:
    clock = VirtualTime()
    surface = FakeSurface(clock)

    async def deltas() -> AsyncIterator[str]:
        raise ConnectionError("dropped")
        yield ""  # pragma: no cover

    result = await clock.run(render(deltas(), surface, bucket_for(clock)))
    assert surface.messages == [DEFAULT_FAIL_NOTE] and result.posts == 1


async def test_rate_limited_edit_penalizes_the_bucket_and_retries_with_the_newest_text() -> None:
    clock = VirtualTime()
    said: list[str] = []
    surface = FakeSurface(clock, refuse={2: 1.0}, newest=lambda: "".join(said))
    pieces = [f"p{i} " for i in range(30)]
    result = await clock.run(
        render(paced(clock, pieces, 0.05, said), surface, bucket_for(clock, 1, 0.1))
    )
    sent = surface.sent()
    refused = next(i for i, w in enumerate(sent) if w.kind == "429")
    retry = sent[refused + 1]
    assert sent[refused].kind == "429" and retry.kind == "edit"
    assert retry.at >= sent[refused].at + 1.0  # the bucket waited out retry_after
    assert retry.text == retry.newest + STREAMING_INDICATOR
    assert len(retry.text) > len(sent[refused].text)  # newer text, not the refused one
    assert result.rate_limited == 1 and surface.messages == ["".join(pieces)]


async def test_a_platform_that_keeps_refusing_is_reported() -> None:
    clock = VirtualTime()
    surface = FakeSurface(clock, refuse={n: 0.1 for n in range(1, 20)})
    with pytest.raises(RateLimited):
        await clock.run(render(paced(clock, ["hi"], 0.01), surface, bucket_for(clock)))
    assert surface.attempts == MAX_RATE_LIMIT_RETRIES + 1


GIVE_UP = range(2, MAX_RATE_LIMIT_RETRIES + 3)  # every edit after the first post, until given up


async def test_a_reply_given_up_on_loses_its_indicator_when_the_platform_allows() -> None:
    clock = VirtualTime()
    surface = FakeSurface(clock, refuse={n: 0.1 for n in GIVE_UP})
    words = paced(clock, ["Keep ", "going ", "strong"], 0.5)
    with pytest.raises(RateLimited):
        await clock.run(render(words, surface, bucket_for(clock)))
    assert surface.messages == ["Keep"]  # cut short, but no longer looking alive
    assert surface.attempts == MAX_RATE_LIMIT_RETRIES + 3


@pytest.mark.parametrize(
    ("refuse", "why"),
    [
        ({n: 0.1 for n in range(2, 20)}, "the storm goes on"),
        ({n: UNFREEZE_WAIT_SECONDS + 1 for n in GIVE_UP}, "the platform's wait is too long"),
    ],
)
async def test_a_reply_given_up_on_keeps_its_indicator_when_the_platform_refuses(
    refuse: dict[int, float], why: str
) -> None:
    clock = VirtualTime()
    surface = FakeSurface(clock, refuse=refuse)
    words = paced(clock, ["Keep ", "going ", "strong"], 0.5)
    with pytest.raises(RateLimited):
        await clock.run(render(words, surface, bucket_for(clock)))
    assert surface.messages == ["Keep " + STREAMING_INDICATOR], why


async def test_empty_reply_posts_nothing_and_indicate_is_optional() -> None:
    clock = VirtualTime()
    surface = FakeSurface(clock)
    result = await clock.run(render(paced(clock, ["", "  "], 0.01), surface, bucket_for(clock)))
    assert result.texts == [] and surface.messages == [] and result.posts == 0
    plain = PlainSurface()
    result = await clock.run(render(paced(clock, ["a", "b"], 0.01), plain, bucket_for(clock)))
    assert plain.messages == ["ab"]


async def test_a_surface_too_small_to_stream_into_is_refused() -> None:
    clock = VirtualTime()
    with pytest.raises(ValueError):
        await render(paced(clock, ["x"], 0), FakeSurface(clock, limit=100), bucket_for(clock))


@settings(max_examples=150, deadline=None)
@given(text=texts, cuts=st.lists(st.integers(0, 3000), max_size=40), limit=st.integers(106, 320))
def test_render_always_ends_with_the_split_of_the_full_text(
    text: str, cuts: list[int], limit: int
) -> None:
    bounds = sorted({0, len(text), *(c for c in cuts if c < len(text))})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]

    async def main() -> tuple[FakeSurface, list[str]]:
        clock = VirtualTime()
        surface = FakeSurface(clock, limit=limit)
        result = await clock.run(
            render(paced(clock, pieces, 0.003), surface, bucket_for(clock, 1, 0.01))
        )
        return surface, result.texts

    surface, texts_ = asyncio.run(main())
    final = closed_fences(text)
    expected = split_message(final, layout_limit(limit)) if final.strip() else []
    assert texts_ == surface.messages == expected
    order = [w.message for w in surface.sent()]
    assert order == sorted(order)  # once message n+1 exists, message n is never written again


async def test_a_burst_goes_at_once_after_a_quiet_spell_then_the_pace_holds() -> None:
    clock = VirtualTime()
    bucket = EditBucket(4, 1.0, clock=clock, sleep=clock.sleep, burst=3)
    grants: list[float] = []

    async def writes(n: int) -> None:
        for _ in range(n):
            await bucket.acquire()
            grants.append(clock.now)

    async def main() -> None:
        await writes(6)
        await clock.sleep(2.0)  # quiet: the burst is back
        await writes(4)

    await clock.run(main())
    assert grants == pytest.approx([0, 0, 0, 0.25, 0.5, 0.75, 2.75, 2.75, 2.75, 3.0])
    assert bucket.idle() is False and EditBucket(4, 1.0, burst=3).idle()


async def test_backlog_is_the_wait_a_write_queued_now_would_have() -> None:
    clock = VirtualTime()
    bucket = bucket_for(clock, max_calls=4, per_seconds=1.0)  # a slot every 0.25 s

    async def main() -> list[float]:
        seen = [bucket.backlog()]  # free: no wait
        await bucket.acquire()
        seen.append(bucket.backlog())  # the next slot
        queued = [asyncio.create_task(bucket.acquire()) for _ in range(2)]
        await asyncio.sleep(0)
        seen.append(bucket.backlog())  # behind the two queued
        await asyncio.gather(*queued)
        return seen

    assert await clock.run(main()) == pytest.approx([0.0, 0.25, 0.75])


async def test_try_acquire_takes_a_free_slot_and_never_waits() -> None:
    now = [0.0]
    bucket = EditBucket(2, 1.0, clock=lambda: now[0])  # one write per 0.5 s
    assert bucket.try_acquire()
    assert not bucket.try_acquire()  # too soon: refused at once, not queued
    now[0] = 0.5
    assert bucket.try_acquire()
    bucket.penalize(3.0)
    now[0] = 3.0
    assert not bucket.try_acquire()
    now[0] = 3.5
    assert bucket.try_acquire()
