"""Each aggregate the bus can run: its name, state type, decide, evolve and commands."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from domain import agent, agent_message, conversation, document, task, user

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


TASK = AggregateKind(
    name=task.AGGREGATE,
    state_type=task.Task,
    decide=task.decide,
    evolve=task.evolve,
    commands=(
        task.SubmitTask,
        task.AttachSubtask,
        task.AssignTask,
        task.StartTask,
        task.ReportTaskProgress,
        task.CompleteTask,
        task.FailTask,
        task.RetryTask,
        task.CancelTask,
        task.TimeOutTask,
    ),
    id_field="task_id",
    creation=task.SubmitTask,
)

USER = AggregateKind(
    name=user.AGGREGATE,
    state_type=user.User,
    decide=user.decide,
    evolve=user.evolve,
    commands=(user.RegisterUser, user.ChangeUserRole, user.DeactivateUser),
    id_field="user_id",
    creation=user.RegisterUser,
)

AGENT = AggregateKind(
    name=agent.AGGREGATE,
    state_type=agent.Agent,
    decide=agent.decide,
    evolve=agent.evolve,
    commands=(
        agent.RegisterAgent,
        agent.BringAgentOnline,
        agent.MarkAgentBusy,
        agent.TakeAgentOffline,
        agent.RetireAgent,
    ),
    id_field="agent_id",
    creation=agent.RegisterAgent,
)

AGENT_MESSAGE = AggregateKind(
    name=agent_message.AGGREGATE,
    state_type=agent_message.AgentMessage,
    decide=agent_message.decide,
    evolve=agent_message.evolve,
    commands=(agent_message.SendAgentMessage, agent_message.AcknowledgeAgentMessage),
    id_field="message_id",
    creation=agent_message.SendAgentMessage,
)

DOCUMENT = AggregateKind(
    name=document.AGGREGATE,
    state_type=document.Document,
    decide=document.decide,
    evolve=document.evolve,
    commands=(
        document.AddDocument,
        document.MarkDocumentIndexed,
        document.MarkDocumentIndexFailed,
        document.RemoveDocument,
    ),
    id_field="document_id",
    creation=document.AddDocument,
)

CONVERSATION = AggregateKind(
    name=conversation.AGGREGATE,
    state_type=conversation.Conversation,
    decide=conversation.decide,
    evolve=conversation.evolve,
    commands=(
        conversation.StartConversation,
        conversation.PostUserMessage,
        conversation.RecordAssistantReply,
        conversation.CloseConversation,
    ),
    id_field="conversation_id",
    creation=conversation.StartConversation,
)

AGGREGATES: dict[str, AggregateKind] = {
    kind.name: kind for kind in (USER, AGENT, TASK, AGENT_MESSAGE, DOCUMENT, CONVERSATION)
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
