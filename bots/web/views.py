"""What the web API says, as JSON: the coach's decisions and records in the shape a client
reads (times in UTC ISO-8601, and as the user reads them in their zone)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bots.voice import meeting_line, proposal_text
from core.access import Standing
from core.models import Goal, Meeting, Message, Proposal, Role, User
from core.progress import GoalProgress
from core.proposals import Decision
from core.session import HistoryPage
from core.zones import UserTime

JSON = dict[str, Any]


def moment(when: datetime, time: UserTime) -> JSON:
    return {"utc": when.isoformat().replace("+00:00", "Z"), "local": time(when)}


def meeting_view(meeting: Meeting, number: int, time: UserTime) -> JSON:
    return {
        "number": number,
        "id": meeting.id,
        "start": moment(meeting.start, time),
        "duration_minutes": meeting.duration_minutes,
        "weekly": meeting.series_id is not None,
        "text": meeting_line(meeting, time),
    }


def access_view(standing: Standing) -> JSON:
    access, time = standing.access, standing.time
    return {
        "reachable": access.allowed,
        "reason": access.reason.value,
        "phase": access.phase.value,
        "current_meeting": meeting_view(access.meeting, 0, time) if access.meeting else None,
        "window_closes_at": moment(access.window_closes_at, time)
        if access.window_closes_at
        else None,
        "next_opening": moment(access.next_opens_at, time) if access.next_opens_at else None,
        "timezone": time.zone.key,
        "text": standing.describe(),
    }


def message_view(message: Message) -> JSON:
    return {
        "id": message.id,
        "role": "user" if message.role is Role.USER else "coach",
        "content": message.text,
        "created_at": message.created_at.isoformat().replace("+00:00", "Z"),
        "incomplete": not message.complete,
    }


def history_view(page: HistoryPage, page_size: int) -> JSON:
    return {
        "messages": [message_view(m) for m in page.messages],
        "page": page.page,
        "pages": page.pages,
        "page_size": page_size,
        "total": page.total,
    }


def goal_view(
    goal: Goal, number: int, progress: GoalProgress | None = None, time: UserTime | None = None
) -> JSON:
    """A goal; an active one's view (with `progress` and the user's `time`) also has its last
    progress entry (or null) and its streak of weeks."""
    view: JSON = {"number": number, "id": goal.id, "text": goal.text, "status": goal.status.value}
    if progress is not None and time is not None:
        latest = progress.latest
        view["last_progress"] = (
            {"text": latest.text, "at": moment(latest.created_at, time)} if latest else None
        )
        view["streak_weeks"] = progress.streak
    return view


def user_view(user: User, time: UserTime) -> JSON:
    return {
        "id": user.id,
        "platform": user.identity.platform.value,
        "name": user.identity.display_name or user.identity.external_id,
        "phase": user.phase.value,
        "timezone": time.zone.key,
        "timezone_chosen": time.chosen,
    }


def proposal_view(proposal: Proposal) -> JSON:
    """A proposal to confirm (POST /api/v1/proposals/{id}/confirm) or decline."""
    return {
        "id": proposal.id,
        "action": proposal.kind.value,
        "summary": proposal.summary,
        "text": proposal_text(proposal),
        "expires_at": proposal.expires_at.isoformat().replace("+00:00", "Z"),
    }


def decision_view(decision: Decision) -> JSON:
    return {
        "proposal_id": decision.proposal.id if decision.proposal else None,
        "status": decision.status.value if decision.status else None,
        "acted": decision.acted,
        "content": decision.text,
    }
