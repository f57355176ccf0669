"""Subscriptions resume from the last sequence a client saw: every event once, no gap."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest
from uuid_utils.compat import uuid7

from commands.bus import CommandContext
from commands.loading import load_aggregate
from domain.aggregates import CONVERSATION
from domain.conversation import RecordAssistantReply
from domain.task import SubmitTask
from schemas.envelope import Actor
from schemas.live import ReplyToken, live_conversation_subject
from tests.e2e.client import subscribe
from tests.e2e.conftest import Gateway

EVENTS = """
subscription ($after: Int) {
  events(filter: {aggregateType: "task", eventType: "TaskSubmitted"}, afterSequence: $after) {
    sequence eventType aggregateId
  }
}
"""


async def test_a_subscriber_that_disconnects_and_resumes_gets_every_event_exactly_once(
    gateway: Gateway,
) -> None:
    bus = gateway.platform.commands.bus
    start = await gateway.platform.store.last_sequence()
    owner = uuid7()
    actor = Actor(id=str(owner), kind="user")
    appended: list[int] = []

    async def keep_submitting() -> None:
        for _ in range(40):
            task = SubmitTask(task_id=uuid7(), owner_id=owner, task_type="test.explain")
            result = await bus.execute(task, CommandContext(command_id=str(uuid7()), actor=actor))
            appended.append(result.sequence)
            await asyncio.sleep(0.01)

    writer = asyncio.create_task(keep_submitting())
    seen: list[int] = []
    token = gateway.admin.access_token
    async with subscribe(gateway.url, EVENTS, {"after": start}, token) as first_connection:
        while len(seen) < 12:
            seen.append((await first_connection.next())["data"]["events"]["sequence"])
    # Gone mid-stream (the socket closed while events keep coming); come back after the last.
    await asyncio.sleep(0.1)
    async with subscribe(gateway.url, EVENTS, {"after": seen[-1]}, token) as second_connection:
        while len(seen) < 40:
            seen.append((await second_connection.next())["data"]["events"]["sequence"])
    await writer

    assert seen == sorted(appended)
    assert len(set(seen)) == 40


async def test_a_subscription_without_a_position_starts_at_new_events(gateway: Gateway) -> None:
    bus = gateway.platform.commands.bus
    owner = uuid7()
    actor = Actor(id=str(owner), kind="user")
    old = SubmitTask(task_id=uuid7(), owner_id=owner, task_type="test.explain")
    await bus.execute(old, CommandContext(command_id=str(uuid7()), actor=actor))
    async with subscribe(gateway.url, EVENTS, {}, gateway.admin.access_token) as connection:
        await gateway.until_live("events")  # its start is fixed: what comes now is new
        new = SubmitTask(task_id=uuid7(), owner_id=owner, task_type="test.explain")
        await bus.execute(new, CommandContext(command_id=str(uuid7()), actor=actor))
        event = (await connection.next())["data"]["events"]
    assert event["aggregateId"] == str(new.task_id)


START = """
mutation { startConversation(input: {title: "fizzbuzz help"}, waitForProjection: true) {
  aggregateId } }
"""
POST = """
mutation ($id: ID!) { postMessage(conversationId: $id, content: "how?") { aggregateId version } }
"""
REPLY = """
subscription ($id: ID!) {
  conversationReply(id: $id) { messageId inReplyTo index token final content sequence }
}
"""


async def test_conversation_reply_streams_live_tokens_then_the_recorded_message(
    gateway: Gateway,
) -> None:
    client = gateway.client
    user = await client.sign_up()
    conversation = (await client.data(START, token=user.access_token))["startConversation"]
    conversation_id = UUID(conversation["aggregateId"])
    await client.data(POST, {"id": str(conversation_id)}, user.access_token)
    state = await load_aggregate(gateway.platform.store, CONVERSATION, conversation_id)
    question = state.state.messages[-1].message_id  # type: ignore[union-attr]
    answer_id = uuid7()
    tokens = ["Use ", "a ", "loop."]

    async with subscribe(
        gateway.url, REPLY, {"id": str(conversation_id)}, user.access_token
    ) as sub:
        await gateway.until_live("conversationReply")  # NATS delivers every token from here
        nats = gateway.platform.nats
        for index, token in enumerate(tokens):  # what the answering agent publishes
            live = ReplyToken(
                conversation_id=conversation_id,
                message_id=answer_id,
                in_reply_to=question,
                index=index,
                token=token,
            )
            await nats.publish(
                live_conversation_subject(conversation_id), live.model_dump_json().encode()
            )
        await nats.flush()
        streamed = [(await sub.next())["data"]["conversationReply"] for _ in tokens]
        reply = RecordAssistantReply(
            conversation_id=conversation_id,
            message_id=answer_id,
            in_reply_to=question,
            content="".join(tokens),
            model="smollm2:135m",
        )
        recorded = await gateway.platform.commands.bus.execute(
            reply,
            CommandContext(command_id=str(uuid7()), actor=Actor(id="assistant", kind="agent")),
        )
        final = (await sub.next())["data"]["conversationReply"]

    assert [c["token"] for c in streamed] == tokens
    assert [c["index"] for c in streamed] == [0, 1, 2]
    assert not any(c["final"] for c in streamed)
    assert final["final"] is True
    assert final["content"] == "Use a loop."
    assert final["messageId"] == str(answer_id)
    assert final["inReplyTo"] == str(question)
    assert final["sequence"] == recorded.sequence

    stranger = await client.sign_up()
    async with subscribe(
        gateway.url, REPLY, {"id": str(conversation_id)}, stranger.access_token
    ) as sub:
        with pytest.raises(RuntimeError) as refused:
            await sub.next()
    assert refused.value.args[0][0]["extensions"]["code"] == "FORBIDDEN"
