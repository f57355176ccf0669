"""Who may call which field: Strawberry permission classes by role, and ownership checks.

Roles: an admin does everything; an auditor reads everything and writes nothing; a user reads
and writes only what they own; an agent reads the work and may submit tasks of its own.
"""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel
from strawberry.permission import BasePermission
from strawberry.types import Info

from commands.guard import Forbidden, Guard
from gateway.auth import Principal, Role
from gateway.context import GatewayContext
from gateway.errors import forbidden


class _Roles(BasePermission):
    roles: ClassVar[frozenset[Role]]

    def has_permission(
        self, source: object, info: Info[GatewayContext, None], **kwargs: object
    ) -> bool:
        principal = info.context.signed_in()
        if principal.role not in self.roles:
            raise forbidden(f"the role {principal.role!r} may not do this")
        return True


class SignedIn(_Roles):
    """Anyone with a valid access token."""

    roles = frozenset({"admin", "user", "agent", "auditor"})


class Writer(_Roles):
    """Anyone who may change their own things: every role but auditor."""

    roles = frozenset({"admin", "user", "agent"})


class Reader(_Roles):
    """Those who read everything: admins and auditors."""

    roles = frozenset({"admin", "auditor"})


class Admin(_Roles):
    """Admins only."""

    roles = frozenset({"admin"})


def may_read(principal: Principal, owner_id: UUID | None) -> bool:
    """A user reads their own things; admins, auditors and agents read everyone's."""
    return principal.role != "user" or owner_id == principal.user_id


def check_read(principal: Principal, owner_id: UUID | None) -> None:
    """FORBIDDEN unless `may_read`."""
    if not may_read(principal, owner_id):
        raise forbidden("this belongs to another user")


def owner_guard(principal: Principal) -> Guard:
    """A command guard: only the owner (or an admin) may change an existing aggregate."""

    def guard(state: BaseModel | None) -> None:
        if state is None or principal.role == "admin":
            return
        owner = getattr(state, "owner_id", None)
        if owner != principal.user_id:
            raise Forbidden("this belongs to another user")

    return guard
