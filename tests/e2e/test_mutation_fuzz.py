"""Hypothesis against every mutation: a typed error code or a success, never a 500, and
nothing appended to the log for an input that was refused."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from domain.agent import AgentKind
from gateway.errors import ErrorCode
from tests.e2e.conftest import Gateway

CODES = {code.value for code in ErrorCode} - {ErrorCode.INTERNAL.value}

anything: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)
ids = st.uuids().map(str) | st.text(max_size=40) | anything
texts = st.text(max_size=60) | st.sampled_from(["", " ", "a" * 300, "x@y", "ok@example.com"])
opt_text = st.none() | texts
client_ids = st.none() | st.from_regex(r"\A[A-Za-z0-9_.:-]{1,20}\Z") | st.text(max_size=130)
common = {"cmid": client_ids, "reason": st.none() | st.text(max_size=2100)}

MUTATIONS: dict[str, tuple[str, dict[str, st.SearchStrategy[Any]]]] = {
    "register": (
        "mutation ($i: RegisterInput!, $cmid: String) { register(input: $i, "
        "clientMutationId: $cmid) { sequence } }",
        {
            "i": st.fixed_dictionaries(
                {"email": texts, "username": texts, "password": texts | anything}
            )
            | anything,
            "cmid": client_ids,
        },
    ),
    "login": (
        "mutation ($l: String!, $p: String!) { login(login: $l, password: $p) { accessToken } }",
        {"l": texts, "p": texts},
    ),
    "refresh": (
        "mutation ($t: String!) { refresh(refreshToken: $t) { accessToken } }",
        {"t": texts | anything},
    ),
    "submitTask": (
        "mutation ($i: SubmitTaskInput!, $cmid: String, $reason: String) { submitTask(input: $i,"
        " clientMutationId: $cmid, reason: $reason) { sequence } }",
        {
            "i": st.fixed_dictionaries(
                {"taskType": texts | st.just("test.generate")},
                optional={
                    "priority": st.integers(-5, 15) | anything,
                    "payload": anything,
                    "maxAttempts": st.integers(-2, 200),
                    "parentId": st.none() | ids,
                    "documentIds": st.lists(ids, max_size=3),
                    "deadlineSeconds": st.none()
                    | st.floats(-10, 1e6, allow_nan=False, allow_infinity=False),
                },
            ),
            **common,
        },
    ),
    "cancelTask": (
        "mutation ($id: ID!, $cmid: String) { cancelTask(id: $id, clientMutationId: $cmid) {"
        " sequence } }",
        {"id": ids, "cmid": client_ids},
    ),
    "retryTask": ("mutation ($id: ID!) { retryTask(id: $id) { sequence } }", {"id": ids}),
    "registerAgent": (
        "mutation ($i: RegisterAgentInput!) { registerAgent(input: $i) { sequence } }",
        {
            "i": st.fixed_dictionaries(
                {
                    "name": texts,
                    "kind": texts | st.sampled_from([kind.name for kind in AgentKind]),
                    "capabilities": st.lists(texts, max_size=3),
                    "model": texts,
                }
            )
        },
    ),
    "retireAgent": ("mutation ($id: ID!) { retireAgent(id: $id) { sequence } }", {"id": ids}),
    "addDocument": (
        "mutation ($i: AddDocumentInput!) { addDocument(input: $i) { sequence } }",
        {
            "i": st.fixed_dictionaries(
                {"title": texts, "content": texts | anything, "metadata": anything}
            )
        },
    ),
    "removeDocument": (
        "mutation ($id: ID!) { removeDocument(id: $id) { sequence } }",
        {"id": ids},
    ),
    "startConversation": (
        "mutation ($i: StartConversationInput!) { startConversation(input: $i) { sequence } }",
        {"i": st.fixed_dictionaries({"title": texts, "model": texts})},
    ),
    "postMessage": (
        "mutation ($id: ID!, $c: String!) { postMessage(conversationId: $id, content: $c) {"
        " sequence } }",
        {"id": ids, "c": texts | anything},
    ),
    "changeRole": (
        "mutation ($id: ID!, $r: Role!) { changeRole(userId: $id, role: $r) { sequence } }",
        {"id": ids, "r": texts | st.sampled_from(["ADMIN", "AUDITOR", "admin", "root"])},
    ),
    "deactivateUser": (
        "mutation ($id: ID!) { deactivateUser(userId: $id) { sequence } }",
        {"id": ids},
    ),
    "logout": ("mutation ($t: String!) { logout(refreshToken: $t) }", {"t": texts}),
}

cases = st.sampled_from(sorted(MUTATIONS)).flatmap(
    lambda name: st.tuples(st.just(name), st.fixed_dictionaries(MUTATIONS[name][1]))
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases)
async def test_every_mutation_answers_typed_and_a_refusal_appends_nothing(
    gateway: Gateway, case: tuple[str, dict[str, Any]]
) -> None:
    name, variables = case
    query = MUTATIONS[name][0]
    before = await gateway.platform.store.last_sequence()
    body = await gateway.client.call(query, variables, gateway.admin.access_token)
    after = await gateway.platform.store.last_sequence()
    assert body["status"] in (200, 413), body
    errors = body.get("errors") or []
    for error in errors:
        assert error.get("extensions", {}).get("code") in CODES, (name, variables, body)
        assert "Traceback" not in error["message"]
    event(f"{name}: {errors[0]['extensions']['code'] if errors else 'accepted'}")
    if errors:
        assert after == before, f"{name} was refused yet appended: {variables} -> {body}"
    else:
        assert body["data"][name] is not None
