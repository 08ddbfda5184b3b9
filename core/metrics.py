"""What an operator can watch (`/metrics`, Prometheus): every metric Momentum keeps, in one
place, on prometheus_client's default registry (so its process and Python collectors come
along). Each is counted by the code that knows the fact, one line where it is known.

Metrics are per process: Prometheus sums them over the processes it scrapes.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from core.events import Denied, Done, Failed, ReplyEvent, SafetyReply
from core.models import Usage

# Seconds, from "instant" to "the user gave up": where replies and their first words fall.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REPLIES = Counter(
    "momentum_replies",
    "Replies to user messages, by platform and how they ended: done, denied (window "
    "closed), safety, duplicate (a platform retry), failed:<kind>.",
    ["platform", "outcome"],
)
OVERHEAD = Histogram(
    "momentum_reply_overhead_seconds",
    "Message arrival to its first visible text, minus the model's own time to first token: "
    "what Momentum adds in front of the first words.",
    ["platform"],
    buckets=LATENCY_BUCKETS,
)
FIRST_TOKEN = Histogram(
    "momentum_time_to_first_token_seconds",
    "The model's time to its first token, from the request.",
    ["platform"],
    buckets=LATENCY_BUCKETS,
)
LAG = Histogram(
    "momentum_reply_lag_seconds",
    "A model delta's arrival to the platform write that first shows it (edit streaming).",
    ["platform"],
    buckets=LATENCY_BUCKETS,
)
RATE_LIMITED = Counter(
    "momentum_platform_rate_limited",
    "HTTP 429 answers from a chat platform's API, including those the SDK waited out.",
    ["platform"],
)
MODEL_ERRORS = Counter(
    "momentum_model_errors",
    "Model calls that failed, by kind (unavailable, rate_limited, interrupted, timeout, "
    "misconfigured, rejected).",
    ["kind"],
)
TOKENS = Counter(
    "momentum_tokens",
    "Model tokens of chat replies: input, output, cache_read, cache_write.",
    ["kind"],
)
WINDOWS_OPEN = Gauge(
    "momentum_windows_open", "Meeting windows open, as of the scheduler's last refresh."
)
NOTICES = Counter(
    "momentum_notices",
    "Window notices sent, by outcome: delivered, failed (the platform refused every quick "
    "try; handed back for a later one), unreachable (no notifier here for the platform).",
    ["outcome"],
)
NOTICES_PENDING = Gauge(
    "momentum_notices_pending",
    "Notices due for another try at the scheduler's last refresh (at most one refresh's "
    "batch).",
)
STORE_ERRORS = Counter(
    "momentum_store_errors",
    "Store operations that failed as unavailable (StoreUnavailable), by backend.",
    ["backend"],
)


def count_reply(platform: str, event: ReplyEvent) -> None:
    """Count a reply by the event that ends it (other events pass uncounted)."""
    match event:
        case Done():
            outcome = "done"
        case Denied():
            outcome = "denied"
        case SafetyReply():
            outcome = "safety"
        case Failed(kind="duplicate"):
            outcome = "duplicate"
        case Failed(kind=kind):
            outcome = f"failed:{kind}"
        case _:
            return
    REPLIES.labels(platform, outcome).inc()


def count_tokens(usage: Usage) -> None:
    TOKENS.labels("input").inc(usage.input_tokens)
    TOKENS.labels("output").inc(usage.output_tokens)
    TOKENS.labels("cache_read").inc(usage.cache_read_input_tokens)
    TOKENS.labels("cache_write").inc(usage.cache_creation_input_tokens)
