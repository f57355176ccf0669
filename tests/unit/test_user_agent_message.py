"""The User, Agent and AgentMessage state machines, pure."""

from __future__ import annotations

from uuid import UUID

import pytest
from pydantic import ValidationError

from domain import agent, agent_message, user
from domain.errors import AggregateAlreadyExists, AggregateNotFound, IllegalTransition

USER_ID = UUID("01900000-0000-7000-8000-0000000000e1")
AGENT_ID = UUID("01900000-0000-7000-8000-0000000000e2")
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


def register_user(**overrides: object) -> user.RegisterUser:
    values: dict[str, object] = {
        "user_id": USER_ID,
        "email": "Ada@Example.org",
        "username": "ada",
        "password_hash": HASH,
    }
    values.update(overrides)
    return user.RegisterUser.model_validate(values)


def test_a_user_registers_with_a_lowercased_email_as_a_plain_user() -> None:
    [event] = user.decide(None, register_user())
    state = user.evolve(None, event)
    assert (state.email, state.role, state.active) == ("ada@example.org", user.Role.USER, True)


def test_registration_refuses_a_plain_password_in_the_hash_field_and_a_bad_email() -> None:
    with pytest.raises(ValidationError) as raised:
        register_user(password_hash="hunter2hunter2hunter2")
    assert raised.value.errors()[0]["loc"] == ("password_hash",)
    with pytest.raises(ValidationError) as raised:
        register_user(email="not-an-email")
    assert raised.value.errors()[0]["loc"] == ("email",)


def test_a_deactivated_user_cannot_change_and_an_unchanged_role_emits_nothing() -> None:
    state = user.evolve(None, user.decide(None, register_user())[0])
    assert user.decide(state, user.ChangeUserRole(user_id=USER_ID, role=user.Role.USER)) == []
    state = user.evolve(state, user.decide(state, user.DeactivateUser(user_id=USER_ID))[0])
    assert not state.active
    with pytest.raises(IllegalTransition):
        user.decide(state, user.ChangeUserRole(user_id=USER_ID, role=user.Role.ADMIN))
    with pytest.raises(AggregateAlreadyExists):
        user.decide(state, register_user())
    with pytest.raises(AggregateNotFound):
        user.decide(None, user.DeactivateUser(user_id=USER_ID))


def test_an_agent_goes_online_busy_offline_and_retires_for_good() -> None:
    register = agent.RegisterAgent(
        agent_id=AGENT_ID, name="coder-1", kind=agent.AgentKind.CODE_ASSISTANT
    )
    state = agent.evolve(None, agent.decide(None, register)[0])
    with pytest.raises(IllegalTransition):
        agent.decide(state, agent.MarkAgentBusy(agent_id=AGENT_ID))
    for command, status in (
        (agent.BringAgentOnline(agent_id=AGENT_ID), agent.AgentStatus.ONLINE),
        (agent.MarkAgentBusy(agent_id=AGENT_ID), agent.AgentStatus.BUSY),
        (agent.TakeAgentOffline(agent_id=AGENT_ID), agent.AgentStatus.OFFLINE),
        (agent.RetireAgent(agent_id=AGENT_ID), agent.AgentStatus.RETIRED),
    ):
        [event] = agent.decide(state, command)
        state = agent.evolve(state, event)
        assert state.status is status
    with pytest.raises(IllegalTransition):
        agent.decide(state, agent.BringAgentOnline(agent_id=AGENT_ID))


def test_a_repeated_heartbeat_changes_nothing() -> None:
    register = agent.RegisterAgent(agent_id=AGENT_ID, name="coder-1", kind=agent.AgentKind.CUSTOM)
    state = agent.evolve(None, agent.decide(None, register)[0])
    online = agent.BringAgentOnline(agent_id=AGENT_ID)
    state = agent.evolve(state, agent.decide(state, online)[0])
    assert agent.decide(state, online) == []


def test_a_message_is_sent_once_and_acknowledged_once() -> None:
    send = agent_message.SendAgentMessage(
        message_id=USER_ID,
        source_agent_id=AGENT_ID,
        target_agent_id=AGENT_ID,
        message_type=agent_message.MessageType.NOTE,
    )
    state = agent_message.evolve(None, agent_message.decide(None, send)[0])
    ack = agent_message.AcknowledgeAgentMessage(message_id=USER_ID)
    state = agent_message.evolve(state, agent_message.decide(state, ack)[0])
    assert state.acknowledged
    assert agent_message.decide(state, ack) == []
    with pytest.raises(AggregateAlreadyExists):
        agent_message.decide(state, send)
