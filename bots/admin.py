"""Operator commands: `momentum admin users` and `momentum admin phase <user-id> <phase>`.

For the person running the bot, not its users: no platform is involved, and setting a phase
here skips the checks `/track` makes (the operator may know better), with a warning instead.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from core.coach import Coach
from core.models import Phase, User

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


async def run(coach: Coach, args: argparse.Namespace) -> str:
    """Carry out the parsed `admin` command; the text to print."""
    if args.admin_command == "users":
        return users_table(await coach.users())
    return await set_phase(coach, args.user_id, Phase(args.phase))


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
    return "\n".join(line.rstrip() for line in lines) + f"\n{len(rows)} user(s)"


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
