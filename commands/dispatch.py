"""Commands by name, as programs and people send them: parse, run on the bus, reply typed."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import ValidationError
from uuid_utils.compat import uuid7

from commands.bus import CommandBus, CommandContext
from commands.guard import Guard, allow_all
from commands.preparation import CommandPreparation
from domain.aggregates import COMMANDS
from domain.errors import DomainError, InvalidField
from eventstore.errors import (
    AppendRejected,
    ConcurrencyConflict,
    EventStoreError,
    EventTooLarge,
    StoreUnavailable,
)
from schemas.commands import (
    CommandAccepted,
    CommandError,
    CommandRefused,
    CommandReply,
    CommandRequest,
    FieldError,
)

_COMMAND_IDS = uuid5(NAMESPACE_URL, "https://sutazai.dev/command-id")


class UnknownCommand(LookupError):
    """No command of that name exists."""


def aggregate_id_for(command_id: str) -> UUID:
    """The id a creation command gives its aggregate: the same for every retry of it.

    A UUID command id (a UUIDv7 as minted here: time-ordered) is used as it is; any other
    string maps to a name-based UUID.
    """
    try:
        return UUID(command_id)
    except ValueError:
        return uuid5(_COMMAND_IDS, command_id)


def validation_refusal(
    command_id: str | None, error: ValidationError, *, within: str = ""
) -> CommandRefused:
    """A refusal naming every invalid field (`within`: the path of the validated part)."""
    fields = [
        FieldError(
            field=".".join(str(part) for part in ((within,) if within else ()) + issue["loc"]),
            message=issue["msg"],
        )
        for issue in error.errors()
    ]
    names = ", ".join(f.field or "(body)" for f in fields)
    return CommandRefused(
        command_id=command_id,
        error=CommandError(
            code="VALIDATION", type="ValidationError", message=f"invalid: {names}", fields=fields
        ),
    )


def _refusal(command_id: str, code: str, error: Exception) -> CommandRefused:
    return CommandRefused(
        command_id=command_id,
        error=CommandError(code=code, type=type(error).__name__, message=str(error)),
    )


def nul_at(value: object, path: str) -> str | None:
    """Where a NUL character hides in a JSON value (PostgreSQL text and jsonb refuse it)."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = nul_at(key, f"{path}.{key}") or nul_at(item, f"{path}.{key}")
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_at(item, f"{path}[{index}]")
            if found:
                return found
    return None


class CommandDispatcher:
    """Commands by name, as programs and people send them: prepare, run on the bus, reply."""

    def __init__(self, bus: CommandBus, preparation: CommandPreparation) -> None:
        self.bus = bus
        self.preparation = preparation

    async def dispatch(
        self, name: str, request: CommandRequest, *, guard: Guard = allow_all
    ) -> CommandReply:
        """Run the command called `name`; every failure comes back as a typed refusal.

        `guard` is handed to the bus: it sees the state the command is decided on.
        """
        try:
            kind, model = COMMANDS[name]
        except KeyError:
            error = UnknownCommand(f"no command named {name!r}; known: {sorted(COMMANDS)}")
            return _refusal(request.command_id or "", "NOT_FOUND", error)
        command_id = request.command_id or str(uuid7())
        # Refused here, before anything is stored: an event the read side cannot hold would stop
        # its projector.
        where = nul_at(request.model_dump(mode="json", exclude={"payload"}), "") or nul_at(
            request.payload, "payload"
        )
        if where:
            field = where.lstrip(".")
            return CommandRefused(
                command_id=command_id,
                error=CommandError(
                    code="VALIDATION",
                    type="ValidationError",
                    message=f"invalid: {field}",
                    fields=[FieldError(field=field, message="contains a NUL character")],
                ),
            )
        payload = dict(request.payload)
        if model is kind.creation and kind.id_field not in payload:
            payload[kind.id_field] = str(aggregate_id_for(command_id))
        try:
            payload = await self.preparation.prepare(name, payload)
            command = model.model_validate(payload)
        except InvalidField as error:
            return CommandRefused(
                command_id=command_id,
                error=CommandError(
                    code=error.code,
                    type="ValidationError",
                    message=f"invalid: {error.field}",
                    fields=[FieldError(field=error.field, message=error.message)],
                ),
            )
        except ValidationError as error:
            return validation_refusal(command_id, error, within="payload")
        except (DomainError, EventStoreError) as error:
            return _refusal_for(command_id, error)
        context = CommandContext(
            command_id=command_id,
            actor=request.actor,
            reason=request.reason,
            correlation_id=request.correlation_id,
            causation_id=request.causation_id,
        )
        try:
            result = await self.bus.execute(command, context, guard=guard)
        except (DomainError, EventStoreError) as error:
            return _refusal_for(command_id, error)
        return CommandAccepted(
            command_id=command_id,
            aggregate_type=result.aggregate_type,
            aggregate_id=result.aggregate_id,
            version=result.version,
            sequence=result.sequence,
            event_types=list(result.event_types),
            duplicate=result.duplicate,
        )


_STORE_ERROR_CODES: dict[type[EventStoreError], str] = {
    ConcurrencyConflict: "CONFLICT",
    StoreUnavailable: "UNAVAILABLE",
    EventTooLarge: "TOO_LARGE",
    AppendRejected: "REJECTED",
}


def _refusal_for(command_id: str, error: DomainError | EventStoreError) -> CommandRefused:
    if isinstance(error, DomainError):
        return _refusal(command_id, error.code, error)
    return _refusal(command_id, _STORE_ERROR_CODES.get(type(error), "UNAVAILABLE"), error)
