"""Where a long reply breaks into messages: pure, and tested exhaustively (hypothesis).

A cut prefers a paragraph break, then a line break, then a space, then any point that splits
no ``` fence and no HTML entity; a code block cut in two is closed and reopened with its
language tag. `split_spans` states the contract precisely.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import NamedTuple

FENCE = "```"
FENCE_CLOSE = "\n" + FENCE  # what closes a code block at the end of a message part
MIN_SPLIT_LIMIT = 100  # below this a part could not hold a reopened fence and some text
MAX_LANG_TAG = 24  # a longer "```word" is not a language tag (bounds the reopen line)

_WHITESPACE = re.compile(r"\s+")
# Slack sends and shows `<`, `>` and `&` as &lt; &gt; &amp;: a hard cut must not halve one.
_ENTITY = re.compile(r"&(?:[A-Za-z]{2,8}|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});")
MAX_ENTITY = 10  # the longest _ENTITY match
_LANG_TAG = re.compile(rf"[A-Za-z0-9_+\-.#]{{1,{MAX_LANG_TAG}}}(?=\r?\n)")


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


class Fences:
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


class Cut(NamedTuple):
    span: Span
    resume: int  # where the next message's text begins; the whitespace before it is dropped
    last: bool  # the rest of the text fits: this span ends it


def next_cut(text: str, pos: int, limit: int, fences: Fences) -> Cut:
    """The message starting at `pos`: cut at the latest paragraph break that fits, else line
    break, else space, else the latest point that splits no fence."""
    while True:
        lang = fences.open_lang(pos)
        reopen = "" if lang is None else f"{FENCE}{lang}\n"
        room = limit - len(reopen)
        if len(text) - pos <= room:
            return Cut(Span(pos, len(text), reopen), len(text), True)

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
        return Cut(Span(pos, c, reopen, close), resume, False)


def _splits_entity(text: str, c: int) -> bool:
    """Would a cut at `c` fall inside an HTML entity such as &lt;?"""
    start = text.rfind("&", max(0, c - MAX_ENTITY), c)
    if start < 0:
        return False
    entity = _ENTITY.match(text, start)
    return entity is not None and entity.end() > c


def last_visible(text: str) -> int:
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
    fences, spans, pos, last = Fences(text), [], 0, last_visible(text)
    while pos <= last:
        cut = next_cut(text, pos, limit, fences)
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
    if Fences(text).open_lang(len(text)) is None:
        return text
    return text + (FENCE if text.endswith("\n") else FENCE_CLOSE)
