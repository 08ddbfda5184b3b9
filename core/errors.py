"""The two failures the coach's callers handle: the database is out of reach, and a request
the coach cannot carry out (its `user_text` says why, safe to show as it is)."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """The database cannot be reached or written right now."""


class CoachError(Exception):
    """A request the coach cannot carry out; `user_text` says why, for the user."""

    def __init__(self, user_text: str) -> None:
        super().__init__(user_text)
        self.user_text = user_text
