"""Every aggregate: its name, state type, decide, evolve, commands and events.

The command bus runs them and the published contract (`schemas/published.py`) lists them; both
import this catalogue from the domain, so the contract does not depend on the write side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, get_args
from uuid import UUID

from pydantic import BaseModel

from domain import agent, agent_message, alert, conversation, document, model_call, task, user

Decide = Callable[[Any, Any], Sequence[BaseModel]]
Evolve = Callable[[Any, Any], BaseModel]


@dataclass(frozen=True)
class AggregateKind:
    """How the bus loads, decides and folds one kind of aggregate."""

    name: str
    state_type: type[BaseModel]
    decide: Decide
    evolve: Evolve
    commands: tuple[type[BaseModel], ...]
    events: tuple[type[BaseModel], ...]
    """Its event types; `schemas/events.py` registers them by their wire names."""
    id_field: str
    """The field of every command that names the aggregate it addresses."""
    creation: type[BaseModel]
    """The command that creates the aggregate (its id may be derived from the command id)."""

    def target(self, command: BaseModel) -> UUID:
        """The id of the aggregate a command addresses."""
        value = getattr(command, self.id_field)
        assert isinstance(value, UUID)
        return value

    @property
    def state_schema(self) -> str:
        """Names the state's shape, so a snapshot of an older shape is ignored, not misread."""
        fields = ",".join(sorted(self.state_type.model_fields))
        return f"{self.state_type.__name__}({fields})"


def _kind(
    module: ModuleType, state: type[BaseModel], id_field: str, commands: object
) -> AggregateKind:
    """An aggregate kind from a domain module's `AGGREGATE`, `decide`, `evolve` and `EVENT_TYPES`,
    its state type, the field naming the aggregate, and its command union (the creating command
    first) or that single command."""
    command_types = get_args(commands) or (commands,)
    return AggregateKind(
        name=module.AGGREGATE,
        state_type=state,
        decide=module.decide,
        evolve=module.evolve,
        commands=command_types,
        events=module.EVENT_TYPES,
        id_field=id_field,
        creation=command_types[0],
    )


USER = _kind(user, user.User, "user_id", user.UserCommand)
AGENT = _kind(agent, agent.Agent, "agent_id", agent.AgentCommand)
TASK = _kind(task, task.Task, "task_id", task.TaskCommand)
AGENT_MESSAGE = _kind(
    agent_message, agent_message.AgentMessage, "message_id", agent_message.AgentMessageCommand
)
DOCUMENT = _kind(document, document.Document, "document_id", document.DocumentCommand)
CONVERSATION = _kind(
    conversation, conversation.Conversation, "conversation_id", conversation.ConversationCommand
)
MODEL_CALL = _kind(model_call, model_call.ModelCall, "call_id", model_call.ModelCallCommand)
ALERT = _kind(alert, alert.Alert, "alert_id", alert.AlertCommand)

AGGREGATES: dict[str, AggregateKind] = {
    kind.name: kind
    for kind in (USER, AGENT, TASK, AGENT_MESSAGE, DOCUMENT, CONVERSATION, MODEL_CALL, ALERT)
}
COMMANDS: dict[str, tuple[AggregateKind, type[BaseModel]]] = {
    command.__name__: (kind, command) for kind in AGGREGATES.values() for command in kind.commands
}
"""Command name (as on `sutazai.cmd.<CommandName>`) -> (aggregate kind, command model)."""


def kind_of(command: BaseModel) -> AggregateKind:
    """The aggregate kind a command belongs to."""
    try:
        return COMMANDS[type(command).__name__][0]
    except KeyError:
        raise TypeError(f"no aggregate handles {type(command).__name__}") from None
