"""Structured answers from the real model server: one repair, then the typed failure."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TypeVar

import ollama
import pytest
from pydantic import BaseModel, field_validator

from domain.model_call import RecordModelCall
from handlers.code_assistant import SYSTEM_PROMPT, Review
from handlers.model_port import ModelPort, Reply
from handlers.structured_output import UnusableAnswer, chat_structured
from runtime.model_server.engine import CHAT_MODEL, EMBED_MODEL
from runtime.stack import Stack
from schemas.envelope import EventEnvelope
from tests.tasks import task_event

Shape = TypeVar("Shape", bound=BaseModel)

ASK = [{"role": "user", "content": "Name a city in France. Answer in JSON."}]


class Calls:
    """The model calls a port made, as it records them."""

    def __init__(self) -> None:
        self.made: list[RecordModelCall] = []

    async def __call__(self, call: RecordModelCall, cause: EventEnvelope) -> None:
        self.made.append(call)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def port(stack: Stack, calls: Calls) -> ModelPort:
    client = ollama.AsyncClient(host=stack.model_url, timeout=120)
    return ModelPort(client, calls, agent_id=None, chat_model=CHAT_MODEL, embed_model=EMBED_MODEL)


async def _ask(
    port: ModelPort,
    messages: Sequence[Mapping[str, str]],
    shape: type[Shape],
    purpose: str,
    *,
    num_predict: int,
    temperature: float,
    seed: int = 1,
) -> tuple[Shape, Reply]:
    """`chat_structured` as an assigned task's work calls it, with these sampling options."""
    return await chat_structured(
        port,
        messages,
        shape,
        cause=task_event("TaskAssigned", {}),
        purpose=purpose,
        options={"num_predict": num_predict, "temperature": temperature, "seed": seed},
    )


def _rejecting_its_first_answer() -> type[BaseModel]:
    """An answer shape with a rule no grammar expresses: its first answer breaks it."""
    seen: list[str] = []

    class City(BaseModel):
        city: str

        @field_validator("city")
        @classmethod
        def _not_the_first(cls, city: str) -> str:
            seen.append(city)
            if len(seen) == 1:
                raise ValueError("name another city than the first one you thought of")
            return city

    return City


async def test_an_unusable_answer_is_repaired_once_with_the_problem_shown(
    port: ModelPort, calls: Calls
) -> None:
    shape = _rejecting_its_first_answer()

    answer, reply = await _ask(port, ASK, shape, "test.city", num_predict=40, temperature=0)

    assert isinstance(answer, shape)
    assert json.loads(reply.text)["city"] == answer.model_dump()["city"]
    assert [call.purpose for call in calls.made] == ["test.city", "test.city.repair.1"]
    assert reply.call_id == calls.made[-1].call_id


async def test_a_second_unusable_answer_fails_typed(port: ModelPort, calls: Calls) -> None:
    class Long(BaseModel):
        city: str
        country: str

    with pytest.raises(UnusableAnswer) as raised:
        # Three tokens cut every answer short: no repair can help.
        await _ask(port, ASK, Long, "test.short", num_predict=3, temperature=0)

    assert raised.value.code == "INVALID_MODEL_OUTPUT"
    assert "not JSON" in str(raised.value)
    assert "after 1 repair" in str(raised.value)
    assert [call.purpose for call in calls.made] == ["test.short", "test.short.repair.1"]


async def test_a_schema_answer_is_strict_json_even_with_line_breaks_asked_for(
    stack: Stack,
) -> None:
    client = ollama.AsyncClient(host=stack.model_url, timeout=120)
    schema = {"type": "object", "properties": {"poem": {"type": "string"}}, "required": ["poem"]}
    for seed in (1, 2, 3):
        answer = await client.chat(
            model=CHAT_MODEL,
            messages=[
                {
                    "role": "user",
                    "content": "Write a poem of four short lines, one per line, as JSON.",
                }
            ],
            format=schema,
            options={"num_predict": 80, "temperature": 0.8, "seed": seed},
        )
        text = answer.message.content or ""
        if text.rstrip().endswith("}"):  # not cut short at the token limit
            assert isinstance(json.loads(text)["poem"], str)  # strict: no raw control character


async def test_the_review_of_issue_18_now_parses(port: ModelPort) -> None:
    # The prompt a workflow's review step got; the converter's grammar let the model write raw
    # newlines into the summary ("the review is not JSON: Invalid control character").
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": "Review this code. List real problems only.\n\n"
            "Review the fizzbuzz function written in the previous step",
        },
    ]

    review, reply = await _ask(
        port, messages, Review, "code.review", num_predict=256, temperature=0.2, seed=42
    )

    assert review.verdict in ("approve", "request_changes")
    json.loads(reply.text)  # strict: no raw control character
