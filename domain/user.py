"""The User aggregate: who may sign in, and with which role.

The password arrives here already hashed (argon2, in the command handler): no event ever holds
a password in plain text.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import EmailStr, Field

from domain.errors import IllegalTransition, require_existing, require_new
from domain.model import DomainEvent, Frozen, founded_by

AGGREGATE = "user"


class Role(StrEnum):
    """What a user may do."""

    ADMIN = "admin"
    USER = "user"
    AGENT = "agent"
    AUDITOR = "auditor"


class RegisterUser(Frozen):
    """Create an account (email and username are unique across users)."""

    user_id: UUID
    email: EmailStr
    username: str = Field(min_length=3, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")
    password_hash: str = Field(min_length=20, pattern=r"^\$argon2")
    role: Role = Role.USER


class ChangeUserRole(Frozen):
    """Give the user another role."""

    user_id: UUID
    role: Role


class DeactivateUser(Frozen):
    """Stop the user from signing in, for good."""

    user_id: UUID


UserCommand = RegisterUser | ChangeUserRole | DeactivateUser


class UserRegistered(DomainEvent):
    """An account was created."""

    user_id: UUID
    email: str
    username: str
    password_hash: str
    role: Role


class UserRoleChanged(DomainEvent):
    """The user's role changed."""

    role: Role


class UserDeactivated(DomainEvent):
    """The user can no longer sign in."""


EVENT_TYPES: tuple[type[DomainEvent], ...] = (UserRegistered, UserRoleChanged, UserDeactivated)


class User(Frozen):
    """A user's state."""

    user_id: UUID
    email: str
    username: str
    password_hash: str
    role: Role
    active: bool = True


def decide(user: User | None, command: UserCommand) -> list[DomainEvent]:
    """The events a command causes on the user, or a typed domain error."""
    if isinstance(command, RegisterUser):
        require_new(user, AGGREGATE, command.user_id)
        return [UserRegistered(**command.model_dump() | {"email": command.email.lower()})]
    user = require_existing(user, AGGREGATE, command.user_id)
    if not user.active:
        raise IllegalTransition(AGGREGATE, user.user_id, "deactivated", "change")
    match command:
        case ChangeUserRole(role=role):
            return [] if role == user.role else [UserRoleChanged(role=role)]
        case DeactivateUser():
            return [UserDeactivated()]
    raise TypeError(f"not a user command: {command!r}")  # pragma: no cover


@founded_by(UserRegistered, User)
def evolve(user: User, event: DomainEvent) -> User:
    """The user after one of its events."""
    match event:
        case UserRoleChanged(role=role):
            return user.model_copy(update={"role": role})
        case UserDeactivated():
            return user.model_copy(update={"active": False})
    raise TypeError(f"not a user event: {event!r}")  # pragma: no cover
