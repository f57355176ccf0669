"""Answers in JSON: the one place an agent asks the model for a typed answer and reads it.

The model server constrains the answer with a grammar made from the answer's JSON schema, so it
is JSON of the right shape unless it was cut short or breaks a rule the grammar cannot express.
Such an answer gets one repair: the model sees its answer and what is wrong with it, and answers
again. A second unusable answer fails with `UnusableAnswer` (INVALID_MODEL_OUTPUT).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from handlers.model_port import ModelError, ModelPort, Reply
from schemas.envelope import EventEnvelope

T = TypeVar("T", bound=BaseModel)

REPAIRS = 1
"""Answers asked for again, with the problem explained, before the call fails."""


class UnusableAnswer(ModelError):
    """The model's answer does not have the shape the task needs."""

    code = "INVALID_MODEL_OUTPUT"


def parse_answer(text: str, shape: type[T]) -> T:
    """The answer as `shape`, or `UnusableAnswer` saying what is wrong with it.

    Raw control characters (a newline, a tab) inside strings are accepted: `strict=False` reads
    them as the characters they are, which is what the model meant.
    """
    try:
        value: Any = json.loads(text, strict=False)
    except ValueError as error:
        raise UnusableAnswer(f"the answer is not JSON: {error}") from error
    try:
        return shape.model_validate(value)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'answer'}: {problem['msg']}"
            for problem in error.errors(include_url=False)[:5]
        )
        raise UnusableAnswer(f"the answer does not fit the schema: {problems}") from error


def repair_request(answer: str, problem: UnusableAnswer) -> list[dict[str, str]]:
    """The messages that show the model its unusable answer and why it is unusable."""
    return [
        {"role": "assistant", "content": answer},
        {
            "role": "user",
            "content": (
                f"That answer cannot be used: {problem}. Answer again, complete and shorter, "
                "as JSON that follows the schema."
            ),
        },
    ]


async def chat_structured(
    model: ModelPort,
    messages: Sequence[Mapping[str, str]],
    shape: type[T],
    *,
    cause: EventEnvelope,
    purpose: str,
    options: Mapping[str, Any] | None = None,
) -> tuple[T, Reply]:
    """The model's answer to `messages` as `shape`, and the (last) reply it came in."""
    schema = shape.model_json_schema()
    reply = await model.chat(messages, cause=cause, purpose=purpose, options=options, schema=schema)
    asked = list(messages)
    for repair in range(1, REPAIRS + 1):
        try:
            return parse_answer(reply.text, shape), reply
        except UnusableAnswer as problem:
            asked = [*asked, *repair_request(reply.text, problem)]
        # Its own purpose: each answer is a model call of its own, recorded as such.
        reply = await model.chat(
            asked, cause=cause, purpose=f"{purpose}.repair.{repair}", options=options, schema=schema
        )
    try:
        return parse_answer(reply.text, shape), reply
    except UnusableAnswer as problem:
        raise UnusableAnswer(f"{problem} (after {REPAIRS} repair)") from problem
