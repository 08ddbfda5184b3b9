"""The REST chat API, /api/v1: access, history, send (JSON or server-sent events), and the
user's goals, meetings, phase, timezone and data. Each route is a Coach call and a view."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from bots.web.auth import Caller, Web, caller, web_of, within_budget
from bots.web.calendar import meetings_calendar
from bots.web.replies import BAD_INPUT, Frame, WebReply, event_id
from bots.web.views import (
    JSON,
    access_view,
    decision_view,
    goal_view,
    history_view,
    meeting_view,
    user_view,
)
from bots.web_links import calendar_feed_url
from core.keys import LINK_MINUTES, digest
from core.models import GoalStatus, Phase, User
from core.progress import GoalProgress
from core.session import Session

api = APIRouter(prefix="/api/v1")
SIGN_IN_STALE = "That sign-in link has expired or was used already: ask for a new one (/coach web)."
Signed = Annotated[Caller, Depends(caller)]


class SendBody(BaseModel):
    content: str = Field(max_length=100_000)  # the coach's own limit is smaller, and says so
    client_id: str | None = Field(None, max_length=200)


class GoalBody(BaseModel):
    text: str = Field(max_length=2_000)


class ProgressBody(BaseModel):
    text: str = Field(max_length=2_000)  # the coach's own limit is smaller, and says so


class ScheduleBody(BaseModel):
    when: str = Field(max_length=500, examples=["tomorrow 9am for 30m weekly"])


class PhaseBody(BaseModel):
    phase: Literal["tracking", "goal_setting"]


class TimezoneBody(BaseModel):
    timezone: str = Field(max_length=100, examples=["Europe/Berlin"])


class SignInBody(BaseModel):
    code: str = Field(max_length=200)


async def session_of(request: Request, who: Caller) -> Session:
    return await web_of(request).coach.session(who.user.identity)


# Who, and whether the coach is reachable


@api.get("/me")
async def me(request: Request, who: Signed) -> JSON:
    session = await session_of(request, who)
    return user_view(session.user, session.time)


@api.get("/chat/access")
async def access(request: Request, who: Signed) -> JSON:
    return access_view(await (await session_of(request, who)).access())


# History


@api.get("/chat/history")
async def history(
    request: Request,
    who: Signed,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JSON:
    session = await session_of(request, who)
    return history_view(await session.history(page, page_size), page_size)


@api.delete("/chat/history")
async def clear_history(request: Request, who: Signed) -> JSON:
    return {"deleted": await (await session_of(request, who)).clear_history()}


# Talking to the coach


@api.post("/chat/send", response_model=None)
async def send(request: Request, who: Signed, body: SendBody) -> Any:
    """The reply as one JSON object, or as server-sent events when the client asks for
    `text/event-stream`. A client that leaves mid-reply loses nothing: it is stored."""
    web = web_of(request)
    reply = WebReply(
        web.coach, who.user.identity, body.content, event_id(who.user.id, body.client_id)
    ).start(web.background)
    frames = aiter(reply.frames())
    first = await anext(frames, None)
    if first is not None and (refusal := _refused_status(first)) is not None:
        return refusal
    if "text/event-stream" in request.headers.get("accept", ""):
        return EventSourceResponse(_events(first, frames), ping=15)
    return await _whole(first, frames)


def _refused_status(frame: Frame) -> JSONResponse | None:
    """A send refused before any reply: bad input (422) or a repeat (409)."""
    if frame.kind != "error":
        return None
    kind, text = frame.data["error"], frame.data["content"]
    if kind in BAD_INPUT:
        return JSONResponse({"error": kind, "detail": text}, 422)
    if kind == "duplicate":
        detail = "This message was already received (same client_id); its reply is in history."
        return JSONResponse({"error": kind, "detail": detail}, 409)
    return None


async def _events(first: Frame | None, rest: AsyncIterator[Frame]) -> AsyncIterator[dict[str, str]]:
    if first is not None:
        yield {"event": first.kind, "data": json.dumps(first.data)}
    async for frame in rest:
        yield {"event": frame.kind, "data": json.dumps(frame.data)}


async def _whole(first: Frame | None, rest: AsyncIterator[Frame]) -> JSONResponse:
    welcome: str | None = None
    proposals: list[JSON] = []
    async for frame in _chain(first, rest):
        data = frame.data
        match frame.kind:
            case "welcome":
                welcome = data["content"]
            case "proposal":
                proposals.append(data)
            case "done":
                return JSONResponse(
                    {**data, "welcome": welcome, "refused": False, "proposals": proposals}
                )
            case "refused":
                return JSONResponse({**data, "welcome": welcome, "refused": True})
            case "error" if data["said"]:  # the model stopped mid-way: what it said is kept
                return JSONResponse(
                    {"message_id": None, "content": data["said"], "tokens_used": 0,
                     "incomplete": True, "error": data["error"], "detail": data["content"],
                     "welcome": welcome, "refused": False}
                )  # fmt: skip
            case "error":
                return JSONResponse({"error": data["error"], "detail": data["content"]}, 503)
    return JSONResponse({"error": "internal", "detail": "The reply ended without an answer."}, 500)


async def _chain(first: Frame | None, rest: AsyncIterator[Frame]) -> AsyncIterator[Frame]:
    if first is not None:
        yield first
    async for frame in rest:
        yield frame


# Proposals the coach made in a reply


@api.post("/proposals/{proposal_id}/confirm")
async def confirm_proposal(request: Request, who: Signed, proposal_id: str) -> JSONResponse:
    """Carry out a proposal from a reply (a `proposal` frame or event), once."""
    return await _decide(request, who, proposal_id, confirm=True)


@api.post("/proposals/{proposal_id}/decline")
async def decline_proposal(request: Request, who: Signed, proposal_id: str) -> JSONResponse:
    return await _decide(request, who, proposal_id, confirm=False)


async def _decide(
    request: Request, who: Caller, proposal_id: str, *, confirm: bool
) -> JSONResponse:
    decision = await web_of(request).coach.decide(
        who.user.identity, proposal_id, confirm=confirm
    )
    if decision.status is None:
        return JSONResponse({"error": "not_found", "detail": decision.text}, 404)
    if decision.by_someone_else:
        return JSONResponse({"error": "forbidden", "detail": decision.text}, 403)
    return JSONResponse(decision_view(decision))


# Goals


@api.get("/goals")
async def goals(request: Request, who: Signed) -> JSON:
    """Active goals, each with its last progress entry and streak."""
    session = await session_of(request, who)
    found = await session.goals_progress()
    return {"goals": [goal_view(p.goal, p.number, p, session.time) for p in found]}


@api.post("/goals", status_code=201)
async def add_goal(request: Request, who: Signed, body: GoalBody) -> JSON:
    session = await session_of(request, who)
    goal = await session.add_goal(body.text)
    number = len(await session.goals())
    return goal_view(goal, number, GoalProgress(goal, number, None, 0), session.time)


@api.post("/goals/{ref}/progress", status_code=201)
async def log_progress(request: Request, who: Signed, ref: str, body: ProgressBody) -> JSON:
    """Note progress on active goal `ref` (its number in GET /goals): the goal as it is now."""
    session = await session_of(request, who)
    logged = await session.log_progress(ref, body.text)
    progress = GoalProgress(logged.goal, logged.number, logged.entry, logged.streak)
    return goal_view(logged.goal, logged.number, progress, session.time)


@api.post("/goals/{ref}/done")
async def goal_done(request: Request, who: Signed, ref: str) -> JSON:
    goal = await (await session_of(request, who)).close_goal(ref, GoalStatus.DONE)
    return goal_view(goal, 0)


@api.post("/goals/{ref}/drop")
async def goal_drop(request: Request, who: Signed, ref: str) -> JSON:
    goal = await (await session_of(request, who)).close_goal(ref, GoalStatus.DROPPED)
    return goal_view(goal, 0)


# Meetings


@api.get("/meetings")
async def meetings(request: Request, who: Signed) -> JSON:
    session = await session_of(request, who)
    found = await session.meetings()
    return {"meetings": [meeting_view(m, n, session.time) for n, m in enumerate(found, 1)]}


@api.post("/meetings", status_code=201)
async def schedule(request: Request, who: Signed, body: ScheduleBody) -> JSON:
    """Book a meeting with the `/schedule` grammar: `tomorrow 9am for 30m weekly`."""
    session = await session_of(request, who)
    booked = await session.schedule(body.when)
    all_meetings = await session.meetings()
    numbers = {m.id: n for n, m in enumerate(all_meetings, 1)}
    return {"booked": [meeting_view(m, numbers.get(m.id, 0), session.time) for m in booked]}


@api.delete("/meetings/{ref}")
async def cancel(request: Request, who: Signed, ref: str, series: bool = False) -> JSON:
    session = await session_of(request, who)
    cancelled = await session.cancel(ref, series=series)
    return {
        "cancelled": [meeting_view(m, 0, session.time) for m in cancelled.meetings],
        "access": access_view(cancelled.standing),
    }


# Phase, timezone, data


@api.put("/phase")
async def phase(request: Request, who: Signed, body: PhaseBody) -> JSON:
    session = await session_of(request, who)
    if Phase(body.phase) is Phase.TRACKING:
        await session.start_tracking()
    else:
        await session.back_to_goal_setting()
    return access_view(await session.access())


@api.put("/timezone")
async def timezone(request: Request, who: Signed, body: TimezoneBody) -> JSON:
    session = await session_of(request, who)
    await session.set_timezone(body.timezone)
    fresh = await session_of(request, who)
    return user_view(fresh.user, fresh.time)


@api.get("/export")
async def export(request: Request, who: Signed) -> JSON:
    return await (await session_of(request, who)).export()


@api.delete("/me")
async def forget(request: Request, who: Signed, confirm: bool = False) -> JSON:
    """Delete the user and all their data (tokens too). Needs `?confirm=true`."""
    if not confirm:
        raise HTTPException(400, "This deletes all your data and signs you out: add ?confirm=true.")
    await (await session_of(request, who)).forget()
    return {"deleted": True}


# One person across platforms, and their meetings in their own calendar


class CodeBody(BaseModel):
    code: str = Field(max_length=100)


@api.post("/link/code")
async def link_code(request: Request, who: Signed) -> JSON:
    """A one-time code to type as `/coach link CODE` on Slack or Discord."""
    code = await web_of(request).coach.link_code(who.user.identity)
    return {"code": code, "minutes": LINK_MINUTES}


@api.post("/link")
async def link(request: Request, who: Signed, body: CodeBody) -> JSON:
    """Join this user to the one whose `/coach link` gave `code`: one set of goals,
    meetings and history (this token then names that user)."""
    linked = await web_of(request).coach.link(who.user.identity, body.code)
    session = await web_of(request).coach.session(linked.user.identity)
    return {
        "user": user_view(session.user, session.time),
        "identities": [
            {"platform": i.platform.value, "id": i.external_id} for i in linked.identities
        ],
    }


@api.get("/meetings.ics", response_class=Response)
async def calendar(request: Request, who: Signed) -> Response:
    """The upcoming meetings as an iCalendar feed, in the user's zone (bots/web/calendar.py)."""
    return await _feed(web_of(request), who.user)


@api.post("/calendar/feed")
async def calendar_feed(request: Request, who: Signed) -> JSON:
    """A secret address of the meetings feed, for calendars that cannot send a token (as
    `/coach calendar` gives); the address given before stops working."""
    web = web_of(request)
    key = await web.coach.keys.calendar_key(who.user)
    return {"url": calendar_feed_url(web.settings, key)}


@api.get("/calendar/{key}.ics", response_class=Response)
async def calendar_by_key(request: Request, key: str) -> Response:
    """The meetings feed at its secret address (`POST /calendar/feed`, `/coach calendar`)."""
    web = web_of(request)
    user_id = await web.coach.keys.calendar_user_id(key)
    user = await web.coach.user_by_id(user_id) if user_id else None
    if user is None:
        raise HTTPException(404, "No such calendar feed: ask for a new address (/coach calendar).")
    within_budget(web, digest(key))
    return await _feed(web, user)


async def _feed(web: Web, user: User) -> Response:
    session = await web.coach.session(user.identity)
    feed = meetings_calendar(
        await session.meetings(),
        zone=session.zone,
        now=session.now(),
        policy=web.coach.policy,
        name="Momentum coaching",
    )
    return Response(feed, media_type="text/calendar; charset=utf-8")


# Signing in


@api.post("/auth/sign-in")
async def sign_in(request: Request, body: SignInBody) -> JSON:
    """Exchange a one-time sign-in code (from `/coach web`) for a token."""
    token = await web_of(request).coach.keys.sign_in(body.code.strip())
    if token is None:
        raise HTTPException(401, SIGN_IN_STALE)
    return {"token": token}
