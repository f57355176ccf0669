"""The one parse of the model's JSON answers, the repair request, and the grammar behind them."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from pydantic import BaseModel

from handlers.structured_output import UnusableAnswer, parse_answer, repair_request
from handlers.workflow_plan import Plan
from runtime.model_server.engine import JSON_CHAR_RULE, Sampling, json_grammar


class Review(BaseModel):
    summary: str
    verdict: Literal["approve", "request_changes"]


def test_a_raw_control_character_inside_a_json_string_parses() -> None:
    # What the model answered in issue 18: a newline and a tab typed raw inside a string.
    answer = '{"summary": "Looks fine.\nOne nit:\tnaming.", "verdict": "approve"}'
    with pytest.raises(ValueError, match="Invalid control character"):
        json.loads(answer)

    review = parse_answer(answer, Review)

    assert review.summary == "Looks fine.\nOne nit:\tnaming."
    assert review.verdict == "approve"


def test_an_answer_cut_short_is_unusable_with_the_parsers_reason() -> None:
    with pytest.raises(UnusableAnswer) as raised:
        parse_answer('{"summary": "Looks fi', Review)
    assert raised.value.code == "INVALID_MODEL_OUTPUT"
    assert "not JSON" in str(raised.value)


def test_an_answer_of_the_wrong_shape_names_the_fields() -> None:
    with pytest.raises(UnusableAnswer) as raised:
        parse_answer('{"summary": "ok", "verdict": "maybe"}', Review)
    assert "verdict" in str(raised.value)


def test_the_repair_shows_the_model_its_answer_and_the_real_failure() -> None:
    answer = '{"steps": [{"task_type": "code.generate", "prompt": "write fizz'
    with pytest.raises(UnusableAnswer) as raised:
        parse_answer(answer, Plan)

    messages = repair_request(answer, raised.value)

    assert messages[0] == {"role": "assistant", "content": answer}
    assert messages[1]["role"] == "user"
    assert "Unterminated string" in messages[1]["content"]


def test_the_grammar_of_a_schema_keeps_raw_control_characters_out_of_strings() -> None:
    grammar = json_grammar(json.dumps(Plan.model_json_schema()))
    rules = {line.split(" ::= ")[0]: line for line in grammar.splitlines() if " ::= " in line}

    assert rules["char"] == JSON_CHAR_RULE
    assert r"\x00-\x1F" in rules["char"]


def test_json_mode_and_a_schema_both_constrain_and_plain_text_does_not() -> None:
    assert Sampling.from_request({}, None).grammar is None
    assert r"\x00-\x1F" in (Sampling.from_request({}, "json").grammar or "")
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    assert "a-kv" in (Sampling.from_request({}, schema).grammar or "")
