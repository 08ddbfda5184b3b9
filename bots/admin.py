"""Operator commands: `momentum admin users`, `momentum admin phase <user> <phase>`, and
`momentum admin token create|revoke <user>` (the web API's bearer tokens).

For the person running the bot, not its users: no platform is involved, and setting a phase
here skips the checks `/track` makes (the operator may know better), with a warning instead.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from core.coach import Coach
from core.models import Identity, Phase, Platform, User
from core.texts import counted

COLUMNS = ("id", "platform", "external id", "phase", "timezone")


class AdminError(Exception):
    """An operator request that cannot be carried out; the message says why."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("admin", help="operator commands: list users, set a user's phase")
    actions = parser.add_subparsers(dest="admin_command", required=True)
    actions.add_parser("users", help="list users: id, platform, external id, phase, timezone")
    phase = actions.add_parser("phase", help="set a user's phase")
    phase.add_argument(
        "user_id", help="an id from `momentum admin users` (a unique prefix will do)"
    )
    phase.add_argument("phase", choices=[p.value for p in Phase])
    token = actions.add_parser("token", help="web API tokens: create one, or revoke a user's")
    token.add_argument("token_action", choices=["create", "revoke"])
    token.add_argument(
        "user_id",
        help="as for `phase`; `web:<name>` makes a web-only user when there is none yet",
    )


async def run(coach: Coach, args: argparse.Namespace) -> str:
    """Carry out the parsed `admin` command; the text to print."""
    if args.admin_command == "users":
        return users_table(await coach.users())
    if args.admin_command == "token":
        return await tokens(coach, args.token_action, args.user_id)
    return await set_phase(coach, args.user_id, Phase(args.phase))


async def tokens(coach: Coach, action: str, ref: str) -> str:
    """A new token, printed once as the last line (only its digest is kept), or all of a
    user's tokens revoked."""
    if action == "create":
        user = await _web_user(coach, ref) if ref.lower().startswith("web:") else None
        user = user or find_user(await coach.users(), ref)
        token = await coach.keys.new_token(user)
        return (
            f"A web token for user {user.id} ({user.identity.platform.value} "
            f"{user.identity.external_id}). It is shown only now; keep it like a password:\n"
            f"{token}"
        )
    user = find_user(await coach.users(), ref)
    count = await coach.keys.revoke(user)
    return f"Revoked {counted(count, 'token')} of user {user.id}."


async def _web_user(coach: Coach, ref: str) -> User:
    name = ref.split(":", 1)[1].strip()
    if not name:
        raise AdminError("Name the web user: web:<name>, e.g. web:ada.")
    return await coach.user(Identity(platform=Platform.WEB, external_id=name))


def users_table(users: Sequence[User]) -> str:
    rows = [
        (u.id, u.identity.platform.value, u.identity.external_id, u.phase.value, u.timezone or "-")
        for u in users
    ]
    if not rows:
        return "No users yet."
    widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [COLUMNS, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines) + f"\n{counted(len(rows), 'user')}"


async def set_phase(coach: Coach, ref: str, phase: Phase) -> str:
    user = find_user(await coach.users(), ref)
    try:
        updated, warnings = await coach.set_phase(user, phase)
    except LookupError:
        raise AdminError(f"User {user.id} was deleted meanwhile.") from None
    lines = [
        f"User {user.id} ({user.identity.platform.value} {user.identity.external_id}): "
        f"{user.phase.value} -> {updated.phase.value}"
    ]
    return "\n".join([*lines, *(f"warning: {warning}" for warning in warnings)])


def find_user(users: Sequence[User], ref: str) -> User:
    """By id, or by `platform:external-id` (e.g. `slack:U0123ABCD`), as the operator knows it."""
    ref = ref.strip()
    platform, _, external = ref.partition(":")
    for user in users:
        if user.id == ref.lower() or (
            external
            and user.identity.platform.value == platform.lower()
            and user.identity.external_id == external
        ):
            return user
    raise AdminError(
        f"No user {ref!r}. Give an id from `momentum admin users`, or platform:external-id."
    )
