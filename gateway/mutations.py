"""Mutations: each builds one command, runs it through the dispatcher and returns what it did.

`clientMutationId` becomes (part of) the command id, so a retried request is answered with the
first outcome and appends nothing. `waitForProjection` returns only once the aggregate's read
model shows the change (bounded), for read-your-writes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from uuid import NAMESPACE_URL, uuid5

import asyncpg
import strawberry
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import JsonValue, ValidationError
from strawberry.permission import BasePermission
from strawberry.scalars import JSON
from strawberry.types import Info
from uuid_utils.compat import uuid7

from commands.dispatch import aggregate_id_for
from commands.guard import Guard, allow_all
from gateway import views
from gateway.auth import Principal, TokenPair
from gateway.context import GatewayContext
from gateway.errors import ErrorCode, GatewayError, refused, unauthenticated
from gateway.permissions import Admin, SignedIn, Writer, check_read, owner_guard
from gateway.types import (
    PRIORITY_DESCRIPTION,
    AgentKind,
    AuthPayload,
    CommandOutcome,
    Role,
    TaskType,
    UserObject,
    check_priority,
    json_input,
    parse_id,
)
from schemas.commands import CommandAccepted, CommandRequest
from schemas.envelope import Actor
from schemas.specs import USER

READ_MODELS = {
    "user": "users",
    "agent": "agents",
    "task": "tasks",
    "agent_message": "agent_messages",
    "document": "documents",
    "conversation": "conversations",
}
"""The read model that shows each aggregate type (what `waitForProjection` waits for)."""

_CLIENT_MUTATION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,120}$")
_MESSAGE_IDS = uuid5(NAMESPACE_URL, "https://sutazai.dev/message-id")


def _command_id(scope: str, client_mutation_id: str | None) -> str:
    """The command id: the client's key within the caller's scope, or a fresh one."""
    if client_mutation_id is None:
        return str(uuid7())
    if not _CLIENT_MUTATION_ID.match(client_mutation_id):
        raise GatewayError(
            ErrorCode.VALIDATION,
            "clientMutationId must be 1 to 120 letters, digits or _.:-",
            field="clientMutationId",
        )
    return f"{scope}.{client_mutation_id}"


async def run_command(
    info: Info[GatewayContext, None],
    name: str,
    payload: Mapping[str, JsonValue],
    *,
    actor: Actor,
    command_id: str,
    client_mutation_id: str | None,
    reason: str | None,
    wait: bool,
    guard: Guard = allow_all,
) -> CommandOutcome:
    """Dispatch one command; a refusal becomes a typed GraphQL error."""
    context = info.context
    try:
        request = CommandRequest(
            command_id=command_id, actor=actor, reason=reason, payload=dict(payload)
        )
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise GatewayError(ErrorCode.VALIDATION, f"{field}: {first['msg']}", field=field) from None
    reply = await context.services.commands.dispatch(name, request, guard=guard)
    if not isinstance(reply, CommandAccepted):
        raise refused(reply.error)
    projected: bool | None = None
    if wait:
        read_model = READ_MODELS[reply.aggregate_type]
        projected = await context.services.wait_for_projection(read_model, reply.sequence)
    return CommandOutcome(
        client_mutation_id=client_mutation_id,
        command_id=reply.command_id,
        aggregate_type=reply.aggregate_type,
        aggregate_id=strawberry.ID(str(reply.aggregate_id)),
        version=reply.version,
        sequence=reply.sequence,
        event_types=reply.event_types,
        duplicate=reply.duplicate,
        projected=projected,
    )


async def _as(
    info: Info[GatewayContext, None],
    name: str,
    payload: Mapping[str, JsonValue],
    client_mutation_id: str | None,
    reason: str | None,
    wait: bool,
    guard: Guard | None = None,
) -> CommandOutcome:
    """Run a command as the signed-in principal (the owner guard unless another is given)."""
    principal = info.context.signed_in()
    return await run_command(
        info,
        name,
        payload,
        actor=principal.actor,
        command_id=_command_id(str(principal.user_id), client_mutation_id),
        client_mutation_id=client_mutation_id,
        reason=reason,
        wait=wait,
        guard=guard or owner_guard(principal),
    )


@strawberry.input(description="A new account.")
class RegisterInput:
    email: str
    username: str
    password: str


@strawberry.input(description="Work to be done.")
class SubmitTaskInput:
    task_type: TaskType
    priority: int = strawberry.field(default=5, description=PRIORITY_DESCRIPTION)
    payload: JSON | None = None
    max_attempts: int = 3
    parent_id: strawberry.ID | None = None
    document_ids: list[strawberry.ID] = strawberry.field(default_factory=list)
    deadline_seconds: float | None = None


@strawberry.input(description="A new agent.")
class RegisterAgentInput:
    name: str
    kind: AgentKind
    capabilities: list[str] = strawberry.field(
        default_factory=list,
        description="The task types it takes: exact (`code.generate`) or a family (`code.*`).",
    )
    model: str = "smollm2:135m"


@strawberry.input(description="A document for the assistants to index and cite.")
class AddDocumentInput:
    title: str
    content: str
    metadata: JSON | None = None


@strawberry.input(description="A new conversation.")
class StartConversationInput:
    title: str
    model: str = "smollm2:135m"


def _signed_in_payload(user_row: asyncpg.Record, pair: TokenPair) -> AuthPayload:
    return AuthPayload(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        user=UserObject.from_row(user_row),
    )


def _principal(row: asyncpg.Record) -> Principal:
    return Principal(user_id=row["user_id"], username=row["username"], role=row["role"])


def _on_id(
    command: str, id_field: str, role: type[BasePermission], description: str
) -> CommandOutcome:
    """A mutation that sends `command` to the aggregate named by its `id` argument.

    Typed as Strawberry types `strawberry.mutation(resolver=...)`: as the value the field
    resolves to, so the class attribute reads as one.
    """

    async def resolve(
        info: Info[GatewayContext, None],
        id: strawberry.ID,
        client_mutation_id: str | None = None,
        reason: str | None = None,
        wait_for_projection: bool = False,
    ) -> CommandOutcome:
        payload = {id_field: str(parse_id(id))}
        return await _as(info, command, payload, client_mutation_id, reason, wait_for_projection)

    return strawberry.mutation(resolver=resolve, permission_classes=[role], description=description)


@strawberry.type
class Mutation:
    """Every command of the domain a person or program may send."""

    @strawberry.mutation(description="Create an account (role user); waits until it can sign in.")
    async def register(
        self,
        info: Info[GatewayContext, None],
        input: RegisterInput,
        client_mutation_id: str | None = None,
        wait_for_projection: bool = True,
    ) -> CommandOutcome:
        command_id = _command_id("register", client_mutation_id)
        user_id = aggregate_id_for(command_id)
        payload: dict[str, JsonValue] = {
            "user_id": str(user_id),
            "email": input.email,
            "username": input.username,
            "password": input.password,
            "role": Role.USER.value,
        }
        return await run_command(
            info,
            "RegisterUser",
            payload,
            actor=Actor(id=str(user_id), kind="user"),
            command_id=command_id,
            client_mutation_id=client_mutation_id,
            reason="self-registration",
            wait=wait_for_projection,
        )

    @strawberry.mutation(description="Sign in with email or username and password.")
    async def login(
        self, info: Info[GatewayContext, None], login: str, password: str
    ) -> AuthPayload:
        context = info.context
        services = context.services
        row = await views.credentials(services.postgres, login)
        # A login that names nobody is checked against a real hash too, so both take as long.
        stored = row["password_hash"] if row else services.nobody_hash
        try:
            await asyncio.to_thread(services.passwords.verify, stored, password)
        except (VerificationError, InvalidHashError):
            row = None
        if row is None:
            raise unauthenticated("wrong login or password")
        if not row["active"]:
            raise unauthenticated("this account is deactivated")
        pair = await services.tokens.issue(_principal(row))
        return _signed_in_payload(row, pair)

    @strawberry.mutation(description="Trade a refresh token for new tokens (it is used up).")
    async def refresh(self, info: Info[GatewayContext, None], refresh_token: str) -> AuthPayload:
        context = info.context
        services = context.services
        user_id, family = await services.tokens.spend(refresh_token)
        row = await views.row_by_id(services.postgres, USER, user_id)
        if row is None or not row["active"]:
            raise unauthenticated("this account is deactivated")
        pair = await services.tokens.issue(_principal(row), family)
        return _signed_in_payload(row, pair)

    @strawberry.mutation(
        permission_classes=[SignedIn], description="Sign out: the refresh token stops working."
    )
    async def logout(self, info: Info[GatewayContext, None], refresh_token: str) -> bool:
        context = info.context
        return await context.services.tokens.revoke(refresh_token, context.signed_in().user_id)

    @strawberry.mutation(permission_classes=[Writer], description="Submit a task of your own.")
    async def submit_task(
        self,
        info: Info[GatewayContext, None],
        input: SubmitTaskInput,
        client_mutation_id: str | None = None,
        reason: str | None = None,
        wait_for_projection: bool = False,
    ) -> CommandOutcome:
        context = info.context
        principal = context.signed_in()
        if input.parent_id is not None:
            parent = parse_id(input.parent_id, "parentId")
            check_read(principal, await views.owner_of(context.services.postgres, "task", parent))
        payload: dict[str, JsonValue] = {
            "owner_id": str(principal.user_id),
            "task_type": input.task_type,
            "priority": check_priority(input.priority),
            "payload": json_input(input.payload),
            "max_attempts": input.max_attempts,
            "parent_id": str(input.parent_id) if input.parent_id else None,
            "document_ids": [str(d) for d in input.document_ids],
            "deadline_seconds": input.deadline_seconds,
        }
        return await _as(
            info, "SubmitTask", payload, client_mutation_id, reason, wait_for_projection
        )

    cancel_task = _on_id("CancelTask", "task_id", Writer, "Cancel a task of yours.")
    retry_task = _on_id("RetryTask", "task_id", Writer, "Try a failed task of yours again.")
    retire_agent = _on_id("RetireAgent", "agent_id", Admin, "Retire an agent (admins).")
    remove_document = _on_id("RemoveDocument", "document_id", Writer, "Remove a document of yours.")

    @strawberry.mutation(permission_classes=[Admin], description="Register an agent (admins).")
    async def register_agent(
        self,
        info: Info[GatewayContext, None],
        input: RegisterAgentInput,
        client_mutation_id: str | None = None,
        reason: str | None = None,
        wait_for_projection: bool = False,
    ) -> CommandOutcome:
        capabilities: list[JsonValue] = list(input.capabilities)
        payload: dict[str, JsonValue] = {
            "name": input.name,
            "kind": input.kind.value,
            "capabilities": capabilities,
            "model": input.model,
        }
        return await _as(
            info, "RegisterAgent", payload, client_mutation_id, reason, wait_for_projection
        )

    @strawberry.mutation(permission_classes=[Writer], description="Add a document of your own.")
    async def add_document(
        self,
        info: Info[GatewayContext, None],
        input: AddDocumentInput,
        client_mutation_id: str | None = None,
        reason: str | None = None,
        wait_for_projection: bool = False,
    ) -> CommandOutcome:
        principal = info.context.signed_in()
        payload: dict[str, JsonValue] = {
            "owner_id": str(principal.user_id),
            "title": input.title,
            "content": input.content,
            "metadata": json_input(input.metadata),
        }
        return await _as(
            info, "AddDocument", payload, client_mutation_id, reason, wait_for_projection
        )

    @strawberry.mutation(permission_classes=[Writer], description="Start a conversation.")
    async def start_conversation(
        self,
        info: Info[GatewayContext, None],
        input: StartConversationInput,
        client_mutation_id: str | None = None,
        reason: str | None = None,
        wait_for_projection: bool = False,
    ) -> CommandOutcome:
        principal = info.context.signed_in()
        payload = {"owner_id": str(principal.user_id), "title": input.title, "model": input.model}
        return await _as(
            info, "StartConversation", payload, client_mutation_id, reason, wait_for_projection
        )

    @strawberry.mutation(
        permission_classes=[Writer], description="Post a message in a conversation of yours."
    )
    async def post_message(
        self,
        info: Info[GatewayContext, None],
        conversation_id: strawberry.ID,
        content: str,
        client_mutation_id: str | None = None,
        reason: str | None = None,
        wait_for_projection: bool = False,
    ) -> CommandOutcome:
        principal = info.context.signed_in()
        command_id = _command_id(str(principal.user_id), client_mutation_id)
        payload = {
            "conversation_id": str(parse_id(conversation_id, "conversationId")),
            # From the command id, so a retried post names the same message.
            "message_id": str(uuid5(_MESSAGE_IDS, command_id)),
            "content": content,
        }
        return await run_command(
            info,
            "PostUserMessage",
            payload,
            actor=principal.actor,
            command_id=command_id,
            client_mutation_id=client_mutation_id,
            reason=reason,
            wait=wait_for_projection,
            guard=owner_guard(principal),
        )

    @strawberry.mutation(permission_classes=[Admin], description="Give a user another role.")
    async def change_role(
        self,
        info: Info[GatewayContext, None],
        user_id: strawberry.ID,
        role: Role,
        client_mutation_id: str | None = None,
        reason: str | None = None,
        wait_for_projection: bool = False,
    ) -> CommandOutcome:
        payload = {"user_id": str(parse_id(user_id, "userId")), "role": role.value}
        return await _as(
            info, "ChangeUserRole", payload, client_mutation_id, reason, wait_for_projection
        )

    @strawberry.mutation(permission_classes=[Admin], description="Stop a user signing in.")
    async def deactivate_user(
        self,
        info: Info[GatewayContext, None],
        user_id: strawberry.ID,
        client_mutation_id: str | None = None,
        reason: str | None = None,
        wait_for_projection: bool = False,
    ) -> CommandOutcome:
        payload = {"user_id": str(parse_id(user_id, "userId"))}
        return await _as(
            info, "DeactivateUser", payload, client_mutation_id, reason, wait_for_projection
        )
