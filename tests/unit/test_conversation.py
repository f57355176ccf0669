"""The Conversation state machine, pure."""

from __future__ import annotations

from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from domain.conversation import (
    Citation,
    CloseConversation,
    Conversation,
    MessageRole,
    PostUserMessage,
    RecordAssistantReply,
    StartConversation,
    decide,
    evolve,
)
from domain.errors import IllegalTransition, UnknownMessage
from domain.model import DomainEvent
from tests.unit.playing import play

CONV = UUID("01900000-0000-7000-8000-0000000000c1")
OWNER = UUID("01900000-0000-7000-8000-0000000000c2")
DOC = UUID("01900000-0000-7000-8000-0000000000c3")
MESSAGE_IDS = [UUID(f"01900000-0000-7000-8000-0000000001{n:02d}") for n in range(6)]
START = StartConversation(conversation_id=CONV, owner_id=OWNER, title="t", model="smollm2")


def run(*commands: BaseModel) -> Conversation | None:
    state: Conversation | None = None
    for command in commands:
        for event in decide(state, command):  # type: ignore[arg-type]
            state = evolve(state, event)
    return state


def ask(n: int) -> PostUserMessage:
    return PostUserMessage(conversation_id=CONV, message_id=MESSAGE_IDS[n], content=f"question {n}")


def answer(n: int, to: int) -> RecordAssistantReply:
    return RecordAssistantReply(
        conversation_id=CONV,
        message_id=MESSAGE_IDS[n],
        in_reply_to=MESSAGE_IDS[to],
        content="answer",
        model="smollm2",
        citations=(Citation(document_id=DOC, chunk_index=2),),
    )


def test_a_reply_answers_a_user_message_with_its_model_and_citations() -> None:
    state = run(START, ask(0), answer(1, 0))
    assert state is not None
    assert [m.role for m in state.messages] == [MessageRole.USER, MessageRole.ASSISTANT]
    assert state.messages[1].in_reply_to == MESSAGE_IDS[0]
    assert state.messages[1].citations == (Citation(document_id=DOC, chunk_index=2),)


def test_a_reply_to_an_unknown_or_assistant_message_is_refused() -> None:
    state = run(START, ask(0), answer(1, 0))
    with pytest.raises(UnknownMessage):
        decide(state, answer(2, 5))
    with pytest.raises(UnknownMessage):
        decide(state, answer(2, 1))


def test_the_same_message_twice_is_recorded_once_and_a_closed_conversation_refuses() -> None:
    state = run(START, ask(0), ask(0))
    assert state is not None
    assert len(state.messages) == 1
    closed = run(START, CloseConversation(conversation_id=CONV))
    with pytest.raises(IllegalTransition):
        decide(closed, ask(1))


commands = st.one_of(
    st.builds(ask, st.integers(0, 5)),
    st.builds(answer, st.integers(0, 5), st.integers(0, 5)),
    st.just(CloseConversation(conversation_id=CONV)),
)


@settings(max_examples=200)
@given(st.lists(commands, max_size=25))
def test_any_command_sequence_keeps_replies_tied_to_questions(script: list[BaseModel]) -> None:
    state: Conversation | None = run(START)
    emitted: list[DomainEvent] = list(decide(None, START))
    for after, events in play(decide, evolve, state, script):
        state = after
        emitted.extend(events)
    assert state is not None
    ids = [m.message_id for m in state.messages]
    assert len(ids) == len(set(ids))
    by_id = {m.message_id: m for m in state.messages}
    for message in state.messages:
        if message.role is MessageRole.ASSISTANT:
            assert message.in_reply_to is not None
            assert by_id[message.in_reply_to].role is MessageRole.USER
            assert ids.index(message.in_reply_to) < ids.index(message.message_id)
    replayed: Conversation | None = None
    for event in emitted:
        replayed = evolve(replayed, event)
    assert replayed == state
