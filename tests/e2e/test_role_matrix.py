"""Every query, mutation and subscription tried as every kind of caller.

`MATRIX` has a line per operation and a column per principal; each cell is what the gateway must
answer: `ok` (an answer, with the subject in it), `FORBIDDEN`, `UNAUTHENTICATED`, or `hidden` (a
list answered, scoped so that `user`'s things are not in it). One test walks the whole matrix
and reports every wrong cell at once; another checks that it names every root field.

The subjects (a task, a document, a conversation) belong to `user`; `agent` and `auditor` are
users the admin gave that role. Each cell that changes state gets inputs of its own (a fresh
task to cancel, a fresh user to deactivate, …), so no cell depends on another's outcome.

A refused subscription says so in one of two ways: a refusal by role (the permission class)
comes as an `error` message; a refusal by ownership, raised once the resolver runs, as a `next`
whose payload has `data: null` and `errors`. Both carry `extensions.code`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import graphql
from uuid_utils.compat import uuid4, uuid7

from commands.bus import CommandContext
from domain.task import AssignTask, FailTask, StartTask, TaskError
from domain.user import Role
from gateway.schema import build_schema
from schemas.envelope import Actor
from schemas.live import ReplyToken, live_conversation_subject
from tests.e2e.client import Session, subscribe
from tests.e2e.conftest import ADMIN_PASSWORD, Gateway

OK = "ok"
HIDDEN = "hidden"
F = "FORBIDDEN"
U = "UNAUTHENTICATED"

PRINCIPALS = ("anonymous", "user", "other", "agent", "auditor", "admin")
PASSWORD = "correct horse"
SUBSCRIPTION_TIMEOUT = 10.0

Observed = tuple[str, Any]
"""A cell's outcome and what the gateway answered (shown when the outcome is wrong)."""


@dataclass
class World:
    """The running gateway, a session per principal, and the things under test."""

    gateway: Gateway
    sessions: dict[str, Session]
    task_id: str
    task_sequence: int
    document_id: str
    conversation_id: str
    agent_id: str
    spare: str
    """A plain user whose login, refresh and logout the auth cells exercise."""

    def token(self, who: str) -> str | None:
        return None if who == "anonymous" else self.sessions[who].access_token

    @property
    def user_id(self) -> str:
        return self.sessions["user"].user_id

    async def call(self, who: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        return await self.gateway.client.call(query, variables, self.token(who))

    async def made(self, who: str, query: str, variables: dict[str, Any]) -> str:
        """Run a mutation that must succeed; the aggregate id it names."""
        data = await self.gateway.client.data(query, variables, self.token(who))
        (outcome,) = data.values()
        return str(outcome["aggregateId"])


Probe = Callable[[World, str], Awaitable[Observed]]


# --- how a cell is tried ---------------------------------------------------------------------


def _code(errors: list[dict[str, Any]]) -> str:
    return str((errors[0].get("extensions") or {}).get("code", "no code"))


def _answer(body: dict[str, Any], field: str, visible: Callable[[Any], bool] | None) -> Observed:
    if body.get("errors"):
        return _code(body["errors"]), body
    value = (body.get("data") or {}).get(field)
    if value is None or value is False:
        return f"answered {value!r}", body
    if visible is not None and not visible(value):
        return HIDDEN, body
    return OK, body


def ask(
    query: str,
    field: str,
    variables: Callable[[World, str], Awaitable[dict[str, Any]] | dict[str, Any]] | None = None,
    visible: Callable[[World], Callable[[Any], bool]] | None = None,
) -> Probe:
    """A query or mutation (its variables made per cell), outcome by field and visibility."""

    async def probe(world: World, who: str) -> Observed:
        made = variables(world, who) if variables else {}
        values = await made if isinstance(made, Awaitable) else made
        body = await world.call(who, query, values)
        return _answer(body, field, visible(world) if visible else None)

    return probe


def follow(
    query: str,
    field: str,
    variables: Callable[[World], dict[str, Any]] = lambda w: {},
    poke: Callable[[World], Awaitable[None]] | None = None,
) -> Probe:
    """A subscription: ok on a first `next` with data, else the code of its error.

    `poke`, when given, is called every 0.1 s until a message comes: for streams that say
    nothing until something new happens.
    """

    async def probe(world: World, who: str) -> Observed:
        try:
            async with (
                asyncio.timeout(SUBSCRIPTION_TIMEOUT + 5),
                subscribe(world.gateway.url, query, variables(world), world.token(who)) as sub,
            ):
                poking = asyncio.create_task(_keep_poking(world, poke)) if poke else None
                try:
                    payload = await sub.next(timeout=SUBSCRIPTION_TIMEOUT)
                finally:
                    if poking is not None:
                        poking.cancel()
        except RuntimeError as error:  # an `error` message: its payload is a list of errors
            errors = error.args[0]
            return _code(errors), errors
        except TimeoutError:
            return "no message in time", None
        except EOFError:
            return "completed without a message", None
        return _answer(payload, field, None)

    return probe


async def _keep_poking(world: World, poke: Callable[[World], Awaitable[None]]) -> None:
    while True:
        await poke(world)
        await asyncio.sleep(0.1)


async def _say_a_token(world: World) -> None:
    """What an answering agent publishes while it writes a reply in `user`'s conversation."""
    conversation_id = UUID(world.conversation_id)
    token = ReplyToken(
        conversation_id=conversation_id,
        message_id=uuid7(),
        in_reply_to=uuid7(),
        index=0,
        token="Hi",
    )
    nats = world.gateway.platform.nats
    await nats.publish(live_conversation_subject(conversation_id), token.model_dump_json().encode())
    await nats.flush()


def _has(key: str, wanted: Callable[[World], str]) -> Callable[[World], Callable[[Any], bool]]:
    """Visible when the answer's items (or the answer, for one object) include the subject."""

    def visible(world: World) -> Callable[[Any], bool]:
        def check(value: Any) -> bool:
            items = value["items"] if isinstance(value, dict) and "items" in value else value
            if isinstance(items, dict):
                items = [items]
            return any(str(item.get(key)) == wanted(world) for item in items)

        return check

    return visible


def _one(field: str, id_of: Callable[[World], str]) -> Probe:
    """Asks for one `field` by the id the world holds of it: seen when the answer is that one."""
    return ask(
        f"query ($id: ID!) {{ {field}(id: $id) {{ id }} }}",
        field,
        lambda w, _: {"id": id_of(w)},
        _has("id", id_of),
    )


def _page(field: str, id_of: Callable[[World], str]) -> Probe:
    """Lists `field`: seen when the page holds the world's one."""
    return ask(f"{{ {field}(first: 200) {{ items {{ id }} }} }}", field, None, _has("id", id_of))


def _history(aggregate: str, id_of: Callable[[World], str], first_event: str) -> Probe:
    """Asks for the history of the world's `aggregate`: seen when it holds its first event."""
    return ask(
        f'query ($id: ID!) {{ history(aggregateType: "{aggregate}", id: $id)'
        " { version eventType } }",
        "history",
        lambda w, _: {"id": id_of(w)},
        _has("eventType", lambda w: first_event),
    )


def _nonempty(world: World) -> Callable[[Any], bool]:
    return lambda value: bool(value["items"] if isinstance(value, dict) else value)


# --- fresh inputs for cells that change state -------------------------------------------------

SUBMIT = """
mutation ($type: TaskType!, $wait: Boolean!) {
  submitTask(input: {taskType: $type, priority: 3, payload: {prompt: "matrix"}},
             waitForProjection: $wait) { aggregateId sequence }
}
"""
ADD_DOCUMENT = """
mutation ($title: String!, $wait: Boolean!) {
  addDocument(input: {title: $title, content: "Role matrix notes."}, waitForProjection: $wait) {
    aggregateId sequence }
}
"""
START_CONVERSATION = """
mutation ($title: String!, $wait: Boolean!) {
  startConversation(input: {title: $title}, waitForProjection: $wait) { aggregateId sequence }
}
"""
REGISTER = "mutation ($i: RegisterInput!) { register(input: $i) { aggregateId } }"
REGISTER_AGENT = """
mutation ($name: String!, $wait: Boolean!) {
  registerAgent(input: {name: $name, kind: CODE_ASSISTANT, capabilities: ["test.review"]},
                waitForProjection: $wait) { aggregateId }
}
"""
LOGIN = """
mutation ($l: String!, $p: String!) { login(login: $l, password: $p) {
  accessToken refreshToken user { id } } }
"""


def _name(prefix: str) -> str:
    return f"{prefix}{uuid4().hex[:12]}"


def _register_input(username: str) -> dict[str, Any]:
    return {"i": {"email": f"{username}@example.com", "username": username, "password": PASSWORD}}


async def _as_vars(name: str, value: Awaitable[str]) -> dict[str, Any]:
    """Variables of one value that takes a round trip to make."""
    return {name: await value}


async def _users_task(world: World) -> str:
    return await world.made("user", SUBMIT, {"type": "test.review", "wait": False})


async def _users_failed_task(world: World) -> str:
    """A task of `user` that failed, retryably: what retryTask is for."""
    task_id = UUID(await _users_task(world))
    bus = world.gateway.platform.commands.bus
    worker = Actor(id=str(uuid7()), kind="agent")
    for command in (
        AssignTask(task_id=task_id, agent_id=UUID(worker.id)),
        StartTask(task_id=task_id),
        FailTask(task_id=task_id, error=TaskError(code="flaky", message="x", retryable=True)),
    ):
        await bus.execute(command, CommandContext(command_id=str(uuid7()), actor=worker))
    return str(task_id)


async def _users_document(world: World) -> str:
    return await world.made("user", ADD_DOCUMENT, {"title": _name("d"), "wait": False})


async def _fresh_user(world: World) -> str:
    return await world.made("admin", REGISTER, _register_input(_name("t")))


async def _fresh_agent(world: World) -> str:
    return await world.made("admin", REGISTER_AGENT, {"name": _name("a"), "wait": False})


async def _refresh_token(world: World) -> str:
    data = await world.gateway.client.data(LOGIN, {"l": world.spare, "p": PASSWORD})
    return str(data["login"]["refreshToken"])


async def _own_refresh_token(world: World, who: str) -> str:
    """A fresh refresh token of the caller's own (the spare user's for anonymous)."""
    if who == "anonymous":
        return await _refresh_token(world)
    password = ADMIN_PASSWORD if who == "admin" else PASSWORD
    login = {"l": world.sessions[who].username, "p": password}
    data = await world.gateway.client.data(LOGIN, login)
    return str(data["login"]["refreshToken"])


async def _own_task(world: World, who: str) -> str:
    """A task of the caller's own, or of `user` for those who may not submit one."""
    owner = who if who in ("user", "other", "agent", "admin") else "user"
    return await world.made(owner, SUBMIT, {"type": "test.review", "wait": False})


# --- the table ---------------------------------------------------------------------------------

MATRIX = """
                        anonymous        user       other      agent      auditor    admin
[query]
me                      UNAUTHENTICATED  ok         ok         ok         ok         ok
users                   UNAUTHENTICATED  FORBIDDEN  FORBIDDEN  FORBIDDEN  ok         ok
agents                  UNAUTHENTICATED  ok         ok         ok         ok         ok
agent                   UNAUTHENTICATED  ok         ok         ok         ok         ok
task                    UNAUTHENTICATED  ok         FORBIDDEN  ok         ok         ok
tasks(ownerId=user)     UNAUTHENTICATED  ok         FORBIDDEN  ok         ok         ok
tasks                   UNAUTHENTICATED  ok         hidden     ok         ok         ok
documents               UNAUTHENTICATED  ok         hidden     ok         ok         ok
document                UNAUTHENTICATED  ok         FORBIDDEN  ok         ok         ok
conversations           UNAUTHENTICATED  ok         hidden     ok         ok         ok
conversation            UNAUTHENTICATED  ok         FORBIDDEN  ok         ok         ok
history(task)           UNAUTHENTICATED  ok         FORBIDDEN  ok         ok         ok
history(user)           UNAUTHENTICATED  ok         FORBIDDEN  FORBIDDEN  ok         ok
stateAt(task)           UNAUTHENTICATED  ok         FORBIDDEN  ok         ok         ok
events                  UNAUTHENTICATED  FORBIDDEN  FORBIDDEN  FORBIDDEN  ok         ok
graph                   UNAUTHENTICATED  FORBIDDEN  FORBIDDEN  FORBIDDEN  ok         ok
searchDocuments         UNAUTHENTICATED  ok         ok         ok         ok         ok
[mutation]
register                ok               ok         ok         ok         ok         ok
login                   ok               ok         ok         ok         ok         ok
refresh                 ok               ok         ok         ok         ok         ok
logout                  UNAUTHENTICATED  ok         ok         ok         ok         ok
submitTask              UNAUTHENTICATED  ok         ok         ok         FORBIDDEN  ok
cancelTask(user's)      UNAUTHENTICATED  ok         FORBIDDEN  FORBIDDEN  FORBIDDEN  ok
cancelTask(own)         UNAUTHENTICATED  ok         ok         ok         FORBIDDEN  ok
retryTask(user's)       UNAUTHENTICATED  ok         FORBIDDEN  FORBIDDEN  FORBIDDEN  ok
registerAgent           UNAUTHENTICATED  FORBIDDEN  FORBIDDEN  FORBIDDEN  FORBIDDEN  ok
retireAgent             UNAUTHENTICATED  FORBIDDEN  FORBIDDEN  FORBIDDEN  FORBIDDEN  ok
addDocument             UNAUTHENTICATED  ok         ok         ok         FORBIDDEN  ok
removeDocument(user's)  UNAUTHENTICATED  ok         FORBIDDEN  FORBIDDEN  FORBIDDEN  ok
startConversation       UNAUTHENTICATED  ok         ok         ok         FORBIDDEN  ok
postMessage(user's)     UNAUTHENTICATED  ok         FORBIDDEN  FORBIDDEN  FORBIDDEN  ok
changeRole              UNAUTHENTICATED  FORBIDDEN  FORBIDDEN  FORBIDDEN  FORBIDDEN  ok
deactivateUser          UNAUTHENTICATED  FORBIDDEN  FORBIDDEN  FORBIDDEN  FORBIDDEN  ok
[subscription]
taskUpdated             UNAUTHENTICATED  ok         FORBIDDEN  ok         ok         ok
tasks(ownerId=user)     UNAUTHENTICATED  ok         FORBIDDEN  ok         ok         ok
conversationReply       UNAUTHENTICATED  ok         FORBIDDEN  ok         ok         ok
events                  UNAUTHENTICATED  FORBIDDEN  FORBIDDEN  FORBIDDEN  ok         ok
"""
"""What each principal gets. `(user's)`: a fresh thing of `user` per cell; `(own)`: the caller's
own (`user`'s for the auditor, who may not make one); `hidden`: answered without `user`'s."""


@dataclass(frozen=True)
class Row:
    """One line of the matrix."""

    kind: str
    """query, mutation or subscription."""
    operation: str
    """The root field, and in parentheses what it is asked about when that matters."""
    expected: dict[str, str]
    """The outcome per principal."""


def _rows(matrix: str) -> list[Row]:
    lines = [line.split() for line in matrix.strip().splitlines()]
    principals = tuple(lines[0])
    assert principals == PRINCIPALS
    rows: list[Row] = []
    kind = ""
    for cells in lines[1:]:
        if cells[0].startswith("["):
            kind = cells[0].strip("[]")
            continue
        operation, *outcomes = cells
        assert len(outcomes) == len(principals), operation
        assert set(outcomes) <= {OK, HIDDEN, F, U}, operation
        rows.append(Row(kind, operation, dict(zip(principals, outcomes, strict=True))))
    return rows


ROWS = _rows(MATRIX)

ON_ID = "mutation ($id: ID!) { %s(id: $id) { aggregateId eventTypes } }"
ON_USER = "mutation ($id: ID!) { %s(userId: $id%s) { aggregateId eventTypes } }"

PROBES: dict[tuple[str, str], Probe] = {
    ("query", "me"): ask("{ me { id } }", "me"),
    ("query", "users"): ask("{ users(first: 200) { items { id } } }", "users"),
    ("query", "agents"): ask("{ agents { id } }", "agents"),
    ("query", "agent"): _one("agent", lambda w: w.agent_id),
    ("query", "task"): _one("task", lambda w: w.task_id),
    ("query", "tasks(ownerId=user)"): ask(
        "query ($o: ID) { tasks(filter: {ownerId: $o}, first: 200) { items { id } } }",
        "tasks",
        lambda w, _: {"o": w.user_id},
        _has("id", lambda w: w.task_id),
    ),
    ("query", "tasks"): _page("tasks", lambda w: w.task_id),
    ("query", "documents"): _page("documents", lambda w: w.document_id),
    ("query", "document"): _one("document", lambda w: w.document_id),
    ("query", "conversations"): _page("conversations", lambda w: w.conversation_id),
    ("query", "conversation"): _one("conversation", lambda w: w.conversation_id),
    ("query", "history(task)"): _history("task", lambda w: w.task_id, "TaskSubmitted"),
    ("query", "history(user)"): _history("user", lambda w: w.user_id, "UserRegistered"),
    ("query", "stateAt(task)"): ask(
        'query ($id: ID!) { stateAt(aggregateType: "task", id: $id, version: 1) {'
        " aggregateId version state } }",
        "stateAt",
        lambda w, _: {"id": w.task_id},
        _has("aggregateId", lambda w: w.task_id),
    ),
    ("query", "events"): ask(
        "query ($id: ID!) { events(filter: {aggregateId: $id}) { items { sequence } } }",
        "events",
        lambda w, _: {"id": w.task_id},
        _nonempty,
    ),
    ("query", "graph"): ask(
        "query ($id: ID!) { graph(taskId: $id) { agentIds taskIds } }",
        "graph",
        lambda w, _: {"id": w.task_id},
    ),
    ("query", "searchDocuments"): ask(
        'query { searchDocuments(query: "anything", k: 2) { documentId score } }',
        "searchDocuments",
    ),
    ("mutation", "register"): ask(REGISTER, "register", lambda w, _: _register_input(_name("r"))),
    ("mutation", "login"): ask(LOGIN, "login", lambda w, _: {"l": w.spare, "p": PASSWORD}),
    ("mutation", "refresh"): ask(
        "mutation ($t: String!) { refresh(refreshToken: $t) { accessToken } }",
        "refresh",
        lambda w, _: _as_vars("t", _refresh_token(w)),
    ),
    ("mutation", "logout"): ask(
        "mutation ($t: String!) { logout(refreshToken: $t) }",
        "logout",
        lambda w, who: _as_vars("t", _own_refresh_token(w, who)),
    ),
    ("mutation", "submitTask"): ask(
        SUBMIT, "submitTask", lambda w, _: {"type": "test.generate", "wait": False}
    ),
    ("mutation", "cancelTask(user's)"): ask(
        ON_ID % "cancelTask", "cancelTask", lambda w, _: _as_vars("id", _users_task(w))
    ),
    ("mutation", "cancelTask(own)"): ask(
        ON_ID % "cancelTask", "cancelTask", lambda w, who: _as_vars("id", _own_task(w, who))
    ),
    ("mutation", "retryTask(user's)"): ask(
        ON_ID % "retryTask", "retryTask", lambda w, _: _as_vars("id", _users_failed_task(w))
    ),
    ("mutation", "registerAgent"): ask(
        REGISTER_AGENT, "registerAgent", lambda w, _: {"name": _name("a"), "wait": False}
    ),
    ("mutation", "retireAgent"): ask(
        ON_ID % "retireAgent", "retireAgent", lambda w, _: _as_vars("id", _fresh_agent(w))
    ),
    ("mutation", "addDocument"): ask(
        ADD_DOCUMENT, "addDocument", lambda w, _: {"title": _name("d"), "wait": False}
    ),
    ("mutation", "removeDocument(user's)"): ask(
        ON_ID % "removeDocument",
        "removeDocument",
        lambda w, _: _as_vars("id", _users_document(w)),
    ),
    ("mutation", "startConversation"): ask(
        START_CONVERSATION, "startConversation", lambda w, _: {"title": _name("c"), "wait": False}
    ),
    ("mutation", "postMessage(user's)"): ask(
        'mutation ($id: ID!) { postMessage(conversationId: $id, content: "hello") {'
        " aggregateId eventTypes } }",
        "postMessage",
        lambda w, _: {"id": w.conversation_id},
    ),
    ("mutation", "changeRole"): ask(
        ON_USER % ("changeRole", ", role: AUDITOR"),
        "changeRole",
        lambda w, _: _as_vars("id", _fresh_user(w)),
    ),
    ("mutation", "deactivateUser"): ask(
        ON_USER % ("deactivateUser", ""),
        "deactivateUser",
        lambda w, _: _as_vars("id", _fresh_user(w)),
    ),
    ("subscription", "taskUpdated"): follow(
        "subscription ($id: ID!) { taskUpdated(id: $id) { sequence status } }",
        "taskUpdated",
        lambda w: {"id": w.task_id},
    ),
    ("subscription", "tasks(ownerId=user)"): follow(
        "subscription ($o: ID, $after: Int) { tasks(ownerId: $o, afterSequence: $after) {"
        " sequence aggregateId } }",
        "tasks",
        lambda w: {"o": w.user_id, "after": w.task_sequence - 1},
    ),
    ("subscription", "conversationReply"): follow(
        "subscription ($id: ID!) { conversationReply(id: $id) { token final } }",
        "conversationReply",
        lambda w: {"id": w.conversation_id},
        poke=_say_a_token,
    ),
    ("subscription", "events"): follow(
        "subscription ($id: ID!, $after: Int) {"
        " events(filter: {aggregateId: $id}, afterSequence: $after) { sequence } }",
        "events",
        lambda w: {"id": w.task_id, "after": w.task_sequence - 1},
    ),
}
"""How each line of the matrix is tried, as a principal."""


# --- the test ----------------------------------------------------------------------------------

CHANGE_ROLE = """
mutation ($id: ID!, $role: Role!) {
  changeRole(userId: $id, role: $role, waitForProjection: true) { projected }
}
"""


async def _with_role(gateway: Gateway, role: Role) -> Session:
    """A fresh user the admin gave `role`, signed in again so the token carries it."""
    session = await gateway.client.sign_up(password=PASSWORD)
    changed = await gateway.client.data(
        CHANGE_ROLE, {"id": session.user_id, "role": role.name}, gateway.admin.access_token
    )
    assert changed["changeRole"]["projected"] is True
    return await gateway.client.sign_in(session.username, PASSWORD)


async def _world(gateway: Gateway) -> World:
    client = gateway.client
    user, other, spare = [await client.sign_up(password=PASSWORD) for _ in range(3)]
    sessions = {
        "user": user,
        "other": other,
        "agent": await _with_role(gateway, Role.AGENT),
        "auditor": await _with_role(gateway, Role.AUDITOR),
        "admin": gateway.admin,
    }
    token = user.access_token
    task = (await client.data(SUBMIT, {"type": "test.review", "wait": True}, token))["submitTask"]
    document = (await client.data(ADD_DOCUMENT, {"title": "mine", "wait": True}, token))[
        "addDocument"
    ]
    conversation = (await client.data(START_CONVERSATION, {"title": "mine", "wait": True}, token))[
        "startConversation"
    ]
    agent = (
        await client.data(
            REGISTER_AGENT, {"name": _name("a"), "wait": True}, gateway.admin.access_token
        )
    )["registerAgent"]
    assert await gateway.projected("event_log", task["sequence"])
    return World(
        gateway=gateway,
        sessions=sessions,
        task_id=task["aggregateId"],
        task_sequence=task["sequence"],
        document_id=document["aggregateId"],
        conversation_id=conversation["aggregateId"],
        agent_id=agent["aggregateId"],
        spare=spare.username,
    )


async def test_every_operation_as_every_principal(gateway: Gateway) -> None:
    world = await _world(gateway)
    mismatches: list[str] = []
    for row in ROWS:
        probe = PROBES[row.kind, row.operation]
        for who, expected in row.expected.items():
            observed, answer = await probe(world, who)
            if observed != expected:
                shown = json.dumps(answer, default=str)[:400]
                mismatches.append(
                    f"{row.kind} {row.operation} as {who}: expected {expected}, got {observed}:"
                    f" {shown}"
                )
    assert not mismatches, "\n".join(mismatches)


def test_the_table_has_every_operation_of_the_schema() -> None:
    schema = graphql.build_schema(
        build_schema(max_depth=10, max_tokens=10, max_aliases_count=1).as_str()
    )
    roots = {
        "query": schema.query_type,
        "mutation": schema.mutation_type,
        "subscription": schema.subscription_type,
    }
    in_schema = {(kind, name) for kind, root in roots.items() if root for name in root.fields}
    in_table = {(row.kind, row.operation.split("(")[0]) for row in ROWS}
    assert in_table == in_schema
    assert {(row.kind, row.operation) for row in ROWS} == set(PROBES)
