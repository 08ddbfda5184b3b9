"""Crisis language gets a safety reply with resources, before any gate or the model.

This is a deliberately simple, high-recall pattern check: a false positive costs one extra
caring message; a miss could cost far more. It never blocks the conversation afterwards.
"""

from __future__ import annotations

import re
import unicodedata

_CRISIS_PATTERNS = [
    r"\bkill(ing)?\s+my\s*self\b",
    r"\bend(ing)?\s+(it\s+all|my\s+life)\b",
    r"\btake\s+my\s+(own\s+)?life\b",
    r"\bsuicid(e|al)\b",
    r"\bwant(ed)?\s+to\s+die\b",
    r"\bwish\s+i\s+(was|were)\s+dead\b",
    r"\bbetter\s+off\s+dead\b",
    r"\bno\s+reason\s+to\s+live\b",
    r"\bdon'?t\s+want\s+to\s+(live|be\s+alive|wake\s+up)\b",
    r"\b(self[-\s]?harm|hurt(ing)?\s+myself|cut(ting)?\s+myself)\b",
    r"\boverdos(e|ing)\b",
]
_CRISIS = re.compile("|".join(_CRISIS_PATTERNS), re.IGNORECASE)

SAFETY_REPLY = (
    "I'm really glad you told me, and I'm taking it seriously. I'm an AI coach, so I can't "
    "give you the support you deserve right now, but people can, right away:\n"
    "• If you might act on these thoughts or are in danger, call your local emergency number now "
    "(112 in Europe, 911 in the US and Canada, 999 in the UK).\n"
    "• US: call or text 988 (Suicide & Crisis Lifeline). UK & Ireland: Samaritans, 116 123. "
    "Elsewhere: findahelpline.com lists free, confidential lines in your country.\n"
    "• If you can, reach out to someone you trust and tell them how you're feeling.\n"
    "You don't have to go through this alone."
)


def _normalize(text: str) -> str:
    # Fold look-alike characters and strip zero-width ones so spacing tricks still match.
    folded = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in folded if unicodedata.category(ch) != "Cf").replace("’", "'")


def is_crisis(text: str) -> bool:
    return _CRISIS.search(_normalize(text)) is not None
