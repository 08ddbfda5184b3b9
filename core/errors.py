"""The failures the coach's callers handle: the database is out of reach, a request the coach
cannot carry out (its `user_text` says why, safe to show as it is), and set-up that cannot work."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """The database cannot be reached or written right now."""


class CoachError(Exception):
    """A request the coach cannot carry out; `user_text` says why, for the user."""

    def __init__(self, user_text: str) -> None:
        super().__init__(user_text)
        self.user_text = user_text


class SetupError(Exception):
    """Settings or credentials that cannot work; the message says what to change.

    Raised by the platforms' start-up checks (bots/startup.py); `momentum` prints it, exit 1.
    """
