"""Reading a SlackApiError safely, whatever body came with it.

Slack answers an error with JSON (`{"ok": false, "error": "..."}`), but a proxy or load
balancer in front of it may answer instead, and slack_sdk 3.48 then hands over something else
as `error.response`:

- a `text/plain` body (Envoy's `upstream connect error …`): an AsyncSlackResponse whose
  `data` is that str, so `error.response.get(...)` raises AttributeError;
- an HTML page (`text/html`, nginx's or Cloudflare's 502): `data` is `{}`, the page is dropped;
- a page mislabelled `application/json`: not an AsyncSlackResponse at all, but aiohttp's
  ClientResponse (`.status`, no `.status_code`, no `.get`).

`refusal(error)` reads the status, Slack's error code and the headers from any of these, so
that a 5xx is a 5xx and a 429 a 429 whichever body carried it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from core.metrics import RATE_LIMITED

BODY_SHOWN_CHARS = 80  # of a body that is not Slack's JSON, in a log line


@dataclass(frozen=True)
class Refusal:
    """What Slack (or whatever answered in its place) said when a call failed."""

    status: int  # the HTTP status; 0 when the answer had none we could read
    code: str | None  # Slack's error code; None when the body was not Slack's JSON
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""  # the start of a body that was not Slack's JSON, for the log

    @property
    def rate_limited(self) -> bool:
        return self.status == 429 or self.code == "ratelimited"

    @property
    def server_error(self) -> bool:
        """A 5xx: the call may have been carried out all the same, and may work if retried."""
        return self.status >= 500

    def __str__(self) -> str:
        """For a log line: Slack's code, or the status and what came instead of JSON."""
        if self.code is not None:
            return self.code
        shown = " ".join(self.body.split())[:BODY_SHOWN_CHARS]
        return f"HTTP {self.status or '?'}" + (f" {shown!r}" if shown else " (no Slack error)")


def refusal(error: SlackApiError) -> Refusal:
    response = error.response
    status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        status = getattr(response, "status", None)  # aiohttp's ClientResponse
    data = getattr(response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    headers = getattr(response, "headers", None)
    return Refusal(
        status=status if isinstance(status, int) else 0,
        code=code if isinstance(code, str) else None,
        headers=headers if isinstance(headers, Mapping) else {},
        body=data if isinstance(data, str) else "",
    )


class CountRateLimits(AsyncRetryHandler):
    """Counts every 429 Slack answers (momentum_platform_rate_limited), and never retries:
    first among a client's retry handlers, it sees each answer, also those that the
    handlers after it wait out."""

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None and response.status_code == 429:
            RATE_LIMITED.labels("slack").inc()
        return False
