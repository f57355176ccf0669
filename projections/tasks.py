"""The `tasks` read model: one row per task, folded with the domain's own `evolve`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from uuid import UUID

from commands.aggregates import TASK
from commands.loading import LoadedAggregate
from domain.task import Task
from projections.runtime import Connection
from schemas.envelope import RecordedEvent, aggregate_subjects

_UPSERT = """
INSERT INTO tasks (
    task_id, owner_id, task_type, priority, status, payload, attempts, max_attempts, agent_id,
    progress, result, error, parent_id, subtask_ids, document_ids, deadline_seconds,
    created_at, updated_at, version, last_sequence, events_applied, state
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
          $17, $18, $19, $20, $21, $22)
ON CONFLICT (task_id) DO UPDATE SET
    status = EXCLUDED.status, priority = EXCLUDED.priority, attempts = EXCLUDED.attempts,
    agent_id = EXCLUDED.agent_id, progress = EXCLUDED.progress, result = EXCLUDED.result,
    error = EXCLUDED.error, subtask_ids = EXCLUDED.subtask_ids,
    updated_at = EXCLUDED.updated_at, version = EXCLUDED.version,
    last_sequence = EXCLUDED.last_sequence,
    events_applied = tasks.events_applied + EXCLUDED.events_applied,
    state = EXCLUDED.state
"""


def _json(value: object) -> str | None:
    return None if value is None else json.dumps(value)


class TasksProjector:
    """Folds each task's events in a batch in memory, then writes each touched row once."""

    name = "tasks"
    version = 1
    subject_filter = aggregate_subjects("task", "*")

    async def apply_batch(self, connection: Connection, events: Sequence[RecordedEvent]) -> None:
        """Fold the batch's events into their tasks' rows."""
        by_task: dict[UUID, list[RecordedEvent]] = {}
        for event in events:
            by_task.setdefault(event.envelope.aggregate_id, []).append(event)
        rows = await connection.fetch(
            "SELECT task_id, state, created_at FROM tasks WHERE task_id = ANY($1::uuid[])",
            list(by_task),
        )
        known = {row["task_id"]: row for row in rows}
        records = []
        for task_id, task_events in by_task.items():
            loaded = LoadedAggregate(kind=TASK, aggregate_id=task_id)
            row = known.get(task_id)
            if row is not None:
                loaded.state = Task.model_validate_json(row["state"])
            for event in task_events:
                loaded.apply(event)
            task = loaded.state
            assert isinstance(task, Task)
            created = row["created_at"] if row else task_events[0].envelope.occurred_at
            dumped = task.model_dump(mode="json")
            records.append(
                (
                    task.task_id,
                    task.owner_id,
                    task.task_type,
                    task.priority,
                    task.status.value,
                    json.dumps(task.payload),
                    task.attempts,
                    task.max_attempts,
                    task.agent_id,
                    task.progress,
                    _json(dumped["result"]),
                    _json(dumped["error"]),
                    task.parent_id,
                    list(task.subtask_ids),
                    list(task.document_ids),
                    task.deadline_seconds,
                    created,
                    task_events[-1].envelope.occurred_at,
                    task_events[-1].envelope.aggregate_version,
                    task_events[-1].sequence,
                    len(task_events),
                    task.model_dump_json(),
                )
            )
        await connection.executemany(_UPSERT, records)
