"""User text, cleaned once where it enters the core: what is stored, sent to the model, echoed.

Pure. The rules, chosen so that every platform and the terminal show the same thing:
- Control characters carry no meaning in a chat message and can drive a terminal (ESC
  sequences) or break storage (NUL): they are removed, except newline and tab, and a
  terminal escape sequence goes as a whole. `\\r\\n` and a
  lone `\\r` become `\\n`.
- Bidi embedding, override and isolate controls (U+202A-U+202E, U+2066-U+2069) can make text
  display in a different order than it is stored ("Trojan Source") and leak into the text
  around an echo: they are removed. Right-to-left letters need none of them; the marks
  U+200E/U+200F stay.
- Invisible characters (whitespace and format characters such as ZWSP, ZWJ, BOM) are trimmed
  at both ends; text made only of them is empty. Inside the text they stay: a ZWJ joins
  the people of a family emoji.
"""

from __future__ import annotations

import re
import unicodedata

KEPT_CONTROLS = frozenset("\n\t")
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NEWLINES = re.compile(r"\r\n?")
# Terminal escape sequences go whole (CSI such as colours, OSC such as window titles), so a
# pasted coloured log leaves its words, not `[31m` debris.
_ESCAPE_SEQUENCE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])")


def is_invisible(char: str) -> bool:
    """Whitespace or a format character (Cf): nothing a reader can see."""
    return char.isspace() or unicodedata.category(char) == "Cf"


def without_controls(text: str) -> str:
    """Newlines normalised, control characters (but newline and tab) and bidi controls gone."""
    text = _ESCAPE_SEQUENCE.sub("", _NEWLINES.sub("\n", text))
    return "".join(
        char
        for char in text
        if char not in BIDI_CONTROLS
        and (char in KEPT_CONTROLS or unicodedata.category(char) != "Cc")
    )


def trim_invisible(text: str) -> str:
    start, end = 0, len(text)
    while start < end and is_invisible(text[start]):
        start += 1
    while end > start and is_invisible(text[end - 1]):
        end -= 1
    return text[start:end]


def clean_text(text: str) -> str:
    """A user's message as the coach keeps it; "" when nothing visible is left."""
    return trim_invisible(without_controls(text))


def plain_argument(text: str) -> str:
    """A command argument the grammar parses (a number, a time, a zone name): compatibility
    forms folded (full-width `９am` -> `9am`) and every invisible character except spaces
    removed, so a pasted ZWSP cannot turn `Europe/Paris` into an unknown zone."""
    folded = unicodedata.normalize("NFKC", without_controls(text))
    words = ("".join(c for c in word if unicodedata.category(c) != "Cf") for word in folded.split())
    return " ".join(word for word in words if word)


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
