"""How a process logs (LOG_FORMAT): readable lines, or one JSON object per line for a log
pipeline. Either way every line logged during a reply names its user and event
(core/log_context.py).

JSON with the standard library's Formatter rather than python-json-logger: the record is a
handful of fields, and one `json.dumps` says exactly which; a dependency would add options
we do not need and an API that has changed between its major versions.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.log_context import TurnFilter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(turn)s: %(message)s"


class TextFormatter(logging.Formatter):
    """The readable line, with ` [user event]` after the logger's name during a reply."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        user, event = getattr(record, "user_id", None), getattr(record, "event_id", None)
        record.turn = f" [{user} {event}]" if user else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: time (UTC, ISO 8601), level, logger,
    message, user_id and event_id (null outside a reply), and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "user_id": getattr(record, "user_id", None),
            "event_id": getattr(record, "event_id", None),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def setup_logging(level: int | str, log_format: str, file: Path | None = None) -> None:
    """The root handler (stderr, or `file`) with the format and the turn's tags."""
    handler: logging.Handler = (
        logging.FileHandler(file, encoding="utf-8") if file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(TurnFilter())
    logging.basicConfig(level=level, handlers=[handler])  # no-op if set up (tests)
    if log_format == "json":
        logging.captureWarnings(True)  # a warning is a log line too, not raw text on stderr
