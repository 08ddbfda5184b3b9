"""Crisis language gets a safety reply with resources, before any gate or the model.

This is a deliberately simple, high-recall pattern check, in each language of
`core/safety_languages.py`: a false positive costs one extra caring message; a miss could cost
far more. The reply is in the language that matched. It never blocks the conversation
afterwards. Pure and fast: a few compiled regular expressions per language.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from core.safety_languages import LANGUAGES, CrisisLanguage

ENGLISH = "en"
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'"})
_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class _Compiled:
    crisis: re.Pattern[str]
    everyday: re.Pattern[str] | None
    hints: frozenset[str]


def _compile(language: CrisisLanguage) -> _Compiled:
    everyday = re.compile("|".join(language.everyday)) if language.everyday else None
    return _Compiled(re.compile("|".join(language.crisis)), everyday, language.hints)


_COMPILED = {code: _compile(language) for code, language in LANGUAGES.items()}

SAFETY_REPLY = LANGUAGES[ENGLISH].reply


def _lower(text: str) -> str:
    """Look-alikes folded (NFKC), zero-width characters gone, lower case, accents kept."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf").casefold()
    return unicodedata.normalize("NFC", text)


def _folded(lower: str) -> str:
    """What the patterns read: `_lower`'s text with accents removed, apostrophes straight,
    every run of whitespace one space."""
    decomposed = unicodedata.normalize("NFD", lower)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WHITESPACE.sub(" ", bare.translate(_APOSTROPHES))


def _speaks_crisis(language: _Compiled, folded: str) -> bool:
    if language.everyday is not None:
        folded = language.everyday.sub(" ", folded)
    return language.crisis.search(folded) is not None


def crisis_language(text: str) -> str | None:
    """The code of the language whose crisis language `text` uses ("en", "es", ...), or None.

    When several match (a bare "suicidio" is Spanish and Italian), the one whose common words
    the text uses most; a tie goes to the first in `LANGUAGES`."""
    lower = _lower(text)
    folded = _folded(lower)
    matched = [code for code, language in _COMPILED.items() if _speaks_crisis(language, folded)]
    if len(matched) <= 1:
        return matched[0] if matched else None
    words = _WORD.findall(lower) + _WORD.findall(folded)
    return max(matched, key=lambda code: sum(word in _COMPILED[code].hints for word in words))


def is_crisis(text: str) -> bool:
    return crisis_language(text) is not None


def safety_reply(language: str) -> str:
    """The safety reply in `language` (a code `crisis_language` returned); English otherwise."""
    known = LANGUAGES.get(language) or LANGUAGES[ENGLISH]
    return known.reply
