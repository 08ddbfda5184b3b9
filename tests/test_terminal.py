"""The console's rendering rules: which blocks of a streaming reply are finished, and what
Markdown becomes on a terminal (bots/terminal.py)."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console as RichConsole

from bots.terminal import finished_blocks, rendered


def streamed(text: str, step: int) -> tuple[list[str], str]:
    """The blocks committed while `text` arrives `step` characters at a time, and the rest."""
    blocks: list[str] = []
    shown = 0
    for end in range(step, len(text) + step, step):
        done, shown = finished_blocks(text[:end], shown)
        blocks += done
    return blocks, text[shown:]


def test_a_block_is_finished_when_the_next_one_begins() -> None:
    assert finished_blocks("Hi there.\n\n", 0) == ([], 0)  # the next may still continue it
    assert finished_blocks("Hi there.\n\nNext", 0) == (["Hi there."], 11)


def test_a_blank_line_inside_a_code_fence_ends_nothing() -> None:
    text = "Try:\n\n```\nmonday: run\n\ntuesday: rest\n```\n\nDone"
    blocks, rest = streamed(text, 1)
    assert blocks == ["Try:", "```\nmonday: run\n\ntuesday: rest\n```"]
    assert rest == "Done"


def test_an_indented_line_stays_with_the_list_item_above() -> None:
    blocks, rest = streamed("1. Run\n\n   three times\n\n2. Rest", 1)
    assert blocks == ["1. Run\n\n   three times"]
    assert rest == "2. Rest"


# Text made of the pieces that decide where a block ends.
markdownish = st.lists(
    st.sampled_from(["a", "b", " ", "\n", "\n\n", "```", "- ", "1. ", "  ", "*"]), max_size=30
).map("".join)


@given(markdownish, st.integers(min_value=1, max_value=7))
def test_streaming_commits_what_the_whole_text_would_and_loses_nothing(
    text: str, step: int
) -> None:
    blocks, rest = streamed(text, step)
    whole, at = finished_blocks(text, 0)
    assert blocks == whole and rest == text[at:]  # what is printed for good never changes
    assert "\n\n".join([*blocks, rest]).split() == text.split()  # every word, once, in order


@given(markdownish)
def test_a_finished_block_never_splits_a_code_fence(text: str) -> None:
    blocks, _ = finished_blocks(text, 0)
    for block in blocks:
        fences = [line for line in block.splitlines() if line.lstrip().startswith("```")]
        assert len(fences) % 2 == 0


def shown(markdown: str) -> str:
    out = io.StringIO()
    RichConsole(file=out, width=80, color_system=None).print(rendered(markdown))
    return out.getvalue()


def test_markdown_is_drawn_not_shown_raw() -> None:
    text = shown("**Goal setting**: use `/goal add`, [docs](https://example.com)")
    assert "**" not in text and "`" not in text
    assert "Goal setting: use /goal add, docs (https://example.com)" in text


def test_html_in_a_reply_reads_as_written() -> None:
    text = shown("Save it with /goal add <goal>. <script>alert(1)</script>\n\n<b>hi</b>")
    assert "/goal add <goal>." in text
    assert "<script>alert(1)</script>" in text and "<b>hi</b>" in text


def test_terminal_escapes_from_the_model_never_reach_the_terminal() -> None:
    assert "\x1b" not in shown("red \x1b[31mtext\x1b[0m and a bell \x07")
