"""The Task state machine, pure: no servers, no I/O."""

from __future__ import annotations

from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from domain.errors import (
    AggregateAlreadyExists,
    AggregateNotFound,
    DomainError,
    IllegalTransition,
    RetryLimitReached,
    TaskNotRetryable,
)
from domain.task import (
    AssignTask,
    CancelTask,
    CompleteTask,
    FailTask,
    ReportTaskProgress,
    RetryTask,
    StartTask,
    SubmitTask,
    Task,
    TaskError,
    TaskEvent,
    TaskStatus,
    TimeOutTask,
    decide,
    evolve,
)

TASK_ID = UUID("01900000-0000-7000-8000-00000000000a")
OWNER = UUID("01900000-0000-7000-8000-00000000000b")
AGENT = UUID("01900000-0000-7000-8000-00000000000c")
OTHER_AGENT = UUID("01900000-0000-7000-8000-00000000000d")

RETRYABLE = TaskError(code="MODEL_TIMEOUT", message="the model did not answer", retryable=True)
FATAL = TaskError(code="BAD_PAYLOAD", message="no prompt", retryable=False)
ATTEMPT = (AssignTask(task_id=TASK_ID, agent_id=AGENT), StartTask(task_id=TASK_ID))
"""One attempt: assigned to AGENT, then started."""


def submit(max_attempts: int = 2) -> SubmitTask:
    return SubmitTask(
        task_id=TASK_ID, owner_id=OWNER, task_type="code.generate", max_attempts=max_attempts
    )


def run(*commands: BaseModel) -> tuple[Task | None, list[TaskEvent]]:
    """Decide and evolve each command in turn; return the state and every event."""
    state: Task | None = None
    events: list[TaskEvent] = []
    for command in commands:
        for event in decide(state, command):  # type: ignore[arg-type]
            state = evolve(state, event)
            events.append(event)
    return state, events


def test_a_submitted_task_is_pending_with_its_owner_and_priority() -> None:
    state, events = run(submit())
    assert state is not None
    assert [type(e).__name__ for e in events] == ["TaskSubmitted"]
    assert (state.status, state.owner_id, state.priority, state.attempts) == (
        TaskStatus.PENDING,
        OWNER,
        5,
        0,
    )


def test_the_happy_path_ends_completed_with_the_result() -> None:
    state, _ = run(
        submit(),
        *ATTEMPT,
        ReportTaskProgress(task_id=TASK_ID, percent=50),
        CompleteTask(task_id=TASK_ID, result={"code": "print(1)"}),
    )
    assert state is not None
    assert state.status is TaskStatus.COMPLETED
    assert state.result == {"code": "print(1)"}
    assert (state.attempts, state.agent_id, state.progress) == (1, AGENT, 100)


def test_a_retryable_failure_goes_back_to_pending_until_attempts_run_out() -> None:
    failure = FailTask(task_id=TASK_ID, error=RETRYABLE)
    state, _ = run(submit(max_attempts=2), *ATTEMPT, failure, RetryTask(task_id=TASK_ID))
    assert state is not None
    assert (state.status, state.agent_id, state.attempts) == (TaskStatus.PENDING, None, 1)

    state, _ = run(
        submit(max_attempts=2), *ATTEMPT, failure, RetryTask(task_id=TASK_ID), *ATTEMPT, failure
    )
    assert state is not None
    with pytest.raises(RetryLimitReached):
        decide(state, RetryTask(task_id=TASK_ID))


def test_a_non_retryable_failure_cannot_be_retried() -> None:
    state, _ = run(
        submit(),
        *ATTEMPT,
        FailTask(task_id=TASK_ID, error=FATAL),
    )
    with pytest.raises(TaskNotRetryable) as raised:
        decide(state, RetryTask(task_id=TASK_ID))
    assert raised.value.error_code == "BAD_PAYLOAD"


def test_a_running_task_can_be_reassigned_when_its_agent_is_lost() -> None:
    state, _ = run(
        submit(),
        *ATTEMPT,
        AssignTask(task_id=TASK_ID, agent_id=OTHER_AGENT),
    )
    assert state is not None
    assert (state.status, state.agent_id) == (TaskStatus.ASSIGNED, OTHER_AGENT)


@pytest.mark.parametrize(
    "command",
    [
        StartTask(task_id=TASK_ID),
        CompleteTask(task_id=TASK_ID),
        ReportTaskProgress(task_id=TASK_ID, percent=1),
        RetryTask(task_id=TASK_ID),
        TimeOutTask(task_id=TASK_ID),
        FailTask(task_id=TASK_ID, error=RETRYABLE),
    ],
)
def test_a_pending_task_refuses_work_it_has_not_been_given(command: BaseModel) -> None:
    state, _ = run(submit())
    with pytest.raises(IllegalTransition) as raised:
        decide(state, command)  # type: ignore[arg-type]
    assert raised.value.status == "pending"


@pytest.mark.parametrize(
    "ending",
    [CancelTask(task_id=TASK_ID), TimeOutTask(task_id=TASK_ID)],
)
def test_a_finished_task_accepts_nothing_more(ending: BaseModel) -> None:
    state, _ = run(
        submit(), AssignTask(task_id=TASK_ID, agent_id=AGENT), StartTask(task_id=TASK_ID), ending
    )
    for command in (
        AssignTask(task_id=TASK_ID, agent_id=AGENT),
        CancelTask(task_id=TASK_ID),
        CompleteTask(task_id=TASK_ID),
    ):
        with pytest.raises(IllegalTransition):
            decide(state, command)


def test_commands_on_a_missing_task_or_a_second_submit_are_typed_errors() -> None:
    with pytest.raises(AggregateNotFound):
        decide(None, StartTask(task_id=TASK_ID))
    state, _ = run(submit())
    with pytest.raises(AggregateAlreadyExists):
        decide(state, submit())


@pytest.mark.parametrize("priority", [0, 11])
def test_priority_outside_one_to_ten_is_refused_naming_the_field(priority: int) -> None:
    with pytest.raises(ValidationError) as raised:
        SubmitTask(task_id=TASK_ID, owner_id=OWNER, task_type="code.generate", priority=priority)
    assert raised.value.errors()[0]["loc"] == ("priority",)


# --- properties ---------------------------------------------------------------------------

commands = st.one_of(
    st.builds(AssignTask, task_id=st.just(TASK_ID), agent_id=st.sampled_from([AGENT, OTHER_AGENT])),
    st.just(StartTask(task_id=TASK_ID)),
    st.builds(ReportTaskProgress, task_id=st.just(TASK_ID), percent=st.integers(0, 100)),
    st.just(CompleteTask(task_id=TASK_ID, result={"ok": True})),
    st.builds(FailTask, task_id=st.just(TASK_ID), error=st.sampled_from([RETRYABLE, FATAL])),
    st.just(RetryTask(task_id=TASK_ID)),
    st.just(CancelTask(task_id=TASK_ID)),
    st.just(TimeOutTask(task_id=TASK_ID)),
)

TERMINAL = {TaskStatus.COMPLETED, TaskStatus.CANCELLED, TaskStatus.TIMED_OUT}


def _legal(task: Task) -> None:
    assert 0 <= task.attempts <= task.max_attempts
    assert 0 <= task.progress <= 100
    if task.status in {TaskStatus.ASSIGNED, TaskStatus.RUNNING}:
        assert task.agent_id is not None
    if task.status is TaskStatus.RUNNING:
        assert task.attempts >= 1
    if task.status is TaskStatus.FAILED:
        assert task.error is not None
    if task.status is TaskStatus.COMPLETED:
        assert task.result is not None


@settings(max_examples=300)
@given(max_attempts=st.integers(1, 4), script=st.lists(commands, max_size=30))
def test_any_command_sequence_keeps_the_task_legal_and_replayable(
    max_attempts: int, script: list[BaseModel]
) -> None:
    state: Task | None = None
    emitted: list[TaskEvent] = []
    for command in [submit(max_attempts), *script]:
        before = state
        try:
            events = decide(state, command)  # type: ignore[arg-type]
        except DomainError:
            assert state == before  # a refusal changes nothing
            continue
        assert events, "a command that is not refused emits events"
        if before is not None:
            assert before.status not in TERMINAL
        for event in events:
            state = evolve(state, event)
        emitted.extend(events)
        assert state is not None
        _legal(state)

    replayed: Task | None = None
    for event in emitted:
        replayed = evolve(replayed, event)
    assert replayed == state
