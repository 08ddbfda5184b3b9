"""What the coach says about itself when something goes wrong: every such sentence, once.

The model's words are not here, nor the help and command answers (bots/commands.py): these
are the sentences every platform shows the same way, each adapter only dressing them (Slack's
warning sign and italics, Discord's `/coach` prefix). `counted` is the one way every text
(and log line) says how many of something there are.
"""

from __future__ import annotations

STORE_DOWN_TEXT = (
    "I can't reach my memory right now, so nothing was saved. Please try again in a minute."
)
STORE_DOWN_AFTER_REPLY_TEXT = (  # the user has seen (part of) the reply; it was not kept
    "I can't reach my memory right now, so I won't remember this reply. "
    "Please try again in a minute."
)
STORE_DOWN_COMMAND_TEXT = "I can't reach my memory right now. Please try again in a minute."
INTERNAL_ERROR_TEXT = "Something went wrong on my side. It has been logged; please try again."
# A reply stopped by a restart: at shutdown once its grace ran out, or after a crash.
CUT_OFF_TEXT = "My reply was cut off by a restart. Please ask again."
EMPTY_MESSAGE_TEXT = (
    "I found no text in that message, and text is all I can read. "
    "Type something and I'm all yours!"
)
DUPLICATE_TEXT = "I've already answered this message."

# The model's service failing, by kind (core.llm.ErrorKind).
LLM_TEXT = {
    "not_configured": (
        "The coach isn't configured yet: set ANTHROPIC_API_KEY (in the environment or .env) "
        "and restart. Commands like /help and /goals work without it."
    ),
    "unavailable": (
        "The coach's AI service is unavailable right now. Please try again in a few minutes."
    ),
    "rate_limited": (
        "The coach is getting too many requests right now. Please try again in a minute."
    ),
    "interrupted": "The coach's AI service stopped in the middle of this reply. Please try again.",
    "timeout": "The coach took too long to answer. Please try again in a moment.",
    "misconfigured": "The coach's AI service rejected its credentials; the operator has been told.",
    "rejected": "The coach's AI service could not handle this message. Try rephrasing it.",
}


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`1 message`, `4 messages`, `0 messages`: never "message(s)". `plural` for the irregular
    ones (`counted(n, "try", "tries")`)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def too_long_text(length: int, limit: int) -> str:
    return (
        f"That message is {length:,} characters; I can take up to {limit:,}. "
        "Could you shorten it or send it in parts?"
    )
