"""The GraphQL object types: read-model rows as clients see them."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, NewType, TypeVar, cast, get_args, overload
from uuid import UUID

import strawberry
from graphql import GraphQLError
from pydantic import JsonValue, TypeAdapter, ValidationError
from strawberry.scalars import JSON
from strawberry.types import Info

from domain.agent import AgentKind as AgentKind
from domain.agent import AgentStatus as AgentStatus
from domain.conversation import MessageRole as MessageRole
from domain.document import DocumentStatus as DocumentStatus
from domain.task import Priority, SubmitTask
from domain.task import TaskStatus as TaskStatus
from domain.user import Role as Role
from gateway.context import GatewayContext
from gateway.errors import ErrorCode, GatewayError
from gateway.rows import RowObject, json_value, shows
from gateway.views import Cursor
from schemas.specs import AGENT, AGENT_MESSAGE, CONVERSATION, DOCUMENT, TASK, USER

# --- closed sets: the domain's own enums, as GraphQL enums ----------------------------------
# Each is the domain's class itself (one list of members): GraphQL names the members in upper
# case (`PENDING`), the read model and the events keep the values (`pending`).

strawberry.enum(TaskStatus, description="Where a task is in its life.")
strawberry.enum(AgentStatus, description="Where an agent is in its life.")
strawberry.enum(AgentKind, description="What an agent is for.")
strawberry.enum(Role, description="What a user may do (see the roles in docs/graphql.md).")
strawberry.enum(DocumentStatus, description="Where a document is in its life.")
strawberry.enum(MessageRole, description="Who said a message of a conversation.")


T = TypeVar("T")


def _constraint(metadata: Sequence[object], name: str, kind: type[T]) -> T:
    """One constraint (`ge`, `max_length`, `pattern`…) of a domain field's metadata."""
    value = next(getattr(item, name) for item in metadata if hasattr(item, name))
    if not isinstance(value, kind):
        raise TypeError(f"the constraint {name} is {value!r}, not a {kind.__name__}")
    return value


# --- task types: an open set, so a scalar that says its pattern ------------------------------

TaskType = NewType("TaskType", str)
"""A task's type. Not an enum: the set is open (agents register the types they take)."""

_TASK_TYPE_FIELD = SubmitTask.model_fields["task_type"]
_TASK_TYPES: TypeAdapter[str] = TypeAdapter(Annotated[str, _TASK_TYPE_FIELD])
TASK_TYPE_RULE = (
    f"{_constraint(_TASK_TYPE_FIELD.metadata, 'min_length', int)} to "
    f"{_constraint(_TASK_TYPE_FIELD.metadata, 'max_length', int)} characters matching "
    f"`{_constraint(_TASK_TYPE_FIELD.metadata, 'pattern', str)}`"
)
"""What a task type looks like, from the domain's own field (`SubmitTask.task_type`)."""


def parse_task_type(value: object) -> TaskType:
    """A task type a client sent, or a VALIDATION error that says what one looks like."""
    try:
        return TaskType(_TASK_TYPES.validate_python(value, strict=True))
    except ValidationError:
        raise GraphQLError(
            f"a task type is {TASK_TYPE_RULE}, such as `code.generate`; not {value!r}",
            extensions={"code": ErrorCode.VALIDATION.value},
        ) from None


TASK_TYPE_SCALAR = strawberry.scalar(
    name="TaskType",
    description=(
        f"What kind of work a task is: {TASK_TYPE_RULE}, such as `code.generate` or "
        "`rag.ask`. An open set, not an enum: a task of a type no online agent takes stays "
        "pending until one that takes it is online."
    ),
    serialize=str,
    parse_value=parse_task_type,
)
"""`TaskType` in GraphQL; the schema maps the `TaskType` NewType to it."""

# --- priority: an Int with its range -----------------------------------------------------------

PRIORITY_RANGE: tuple[int, int] = (
    _constraint(get_args(Priority)[1].metadata, "ge", int),
    _constraint(get_args(Priority)[1].metadata, "le", int),
)
"""Lowest and highest priority number, from the domain's `Priority`; the lowest number is the
most urgent.

Priority stays a GraphQL `Int`, its range in each field's description and checked by
`check_priority`, rather than a custom scalar: client generators map `Int` to an integer type of
their own, while a custom scalar arrives untyped (`any`) until each client maps it by hand. A
scalar would give the range a name and take the type away."""
PRIORITY_DESCRIPTION = (
    f"{PRIORITY_RANGE[0]} (the most urgent) to {PRIORITY_RANGE[1]}: waiting tasks go to agents "
    "most urgent first."
)


def check_priority(priority: int, field: str = "priority") -> int:
    """The priority, or a VALIDATION error naming `field` when it is out of range."""
    low, high = PRIORITY_RANGE
    if not low <= priority <= high:
        raise GatewayError(
            ErrorCode.VALIDATION,
            f"{field} must be {low} (the most urgent) to {high}, not {priority}",
            field=field,
        )
    return priority


SECRET_FIELDS = frozenset({"password_hash"})
"""Fields of event data and states that never leave the gateway."""


@overload
def public(data: dict[str, JsonValue]) -> dict[str, JsonValue]: ...
@overload
def public(data: JsonValue) -> JsonValue: ...
def public(data: JsonValue) -> JsonValue:
    """Event data or a state without its secrets (a password hash, even hashed, stays inside)."""
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if k not in SECRET_FIELDS}
    return data


def json_input(value: JSON | None) -> JsonValue:
    """A JSON argument as a JSON value, `{}` when absent (the scalar holds parsed JSON only)."""
    return {} if value is None else cast(JsonValue, value)


def parse_id(value: str | strawberry.ID, field: str = "id") -> UUID:
    """A UUID argument, or a VALIDATION error naming the argument."""
    try:
        return UUID(str(value))
    except ValueError:
        raise GatewayError(ErrorCode.VALIDATION, f"{field} is not a UUID", field=field) from None


def encode_cursor(created_at: datetime, row_id: UUID) -> str:
    """An opaque cursor for keyset paging."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str | None) -> Cursor | None:
    """The (created_at, id) a cursor names, or VALIDATION for one we did not hand out."""
    if cursor is None:
        return None
    try:
        created, _, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise GatewayError(
            ErrorCode.VALIDATION, "not a cursor of this list", field="after"
        ) from None


@shows(USER.table)
@strawberry.type(name="User", description="A person or program that signs in.")
class UserObject(RowObject):
    id: strawberry.ID
    email: str
    username: str
    role: Role
    active: bool
    created_at: datetime
    version: int


@shows(AGENT.table)
@strawberry.type(name="Agent", description="An AI agent and what it can do.")
class AgentObject(RowObject):
    id: strawberry.ID
    name: str
    kind: AgentKind
    capabilities: list[str] = strawberry.field(
        description="The task types it takes: exact (`code.generate`) or a family (`code.*`)."
    )
    model: str
    status: AgentStatus
    created_at: datetime
    updated_at: datetime
    version: int


@shows(AGENT_MESSAGE.table)
@strawberry.type(name="AgentMessage", description="A message between agents about a task.")
class AgentMessageObject(RowObject):
    id: strawberry.ID
    source_agent_id: strawberry.ID
    target_agent_id: strawberry.ID
    message_type: str
    payload: JSON
    acknowledged: bool
    created_at: datetime


@shows(TASK.table)
@strawberry.type(name="Task", description="A unit of work, as the read model holds it.")
class TaskObject(RowObject):
    id: strawberry.ID
    owner_id: strawberry.ID
    task_type: TaskType
    priority: int = strawberry.field(description=PRIORITY_DESCRIPTION)
    status: TaskStatus
    attempts: int
    max_attempts: int
    agent_id: strawberry.ID | None
    progress: int
    parent_id: strawberry.ID | None
    document_ids: list[strawberry.ID]
    created_at: datetime
    updated_at: datetime
    version: int
    sequence: int
    # jsonb as asyncpg hands it over; decoded only when a query asks for it.
    raw_payload: strawberry.Private[JsonValue]
    raw_result: strawberry.Private[JsonValue]
    raw_error: strawberry.Private[JsonValue]

    @strawberry.field(description="What the task was asked to do.")
    def payload(self) -> JSON:
        return JSON(json_value(self.raw_payload))

    @strawberry.field(description="What it produced, once completed.")
    def result(self) -> JSON | None:
        return JSON(json_value(self.raw_result))

    @strawberry.field(description="Why it failed: a stable code, a message, retryable.")
    def error(self) -> JSON | None:
        return JSON(json_value(self.raw_error))

    @strawberry.field(description="Child tasks, oldest first.")
    async def subtasks(self, info: Info[GatewayContext, None]) -> list[TaskObject]:
        rows = await info.context.loaders.subtasks.load(UUID(self.id))
        return [TaskObject.from_row(row) for row in rows]

    @strawberry.field(description="Messages agents sent each other about this task.")
    async def messages(self, info: Info[GatewayContext, None]) -> list[AgentMessageObject]:
        rows = await info.context.loaders.task_messages.load(UUID(self.id))
        return [AgentMessageObject.from_row(row) for row in rows]


@strawberry.type(description="One page of tasks and the cursor of the next.")
class TaskPage:
    items: list[TaskObject]
    next_cursor: str | None


@shows(DOCUMENT.table)
@strawberry.type(name="Document", description="A document the assistants can search and cite.")
class DocumentObject(RowObject):
    id: strawberry.ID
    owner_id: strawberry.ID
    title: str
    content_hash: str
    content_size: int
    metadata: JSON
    status: DocumentStatus
    chunk_count: int
    embedding_model: str | None
    error: JSON | None
    created_at: datetime
    updated_at: datetime
    version: int


@strawberry.type(description="One page of documents.")
class DocumentPage:
    items: list[DocumentObject]
    next_cursor: str | None


@shows(CONVERSATION.table.children[0])
@strawberry.type(description="A message of a conversation.")
class ConversationMessage(RowObject):
    id: strawberry.ID
    position: int
    role: MessageRole
    content: str
    model: str | None
    in_reply_to: strawberry.ID | None
    citations: JSON


@shows(CONVERSATION.table)
@strawberry.type(name="Conversation", description="A chat with the assistant.")
class ConversationObject(RowObject):
    id: strawberry.ID
    owner_id: strawberry.ID
    title: str
    model: str
    closed: bool
    message_count: int
    created_at: datetime
    updated_at: datetime
    version: int

    @strawberry.field(description="Its messages in order.")
    async def messages(self, info: Info[GatewayContext, None]) -> list[ConversationMessage]:
        rows = await info.context.loaders.conversation_messages.load(UUID(self.id))
        return [ConversationMessage.from_row(row) for row in rows]


@strawberry.type(description="One page of conversations.")
class ConversationPage:
    items: list[ConversationObject]
    next_cursor: str | None


@strawberry.type(description="One page of users.")
class UserPage:
    items: list[UserObject]
    next_cursor: str | None


@strawberry.type(description="What a command did.")
class CommandOutcome:
    client_mutation_id: str | None
    command_id: str
    aggregate_type: str
    aggregate_id: strawberry.ID
    version: int
    sequence: int
    event_types: list[str]
    duplicate: bool = strawberry.field(
        description="The same clientMutationId was sent before: this is that first outcome."
    )
    projected: bool | None = strawberry.field(
        description="With waitForProjection: whether the read model had caught up in time."
    )


@strawberry.type(description="Tokens for a signed-in user.")
class AuthPayload:
    access_token: str
    refresh_token: str
    expires_in: int = strawberry.field(description="Seconds the access token is valid.")
    user: UserObject


@strawberry.type(description="Who worked on what, from the graph.")
class Neighbourhood:
    agent_ids: list[strawberry.ID]
    task_ids: list[strawberry.ID]


@strawberry.type(description="A chunk of a document that matches a search, best first.")
class DocumentHit:
    document_id: strawberry.ID
    chunk_index: int
    title: str
    text: str
    score: float
