"""The orchestrator: plans a `workflow` task into child tasks with the model, and completes it with
their combined results once they have all ended — a process manager driven only by events.

Planning happens when a replica is assigned the workflow: the model answers in the JSON schema of
`Plan` (the model server's grammar enforces it) and pydantic validates the answer; an invalid one
gets one repair (`structured_output`), then the task fails with `INVALID_PLAN`. Each step becomes
a child task (`SubmitTask` with `parent_id`, the parent's owner and priority) recorded on the
parent (`AttachSubtask`).

Nothing is kept in memory; what a successor needs is in the log, so a restart changes nothing:
- a child's id derives from the parent's id and the step's index, so submitting it again is
  refused as ALREADY_EXISTS, which means "done already": no child is ever created twice;
- the first child carries the whole plan in its payload, and children are submitted in order. A
  replica that takes a workflow over (its planner died and the coordinator reassigned it) finishes
  *that* plan without asking the model again; it plans afresh only when no child exists yet.
  Children already submitted always win over a new plan.

Completion: a durable consumer shared by every replica follows the children's terminal events.
When every child of the plan is attached and has ended, the parent completes with
`{"steps": [...]}` in plan order: `completed` if every child completed, `completed_with_failures`
(naming the others) if only optional ones did not; it fails with `SUBTASK_FAILED` if a required
child did not complete. Any orchestrator replica may settle a workflow held by another: the
outcome is the children's, not the holder's. A replica taking a workflow over settles it once it
has started it, so children that ended while no replica held the workflow are not waited for in
vain.

A child has *ended* when it completed, was cancelled or timed out, or failed for good: with an
error that is not retryable, or with its attempts used up. A retryable failure with attempts left
is not an end — the coordinator tries the child again and its next terminal event decides. The
parent waits for every child (no fail-fast), so none is left running behind a settled workflow.
"""

from __future__ import annotations

import contextlib
from dataclasses import KW_ONLY, dataclass, field
from uuid import UUID

import structlog
from faststream.nats import NatsRouter
from pydantic import BaseModel, JsonValue, ValidationError

from commands.bus import CommandContext
from commands.guard import Forbidden, Guard
from commands.loading import load_aggregate
from domain.agent import Agent, AgentKind
from domain.aggregates import AGENT, TASK
from domain.errors import AggregateAlreadyExists, DomainError
from domain.task import (
    AttachSubtask,
    CancelTask,
    SubmitTask,
    Task,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskStatus,
    TaskTimedOut,
)
from handlers.consumers import Delivered, Delivery, consume
from handlers.model_port import ModelPort
from handlers.structured_output import UnusableAnswer, chat_structured
from handlers.task_work import TaskWorker, WorkerAgent, held_by
from handlers.work_errors import WorkError
from handlers.workflow_plan import Plan, child_task_id, ended, outcome
from schemas.envelope import EventEnvelope

log = structlog.get_logger(__name__)

WORKFLOW = "workflow"
CAPABILITIES = [WORKFLOW]
CHILDREN = "orchestrator-children"
"""The durable consumer every replica shares for the children's terminal events."""
PLAN_TOKENS = 640
"""Enough for five steps of the longest prompts the schema allows: a plan is never cut short."""
SYSTEM_PROMPT = (
    "You plan work for other agents. Split the user's goal into 2 to 5 steps. Each step has a "
    "task_type (code.generate writes code, code.explain explains code, code.review reviews code, "
    "rag.ask answers a question from the user's documents), a short prompt for the agent that "
    "does it, and required (true if the goal fails without that step). Answer with JSON only."
)
_ACTIVE = frozenset({TaskStatus.PENDING, TaskStatus.ASSIGNED, TaskStatus.RUNNING})


class InvalidPlan(UnusableAnswer):
    """The model gave no valid plan, even after a repair. Not retryable: the same goal at the
    same temperature fails the same way."""

    code = "INVALID_PLAN"
    retryable = False


def _running_under(holder: UUID) -> Guard:
    """Settle only a workflow still running under the orchestrator it was checked against."""

    def guard(state: BaseModel | None) -> None:
        if getattr(state, "status", None) != TaskStatus.RUNNING:
            raise Forbidden("the workflow is not running")
        if getattr(state, "agent_id", None) != holder:
            raise Forbidden("the workflow changed hands meanwhile")

    return guard


@dataclass(eq=False)
class Orchestrator(WorkerAgent):
    """One replica of the orchestrator: plans the workflows assigned to it, settles any."""

    worker: TaskWorker
    model: ModelPort
    _: KW_ONLY
    delivery: Delivery = field(default_factory=Delivery)

    def router(self) -> NatsRouter:
        """Its subscriptions: its own assignments, and the children's ends (shared)."""
        router = NatsRouter()
        self.worker.consume_assignments(router, self.on_assigned, self.delivery)
        consume(
            router,
            self.store,
            consumer=CHILDREN,
            subject="sutazai.events.task.*.*",
            handle=self.on_task_event,
            # Settling is a few loads: an event held by a crashed replica comes back soon.
            delivery=Delivery(attempts=self.delivery.attempts, ack_wait=30.0),
        )
        return router

    def _context(self, event: EventEnvelope, purpose: str) -> CommandContext:
        return CommandContext.caused_by(event, self.worker.card.actor, purpose)

    async def _task(self, task_id: UUID) -> Task | None:
        state = (await load_aggregate(self.store, TASK, task_id)).state
        return state if isinstance(state, Task) else None

    # --- planning ---------------------------------------------------------------------------

    async def on_assigned(self, delivered: Delivered) -> None:
        """Start a workflow assigned to this replica, submit its children, settle if it can."""
        await self.worker.on_assigned(delivered, self._run)

    async def _run(self, parent: Task, event: EventEnvelope) -> None:
        """The work of a started workflow: its plan, its children; it completes once they end
        (so nothing here completes it, but the last child may already have)."""
        plan = await self._plan(parent, event)
        if plan is None:
            return
        for index in range(len(plan.steps)):
            if not await self.submit_child(parent, plan, index, event):
                return
        settled = await self._task(parent.task_id)
        if settled is not None:
            await self._settle(settled, event)

    async def _plan(self, parent: Task, event: EventEnvelope) -> Plan | None:
        """The workflow's plan: the one its first child carries, or a new one from the model."""
        recorded = await self.recorded_plan(parent.task_id)
        if recorded is not None:
            return recorded
        goal = _goal(parent)
        if not goal:
            raise WorkError("the workflow has no prompt", code="EMPTY_WORKFLOW", retryable=False)
        plan = await self._ask_for_plan(goal, event)
        # The first child records the plan. Should another replica have got there first (it
        # held the workflow before a reassignment), its child, and so its plan, wins.
        if not await self.submit_child(parent, plan, 0, event):
            return None
        recorded = await self.recorded_plan(parent.task_id)
        if recorded is None:
            raise RuntimeError(f"workflow {parent.task_id}: its first child has no plan")
        return recorded

    async def _ask_for_plan(self, goal: str, event: EventEnvelope) -> Plan:
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": goal},
        ]
        try:
            plan, _ = await chat_structured(
                self.model,
                messages,
                Plan,
                cause=event,
                purpose="workflow.plan",
                options={"num_predict": PLAN_TOKENS, "temperature": 0.2, "seed": 42},
            )
        except UnusableAnswer as error:
            log.warning("workflow.invalid_plan", task=str(event.aggregate_id), error=str(error))
            raise InvalidPlan(f"no valid plan: {error}") from error
        return plan

    async def submit_child(
        self, parent: Task, plan: Plan, index: int, event: EventEnvelope
    ) -> bool:
        """Submit the step's child (if nobody has) and attach it; False if the parent is gone."""
        step = plan.steps[index]
        child_id = child_task_id(parent.task_id, index)
        workflow: dict[str, JsonValue] = {"parent_id": str(parent.task_id), "step": index}
        if index == 0:
            workflow["plan"] = plan.model_dump(mode="json")
        submit = SubmitTask(
            task_id=child_id,
            owner_id=parent.owner_id,
            task_type=step.task_type,
            priority=parent.priority,
            payload={"prompt": step.prompt, "workflow": workflow},
            parent_id=parent.task_id,
        )
        # Refused as existing: submitted before this assignment (by any replica), so done.
        with contextlib.suppress(AggregateAlreadyExists):
            await self.bus.execute(submit, self._context(event, f"subtask.{index}"))
        attach = AttachSubtask(task_id=parent.task_id, subtask_id=child_id)
        try:
            await self.bus.execute(
                attach, self._context(event, f"attach.{index}"), guard=held_by(self.worker.me)
            )
        except DomainError as error:
            # Taken away or cancelled: whoever holds it now attaches the child (same id).
            log.info("workflow.not_attached", task=str(parent.task_id), reason=str(error))
            return False
        return True

    async def recorded_plan(self, parent_id: UUID) -> Plan | None:
        """The plan the workflow's first child carries, if it was submitted."""
        first = await self._task(child_task_id(parent_id, 0))
        if first is None or first.parent_id != parent_id:
            return None
        workflow = first.payload.get("workflow")
        if not isinstance(workflow, dict):
            return None
        try:
            return Plan.model_validate(workflow.get("plan"))
        except ValidationError:
            return None

    # --- completion -------------------------------------------------------------------------

    async def on_task_event(self, delivered: Delivered) -> None:
        """A child's terminal event: settle its workflow if it was the last to end.

        A cancelled workflow takes its children with it.
        """
        event = delivered.envelope
        match delivered.event:
            case TaskCancelled():
                cancelled = await self._task(event.aggregate_id)
                if cancelled is not None and cancelled.task_type == WORKFLOW:
                    await self._cancel_children(cancelled, event)
                    return
            case TaskCompleted() | TaskFailed() | TaskTimedOut():
                pass
            case _:
                return
        child = await self._task(event.aggregate_id)
        if child is None or child.parent_id is None or not ended(child):
            return
        parent = await self._task(child.parent_id)
        if parent is not None:
            await self._settle(parent, event)

    async def _settle(self, parent: Task, event: EventEnvelope) -> None:
        if parent.task_type != WORKFLOW or parent.status is not TaskStatus.RUNNING:
            return  # settled, or between holders: the next holder settles it once started
        plan = await self.recorded_plan(parent.task_id)
        if plan is None:
            return  # not planned by an orchestrator (yet)
        ids = [child_task_id(parent.task_id, i) for i in range(len(plan.steps))]
        if not set(ids) <= set(parent.subtask_ids):
            return  # still being submitted: its planner (or successor) settles it after
        children = [await self._task(child_id) for child_id in ids]
        done = [child for child in children if child is not None and ended(child)]
        if len(done) < len(ids):
            return
        holder = parent.agent_id
        if holder is None or not await self._is_orchestrator(holder):
            log.warning("workflow.not_held_by_orchestrator", task=str(parent.task_id))
            return
        command = outcome(parent, plan, done)
        try:
            await self.bus.execute(
                command, self._context(event, "workflow.settle"), guard=_running_under(holder)
            )
        except DomainError as error:
            # Another replica settled it first (two children ended together), or it moved on.
            log.info("workflow.not_settled", task=str(parent.task_id), reason=str(error))
            return
        log.info("workflow.settled", task=str(parent.task_id), outcome=type(command).__name__)

    async def _cancel_children(self, parent: Task, event: EventEnvelope) -> None:
        """Cancel every child still active: attached ones, and the plan's not yet attached."""
        plan = await self.recorded_plan(parent.task_id)
        planned = [child_task_id(parent.task_id, i) for i in range(len(plan.steps))] if plan else []
        for child_id in dict.fromkeys([*parent.subtask_ids, *planned]):
            child = await self._task(child_id)
            if child is None or child.status not in _ACTIVE:
                continue
            try:
                await self.bus.execute(
                    CancelTask(task_id=child_id),
                    self._context(event, f"cancel-child.{child_id}"),
                )
            except DomainError as error:  # it ended meanwhile
                log.info("workflow.child_not_cancelled", task=str(child_id), reason=str(error))

    async def _is_orchestrator(self, agent_id: UUID) -> bool:
        agent = (await load_aggregate(self.store, AGENT, agent_id)).state
        return isinstance(agent, Agent) and agent.kind is AgentKind.ORCHESTRATOR


def _goal(task: Task) -> str:
    payload = task.payload
    return str(payload.get("prompt") or payload.get("goal") or payload.get("question") or "")
